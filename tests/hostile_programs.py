"""Hostile programs for the sandbox (issue 28), and the evaluator that runs them: `python
tests/hostile_programs.py OUT.json` plants secrets where an evaluator has them (its environment, its
session keyring, a SysV message queue, a world-writable unix socket, a loopback TCP port, a readable
file outside the program's dir), runs every program through run_programs, then checks the host:
nothing written, nothing left running, no IPC object left behind, the secrets still where they were.
The tests run it as root and as an unprivileged user (`as_user`)."""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "rsft-secret-7f3a"
ONE = json.dumps({"inputs": ["1 2\n"], "outputs": ["3\n"], "fn_name": None})
HIDDEN = json.dumps({"inputs": ["x\n", "y\n"], "outputs": [f"EXPECTED-{SECRET}\n", "EXPECTED-2\n"], "fn_name": None})
SHM_SEGMENTS = 20
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nerr = lambda: os.strerror(ctypes.get_errno())\n"


def to_every_fd(text_expr: str) -> str:
    """Program text that writes `text_expr` (a Python expression) to descriptors 0-63: the channel among them."""
    return (f"import os\ndata = ({text_expr}).encode()\nfor fd in range(0, 64):\n    try:\n"
            "        os.write(fd, data)\n    except OSError:\n        pass\n")


def programs(host: dict) -> dict[str, tuple[str, str]]:
    """name -> (code, input_output). `host` names what the evaluator planted."""
    p = {}
    # 1. verdicts: forged in every format the old harness or a guess could take, on every descriptor
    p["forge_verdict"] = (to_every_fd("'{\"results\": [true], \"metadata\": {}}\\n{\"verdict\": \"passed\"}\\n"
                                      "{\"test\": 0, \"passed\": true}\\n{\"test\": 1, \"stdout\": \"EXPECTED-2\"}\\n'")
                          + "print('wrong')", HIDDEN)
    p["garbage_channel"] = (to_every_fd("'\\x00{{{not json\\n'") + "print(3)", ONE)
    p["deep_channel"] = (to_every_fd("'{\"test\": 0, \"stdout\": ' + '[' * 100000 + ']' * 100000 + '}\\n'")
                         + "print(3)", ONE)
    p["find_expected"] = (
        "import gc, sys\nfound = [o for o in gc.get_objects() if isinstance(o, str) and 'EXPECTED-' in o]\n"
        "for m in list(sys.modules.values()):\n    for v in list(vars(m).values()) if hasattr(m, '__dict__') else []:\n"
        "        if isinstance(v, str) and 'EXPECTED-' in v:\n            found.append(v)\n"
        "print(found[0] if found else 'none')", HIDDEN)
    # 2. containment as a user namespace's root would try to undo it
    p["undo_mounts"] = (LIBC +
        "class A(ctypes.Structure):\n    _fields_ = [(n, ctypes.c_uint64) for n in ('s', 'c', 'p', 'u')]\n"
        "a = A(0, 1, 0, 0)\nout = []\n"
        "out.append(('setattr', libc.syscall(442, -100, b'/', 0x8000, ctypes.byref(a), 32), err()))\n"
        "out.append(('umount', libc.umount2(b'/proc', 2), err()))\n"
        "out.append(('umount', libc.umount2(b'/sandbox', 2), err()))\n"
        "out.append(('tmpfs', libc.mount(b'x', b'/sandbox', b'tmpfs', 0, None), err()))\n"
        "out.append(('userns', libc.unshare(0x10000000 | 0x20000), err()))\n"
        "out.append(('chroot', libc.chroot(b'/usr'), err()))\n"
        "print(out)", ONE)
    targets = ["/tmp/rsft-escape", str(ROOT / "rsft-escape"), "/dev/shm/rsft-escape", host["dir"] + "/escape",
               "/usr/rsft-escape", "/rsft-escape"]
    p["write_outside"] = ("import os\nout = []\n" + "".join(
        f"try:\n    os.write(os.open({t!r}, os.O_CREAT | os.O_WRONLY), b'x')\n    out.append('WROTE')\n"
        f"except OSError as e:\n    out.append(e.errno)\n" for t in targets) +
        "os.write(os.open('inside.txt', os.O_CREAT | os.O_WRONLY), b'fine')\nprint(out, os.listdir('.'))", ONE)
    p["read_secrets"] = (
        "import os, glob\nseen = [f'{k}={v}' for k, v in os.environ.items()]\n"
        f"for f in glob.glob('/proc/*/environ') + glob.glob('/proc/*/cmdline') + [{host['file']!r}]:\n"
        "    try:\n        seen.append(open(f, 'rb').read().decode(errors='ignore'))\n    except OSError:\n        pass\n"
        "pids = [d for d in os.listdir('/proc') if d.isdigit()]\n"
        f"print(len(pids), {SECRET!r} in ' '.join(seen), 'PATH=' in ' '.join(seen))", ONE)
    p["network"] = (
        "import socket\nout = []\n"
        f"for family, addr in [(socket.AF_INET, ('127.0.0.1', {host['port']})), (socket.AF_UNIX, {host['socket']!r})]:\n"
        "    try:\n        s = socket.socket(family)\n        s.settimeout(2)\n        s.connect(addr)\n"
        "        s.sendall(b'leak')\n        out.append('CONNECTED')\n    except OSError as e:\n        out.append(e.errno)\n"
        "print(out)", ONE)
    p["signals"] = (LIBC + "out = [libc.kill(pid, 9) for pid in [os.getppid(), " + str(host["pid"]) + "]]\n"
                    "libc.kill(-1, 9)\nprint('still here', out)", ONE)
    # 3. what used to be shared with the host
    p["ipc"] = (LIBC +
        f"q = libc.msgget({host['msg_key']}, 0)\nq_err = err()\nids = []\n"
        f"for i in range({SHM_SEGMENTS}):\n    sid = libc.shmget(0, 16 << 20, 0o1600)\n    ids.append(sid)\n"
        "    if sid >= 0:\n        libc.shmat.restype = ctypes.c_void_p\n        addr = libc.shmat(sid, None, 0)\n"
        "        if addr not in (None, ctypes.c_void_p(-1).value):\n            ctypes.memset(addr, 1, 16 << 20)\n"
        "print(q, q_err, sum(i >= 0 for i in ids))", ONE)
    keyctl = (LIBC + "SYS_KEYCTL, SYS_ADD_KEY = 250, 248\n"
              "def search(ring, name):\n    return libc.syscall(SYS_KEYCTL, 10, ring, b'user', name, 0)\n")
    p["keyring_plant"] = (keyctl + "k = libc.syscall(SYS_ADD_KEY, b'user', b'rsft-planted', b'PLANTED', 7, -4)\n"
                          "print('planted', k)", ONE)
    p["keyring_read"] = (keyctl + "out = []\nfor ring in (-3, -4, -5):\n"
                         "    for name in (b'rsft-secret', b'rsft-planted'):\n"
                         "        k = search(ring, name)\n        buf = ctypes.create_string_buffer(64)\n"
                         "        n = libc.syscall(SYS_KEYCTL, 11, k, buf, 64) if k >= 0 else -1\n"
                         "        out.append(buf.raw[:max(n, 0)].decode(errors='ignore'))\n"
                         "print(out)", ONE)
    p["fork_bomb"] = ("import posix, time\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n"
                      "        time.sleep(0.01)", ONE)
    p["threads_ok"] = ("import threading\nout = []\nts = [threading.Thread(target=lambda: out.append(1)) for _ in range(16)]\n"
                       "[t.start() for t in ts]\n[t.join() for t in ts]\na, b = map(int, input().split())\n"
                       "print(a + b if len(out) == 16 else 'threads failed')", ONE)
    p["setuid"] = (LIBC +
        "mounts = open('/proc/self/mountinfo').read().splitlines()\n"
        "nosuid = all('nosuid' in m.split(' - ')[0] for m in mounts)\n"
        "nnp = [l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0].split()[1]\n"
        "rc = libc.system(b'/usr/bin/mount -t tmpfs none /sandbox > /sandbox/out 2>&1')\n"
        "print(nosuid, nnp, rc != 0, len(mounts))", ONE)
    # (setsid is refused by the seccomp filter: the child stays in the program's session, asleep)
    p["daemon"] = ("import posix, time, os\nif posix.fork() == 0:\n    try:\n        os.setsid()\n    except OSError:\n"
                   "        pass\n    time.sleep(30)\n"
                   f"    open({host['dir'] + '/daemon-was-here'!r}, 'w').write('x')\n"
                   "else:\n    print(4)", ONE)
    p["disk"] = ("import os\ntotal = 0\nerr = None\nfor i in range(40):\n    try:\n"
                 "        with open(f'f{i}', 'wb') as f:\n            for _ in range(16):\n"
                 "                f.write(b'x' * (1 << 20))\n                total += 1\n"
                 "    except OSError as e:\n        err = e.errno\n        break\nprint(total, err)", ONE)
    p["memory"] = ("x = bytearray(8 * 1024 ** 3)\nprint(3)", ONE)
    # 4. reaching other programs past the namespaces (issue 38): the vsock port space, locks and inotify
    # on the system files every sandbox shares, the keyring and inotify quotas of the evaluator's uid
    p["vsock"] = ("import socket\ntry:\n    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)\n    print('opened')\n"
                  "except OSError as e:\n    print(e.errno)", ONE)
    p["file_locks"] = ("import fcntl, struct\nout = []\nf = open('/etc/passwd')\n"
                       "for call in (lambda: fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB), "
                       "lambda: fcntl.lockf(f, fcntl.LOCK_SH | fcntl.LOCK_NB), "
                       "lambda: fcntl.fcntl(f, 36, struct.pack('hhqqi', 0, 0, 0, 0, 0))):\n"
                       "    try:\n        call()\n        out.append('locked')\n    except OSError as e:\n"
                       "        out.append(e.errno)\nprint(out)", ONE)
    p["inotify"] = (LIBC + "fd = libc.inotify_init1(0)\nprint(fd if fd < 0 else 'watching', err())", ONE)
    # 5. memory past code.memory_mb (1024 here): memfd pages count against no address space, and each
    # forked child had the whole limit again (issue 38: 1.1 GB under 256, 2.75 GB under 512). Each prints
    # the expected output only if it got all of it
    p["memfd_hog"] = ("import os\nfds = []\nfor i in range(80):\n    fd = os.memfd_create(f'm{i}')\n"
                      "    os.write(fd, b'x' * (16 << 20))\n    fds.append(fd)\nprint(16 * len(fds))",
                      json.dumps({"inputs": ["1\n"], "outputs": ["1280\n"], "fn_name": None}))
    p["fork_hog"] = ("import posix, time\nkids = []\nfor i in range(12):\n    pid = posix.fork()\n    if pid == 0:\n"
                     "        x = bytearray(200 << 20)\n        x[::4096] = b'x' * len(x[::4096])\n        time.sleep(2)\n"
                     "        posix._exit(0)\n    kids.append(pid)\n"
                     "print(sum(posix.waitpid(k, 0)[1] == 0 for k in kids))",
                     json.dumps({"inputs": ["1\n"], "outputs": ["12\n"], "fn_name": None}))
    return p


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def shm_segments() -> int:
    return len(Path("/proc/sysvipc/shm").read_text().splitlines()) - 1


def left_running(uids: set[int]) -> list[str]:
    """Processes of the programs' uids still alive (as root each program had a uid of its own; as a
    user they ran as this evaluator, so anything of its uid but itself). Other tests' sandboxes use
    other uids, so a parallel suite does not confuse this."""
    out = subprocess.run(["ps", "-eo", "pid=,uid=,cmd="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if int(line.split()[1]) in uids and int(line.split()[0]) != os.getpid() and "ps -eo" not in line]


def main(out_path: str, policy: str = "strict") -> None:
    from reasoning_sft.evaluation.sandbox import run_program, run_programs
    from reasoning_sft.schema import CodeEvalConfig as Limits
    libc = _libc()
    os.environ["RSFT_SECRET"] = SECRET                                     # the evaluator's environment
    secret_key = libc.syscall(248, b"user", b"rsft-secret", SECRET.encode(), len(SECRET), -3)   # session keyring
    msg_key = 0x7273 + os.getpid()
    queue = libc.msgget(msg_key, 0o1666)
    msg = ctypes.create_string_buffer(b"\x01\x00\x00\x00\x00\x00\x00\x00" + SECRET.encode())
    libc.msgsnd(queue, msg, len(SECRET), 0)
    host_dir = tempfile.mkdtemp(prefix="rsft-host-")
    os.chmod(host_dir, 0o777)
    secret_file = Path(host_dir, "secret.txt")
    secret_file.write_text(SECRET)
    secret_file.chmod(0o644)
    unix = socket.socket(socket.AF_UNIX)
    sock_path = f"{host_dir}/rsft.sock"
    unix.bind(sock_path)
    os.chmod(sock_path, 0o777)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    reached = []
    for s in (unix, tcp):
        s.listen(4)
        s.settimeout(0.5)

        def accept(s=s):
            end = time.time() + 120
            while time.time() < end and not getattr(s, "_closed", False):
                try:
                    reached.append(s.accept()[0].recv(10).decode())
                except OSError:
                    pass
        threading.Thread(target=accept, daemon=True).start()
    host = {"dir": host_dir, "file": str(secret_file), "socket": sock_path, "port": tcp.getsockname()[1],
            "msg_key": msg_key, "pid": os.getpid()}
    shm_before = shm_segments()
    # 5 s a test: the slowest honest program here (20 x 16 MB of shared memory written) must finish on a
    # busy machine (make test runs two test files at a time); the fork bomb then runs 5 s
    limits = Limits(timeout_seconds=5, memory_mb=1024, processes=32, disk_mb=64, sandbox=policy)
    progs = programs(host)
    names = [n for n in progs if n != "keyring_read"]
    start = time.monotonic()
    verdicts = dict(zip(names, run_programs([progs[n] for n in names], limits, workers=4)))
    verdicts["keyring_read"] = run_program(*progs["keyring_read"], limits)   # after keyring_plant
    seconds = time.monotonic() - start
    time.sleep(0.5)
    buf = ctypes.create_string_buffer(64)
    result = {
        "verdicts": verdicts, "seconds": seconds, "reached": reached, "me": os.geteuid(),
        "left_running": left_running({v["isolation"].get("uid") for v in verdicts.values()} - {None}),
        "shm_left": shm_segments() - shm_before,
        "host_dir": sorted(os.listdir(host_dir)),
        "escaped": [t for t in ("/tmp/rsft-escape", str(ROOT / "rsft-escape"), "/dev/shm/rsft-escape") if os.path.exists(t)],
        "key_intact": libc.syscall(250, 11, secret_key, buf, 64) == len(SECRET),
        "queue_intact": libc.msgrcv(queue, msg, 64, 0, 0o4000) == len(SECRET),   # IPC_NOWAIT
    }
    libc.msgctl(queue, 0, None)   # IPC_RMID
    Path(out_path).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main(*sys.argv[1:])


USER = 1000


def delegated_cgroup(uid: int) -> list[str]:
    """A memory and a pids cgroup handed to `uid` (its directory and files chowned to it, as a cgroup v1
    delegation is done), under this process's own: the `cgroup.procs` files to put a process in. Its
    sandboxes can then make their groups under it as that user (reasoning_sft/evaluation/cgroups.py)."""
    from reasoning_sft.evaluation.cgroups import _mounts, _own_groups
    own, _ = _own_groups()
    mounts, _ = _mounts()
    paths = []
    for controller in ("memory", "pids"):
        if controller in mounts and controller in own:
            d = mounts[controller] / own[controller].lstrip("/") / f"rsft-user-{uid}"
            d.mkdir(exist_ok=True)
            for entry in [d, *d.iterdir()]:
                if entry.is_file() or entry == d:
                    os.chown(entry, uid, uid)
            paths.append(str(d / "cgroup.procs"))
    return paths


def as_user(argv: list[str], uid: int = USER, cgroup: bool = True) -> list[str]:
    """`argv` run as an unprivileged uid that reaches this venv's interpreter as a real user reaches
    their own: when the interpreter lives under a home that uid cannot enter (root's, mode 0700, here),
    a private mount namespace puts a 0755 tmpfs over that home and binds the interpreter's tree back.
    `cgroup`: in a memory and pids cgroup delegated to that user (delegated_cgroup), as a user with a
    delegated cgroup runs; False: in root's, where the user can make none. Nothing else changes for it."""
    if os.geteuid() != 0:   # already an unprivileged user: run as is
        return argv
    prefix = os.path.realpath(sys.base_prefix)
    home = next((str(p) for p in reversed(Path(prefix).parents) if str(p) != "/" and not os.stat(p).st_mode & 0o001),
                None)
    run = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--reset-env", "--", *argv]
    join = "".join(f'echo $$ > "{p}" && ' for p in (delegated_cgroup(uid) if cgroup else []))
    if home is None:
        return ["sh", "-c", join + 'exec "$@"', "sh", *run] if join else run
    script = (f'{join}keep=$(mktemp -d) && mount --bind "{prefix}" "$keep" && mount -t tmpfs -o mode=0755 tmpfs "{home}" && '
              f'mkdir -p "{prefix}" && mount --move "$keep" "{prefix}" && exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *run]
