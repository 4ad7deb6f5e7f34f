"""Runs inside the sandbox: one program on one problem's test *inputs*. Started by
reasoning_sft.evaluation.sandbox as `python -I sandbox_child.py CHANNEL_FD`, the job (JSON) on stdin.
It never sees an expected output: it reports what the program printed (stdin problems) or returned
(call-based problems, as tagged plain data) per test, one JSON line each on CHANNEL_FD; the evaluator
compares them with the expected outputs. Everything written after the program starts is untrusted.

Before the program runs this process contains itself (`contain`), then writes one line saying what
holds. The policy (issue 28): new user, mount, PID, network, IPC and UTS namespaces; a root of its
own (pivot_root into a tmpfs holding read-only, nosuid, nodev binds of the system and the Python it
needs, a size-capped tmpfs as the only writable dir, a /proc of its own, no /dev, /tmp or /run of the
host); an unprivileged uid (as root: a uid of its own per program, so process limits are its own);
every capability dropped and no_new_privs; nested user namespaces refused; a fresh session keyring;
resource limits. When `strict` and anything did not hold, it exits without running the program.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 1 << 18
MNT_DETACH = 2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
SYS_MOUNT_SETATTR, SYS_PIVOT_ROOT = 442, {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, -1)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 1, 4, 24, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
KEYCTL_JOIN_SESSION_KEYRING = 1
PROGRAM_UID_BASE = 1_000_000      # as root: uid PROGRAM_UID_BASE + pid, one per program, never a real user
SYSTEM_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
WORKDIR = "/sandbox"              # the program's cwd, HOME and TMPDIR inside its root


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.syscall.restype = ctypes.c_long


def _ok(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, dst, fstype, flags, data=None, what="mount") -> None:
    enc = lambda s: s.encode() if isinstance(s, str) else s   # noqa: E731
    _ok(_libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), f"{what} {dst}")


def _setattr(path: str, attr_set: int, attr_clr: int = 0, recursive: bool = True) -> None:
    a = _MountAttr(attr_set, attr_clr, 0, 0)
    _ok(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE if recursive else 0,
                      ctypes.byref(a), ctypes.sizeof(a)), f"mount_setattr {path}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


PYTHON_PATHS = (sys.base_prefix, sys.prefix, os.path.dirname(os.__file__))


def python_trees() -> list[str]:
    """What the program's Python needs: its prefixes (the interpreter, the standard library, the venv's
    packages). Not sys.path as a whole: an editable install would bring in the repository and its data."""
    trees = {os.path.realpath(p) for p in PYTHON_PATHS}
    trees = sorted(t for t in trees if t != "/" and not any(t == s or t.startswith(s + os.sep) for s in SYSTEM_TREES))
    return [t for t in trees if not any(t.startswith(o + os.sep) for o in trees if o != t)]


def python_links() -> dict[str, str]:
    """Prefixes reached through a symlink (a venv linked from elsewhere): sys.path spells them so, and
    the new root must too. -> {the path as spelled: its real path}"""
    return {os.path.abspath(p): os.path.realpath(p) for p in PYTHON_PATHS
            if os.path.abspath(p) != os.path.realpath(p)}


def build_root(disk_mb: int, uid: int, gid: int) -> None:
    """pivot_root into a fresh tmpfs holding read-only binds of the system and Python trees, a /proc
    mount point and the writable, size-capped WORKDIR; the host's root is detached."""
    trees, links = SYSTEM_TREES + tuple(python_trees()), python_links()   # before anything is mounted over
    # the new root is mounted over an existing dir (in this mount namespace only) that hides none of them
    sources = list(trees) + list(links) + list(links.values())
    new = next(d for d in ("/tmp", "/mnt", "/media", "/srv", "/opt", "/var/tmp", "/home", "/root")
               if os.path.isdir(d) and not any(s == d or s.startswith(d + os.sep) for s in sources))
    _mount(None, "/", None, MS_REC | MS_PRIVATE, what="make private")
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m", "root tmpfs")
    for tree in trees:
        if not os.path.exists(tree):
            continue
        target = new + tree
        if os.path.islink(tree):   # /bin -> usr/bin on merged-/usr systems
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(tree), target)
            continue
        os.makedirs(target, exist_ok=True)
        _mount(tree, target, None, MS_BIND | MS_REC, what="bind")
        _setattr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    for spelled, real in links.items():
        if not os.path.lexists(new + spelled):
            os.makedirs(os.path.dirname(new + spelled), exist_ok=True)
            os.symlink(real, new + spelled)
    for d in ("proc", WORKDIR.strip("/"), "old"):
        os.makedirs(f"{new}/{d}", exist_ok=True)
    _mount("tmpfs", new + WORKDIR, "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=0700,uid={uid},gid={gid},size={disk_mb}m,nr_inodes=4096", "workdir tmpfs")
    # A /proc of this PID namespace (this is its pid 1), mounted while the host's is still visible:
    # the kernel refuses a new proc in a user namespace where none is fully visible.
    _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, what="proc")
    _ok(_libc.syscall(SYS_PIVOT_ROOT, new.encode(), f"{new}/old".encode()), "pivot_root")
    os.chdir("/")
    _ok(_libc.umount2(b"/old", MNT_DETACH), "detach the host's root")
    os.rmdir("/old")
    _setattr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, recursive=False)


def drop_capabilities() -> None:
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()
    _ok(_libc.capset(ctypes.byref(header), data), "capset")


# --- seccomp: what the namespaces do not cover ---------------------------------------------------------
# Socket families a network namespace does not separate (AF_VSOCK reaches the host's and every other
# program's vsock ports), file locks and inotify on the read-only system files every sandbox shares (a
# channel between two programs running at once, and inotify instances count against the evaluator's
# uid), the kernel keyring calls (per-uid quotas), and setsid (every process of a program stays in its
# session, so the scheduler's autogroup gives the program one share of the CPU however many processes
# it starts). Each is refused with an errno, everything else allowed; another architecture's syscalls
# (i386 through int 0x80, x32) kill the process.
SECCOMP_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
SECCOMP_SYSCALLS = {   # name: (x86_64, aarch64); -1: none there
    "socket": (41, 198), "socketpair": (53, 199), "fcntl": (72, 25), "flock": (73, 32),
    "inotify_init": (253, -1), "inotify_init1": (294, 26), "fanotify_init": (300, 262),
    "add_key": (248, 217), "request_key": (249, 218), "keyctl": (250, 219), "setsid": (112, 157)}
SOCKET_FAMILIES = (1, 2, 10)                    # AF_UNIX, AF_INET, AF_INET6: inside the namespaces
LOCK_COMMANDS = (5, 6, 7, 36, 37, 38, 1024, 1025, 1026)   # F_GETLK..F_SETLKW, F_OFD_*, leases, F_NOTIFY
EAFNOSUPPORT, EPERM = 97, 1


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions of classic BPF over struct seccomp_data."""
    LD, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
    ALLOW, KILL = 0x7FFF0000, 0x80000000
    errno = lambda e: 0x00050000 | e   # noqa: E731
    column = 0 if machine == "x86_64" else 1
    nr = {name: numbers[column] for name, numbers in SECCOMP_SYSCALLS.items() if numbers[column] >= 0}
    prog = [(LD, 0, 0, 4), (JEQ, 1, 0, SECCOMP_ARCH[machine]), (RET, 0, 0, KILL), (LD, 0, 0, 0)]
    if machine == "x86_64":   # the x32 ABI's numbers
        prog += [(JGE, 0, 1, 0x40000000), (RET, 0, 0, KILL)]
    denied = [nr[n] for n in ("flock", "inotify_init", "inotify_init1", "fanotify_init", "add_key", "request_key",
                              "keyctl", "setsid") if n in nr]
    for number in denied:
        prog += [(JEQ, 0, 1, number), (RET, 0, 0, errno(EPERM))]
    # sockets: the family (args[0], low word at offset 16) must be one the namespaces hold
    socket_check = [(LD, 0, 0, 16)]
    for k, f in enumerate(SOCKET_FAMILIES):   # jump to the ALLOW after the errno when it matches
        socket_check.append((JEQ, len(SOCKET_FAMILIES) - k, 0, f))
    socket_check += [(RET, 0, 0, errno(EAFNOSUPPORT)), (RET, 0, 0, ALLOW)]
    for name in ("socket", "socketpair"):
        prog += [(JEQ, 0, len(socket_check), nr[name])] + socket_check
        prog += [(LD, 0, 0, 0)]   # the accumulator holds the family now: the number again
    # fcntl: lock, lease and notify commands (args[1], offset 24) refused, the rest allowed
    lock_check = [(LD, 0, 0, 24)]
    for k, c in enumerate(LOCK_COMMANDS):
        lock_check.append((JEQ, len(LOCK_COMMANDS) - k, 0, c))
    lock_check += [(RET, 0, 0, ALLOW), (RET, 0, 0, errno(EPERM))]
    prog += [(JEQ, 0, len(lock_check), nr["fcntl"])] + lock_check
    prog += [(RET, 0, 0, ALLOW)]
    return prog


def install_seccomp() -> None:
    """Load the filter on this process (inherited by every child; needs no_new_privs first)."""
    machine = os.uname().machine
    if machine not in SECCOMP_ARCH:
        raise OSError(0, f"seccomp: no filter for {machine}")
    prog = seccomp_program(machine)
    filters = (_SockFilter * len(prog))(*[_SockFilter(*i) for i in prog])
    fprog = _SockFprog(len(prog), filters)
    _ok(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def status() -> dict:
    fields = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def contain(job: dict) -> dict:
    """Contain this process (see the module's docstring). Returns what holds; in the forked pid 1
    when a PID namespace was made (the parent only waits for it and exits with it)."""
    held: dict = {"uid": os.geteuid()}
    missing: list[str] = []
    root = os.geteuid() == 0
    uid = PROGRAM_UID_BASE + os.getpid() if root else os.geteuid()
    gid = uid if root else os.getegid()
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    try:
        if not root:   # the user namespace grants the others; the program keeps its own uid inside
            _ok(_libc.unshare(flags | CLONE_NEWUSER), "unshare")
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        else:
            _ok(_libc.unshare(flags), "unshare")
        held["namespaces"] = "user mount pid net ipc uts" if not root else "mount pid net ipc uts"
    except OSError as e:   # weak at best: its own session, uid (as root) and limits, nothing else
        missing.append(f"namespaces ({e.strerror}: user namespaces are not available to this user)")
        if root:
            _become(uid, gid)
        # this process runs the program: it dies with the evaluator (a uid change disarmed the signal)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != job.get("parent", os.getppid()):
            os._exit(4)
        _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        _seccomp(held, missing)
        limit(job["limits"])
        return {**held, "uid": os.geteuid(), "missing": missing + job.get("cgroup_missing", []),
                "cgroup": job.get("cgroup_kind")}
    launcher_alive, launcher_holds = os.pipe()   # pid 1 reads EOF here once the launcher is gone
    pid = os.fork()
    if pid:   # the launcher: waits for pid 1 of the new namespace and exits with it; asked to stop
        # (SIGTERM from the evaluator, or the evaluator's death: its parent-death signal, armed again
        # after unshare changed its credentials), it kills pid 1 (so every process of the namespace)
        signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
        os.close(launcher_alive)
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != job.get("parent", os.getppid()):   # the evaluator went before it was armed
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os._exit(0)
    os.close(launcher_holds)
    os.setsid()
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        build_root(job["limits"]["disk_mb"], uid, gid)
        held["root"] = held["proc"] = "own"
    except OSError as e:
        missing.append(f"a root of its own ({e})")
    if root:   # a uid of its own (its process count, its keyrings), then a user namespace as that uid
        _become(uid, gid)
        if _libc.unshare(CLONE_NEWUSER) == 0:
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
    try:   # no user namespace inside this one: it would give the program mounts (a tmpfs outside its limits)
        _write("/proc/sys/user/max_user_namespaces", "0")
        held["nested_user_namespaces"] = "refused"
    except OSError as e:
        if root and _libc.unshare(CLONE_NEWUSER) != 0:
            held["nested_user_namespaces"] = "unavailable"   # unprivileged user namespaces are off
        else:
            missing.append(f"refusing nested user namespaces ({e.strerror})")
    if _keyctl_join() >= 0:
        held["keyring"] = "own"
    else:
        missing.append(f"a session keyring of its own ({os.strerror(ctypes.get_errno())})")
    try:
        drop_capabilities()
    except OSError as e:
        missing.append(str(e))
    # pid 1 dies with its launcher: the uid changes above disarmed the parent-death signal, so it is armed
    # again here, then the launcher is checked for (the pipe reads EOF once it is gone): a launcher killed
    # outright (SIGKILL to its group) takes the namespace with it too
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    import select
    if select.select([launcher_alive], [], [], 0)[0]:
        os._exit(4)
    os.close(launcher_alive)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _seccomp(held, missing)
    limit(job["limits"])
    os.chdir(WORKDIR if held.get("root") else "/")
    s = status()
    held.update(uid=os.geteuid(), capabilities=s.get("CapEff"), bounding_set=s.get("CapBnd"),
                no_new_privs=s.get("NoNewPrivs") == "1")
    if os.geteuid() == 0:
        missing.append("an unprivileged uid")
    for key in ("CapEff", "CapPrm", "CapInh", "CapAmb"):   # CapBnd is moot under no_new_privs
        if int(s.get(key, "1"), 16) != 0:
            missing.append(f"dropping every capability ({key} {s.get(key)})")
    if not held["no_new_privs"]:
        missing.append("no_new_privs")
    return {**held, "missing": missing + job.get("cgroup_missing", []), "cgroup": job.get("cgroup_kind")}


def _seccomp(held: dict, missing: list) -> None:
    try:
        install_seccomp()
        held["seccomp"] = "vsock and other families, locks, inotify, keyrings, setsid refused"
        try:   # one session per program: one share of the CPU where the scheduler groups by session
            grouped = open("/proc/sys/kernel/sched_autogroup_enabled").read().strip() == "1"
        except OSError:
            grouped = False
        held["cpu_share"] = "one per program (autogroup)" if grouped else "none (sched_autogroup_enabled is not 1)"
    except OSError as e:
        missing.append(f"a seccomp filter ({e.strerror})")


def _become(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)   # a uid change made /proc/self root's; its own again


def _keyctl_join() -> int:
    """A new anonymous session keyring (keyctl(2) JOIN_SESSION_KEYRING with no name); -1 on failure,
    and on an architecture whose syscall number is not listed here (then containment is incomplete)."""
    sys_keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine, -1)
    return _libc.syscall(sys_keyctl, KEYCTL_JOIN_SESSION_KEYRING, None)


def limit(lim: dict) -> None:
    for name, value in (("RLIMIT_CPU", lim["cpu_seconds"]), ("RLIMIT_AS", lim["memory_bytes"]),
                        ("RLIMIT_FSIZE", lim["file_bytes"]), ("RLIMIT_NPROC", lim["processes"]),
                        ("RLIMIT_NOFILE", 256), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an oversized write fails with EFBIG instead


# --- what the program produced, as plain data the evaluator can compare without running anything ---

def encode(value, depth: int = 0):
    """A returned value as tagged JSON data: tuples, sets and non-string dict keys survive, so the
    evaluator's `==` is LiveCodeBench's; an object of any other type is opaque and equals nothing
    (LiveCodeBench compared it in-process, where a crafted __eq__ passes every test)."""
    if depth > 200:
        raise ValueError("nested too deep")
    t = type(value)
    if value is None or t in (bool, str):
        return value
    if t is int:
        return value if abs(value) < 2 ** 53 else {"$i": str(value)}
    if t is float:
        return value if value == value and abs(value) != float("inf") else {"$x": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"$t": [encode(v, depth + 1) for v in value]}
    if t in (set, frozenset):
        return {"$s" if t is set else "$fs": [encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    # the standard library's and numpy's value types LiveCodeBench's `==` meets: each rebuilt as itself by
    # the evaluator, so `prediction == expected` (and its truth value) is the one LiveCodeBench computes
    import collections
    import decimal
    mapping = {collections.Counter: "$counter", collections.OrderedDict: "$od", collections.defaultdict: "$dd"}
    if t in mapping:
        return {mapping[t]: [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t is decimal.Decimal:
        return {"$dec": str(value)}
    np = sys.modules.get("numpy")   # only if the program imported it
    if np is not None and isinstance(value, (np.generic, np.ndarray)) and value.dtype.kind in "biufU":
        if isinstance(value, np.ndarray):
            return {"$nd": [value.dtype.str, list(value.shape), encode(value.ravel().tolist(), depth + 1)]}
        return {"$ns": [value.dtype.str, encode(value.item(), depth + 1)]}
    import numbers
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, numbers.Integral):   # numpy integers compare equal to ints in LiveCodeBench too
        return encode(int(value), depth)
    if isinstance(value, numbers.Real):
        return encode(float(value), depth)
    return {"$o": t.__name__}


def run_tests(job: dict, report) -> None:
    """LiveCodeBench's grade_call_based / grade_stdio, up to the comparison: the same compilation,
    the same stdin patching and capture, the same per-test alarm; each test's raw result reported."""
    from livecodebench.evaluation import testing_util as lcb
    signal.signal(signal.SIGALRM, lcb.timeout_handler)
    lcb.reliability_guard()
    timeout, inputs = job["timeout"], job["inputs"]
    call_based = job["fn_name"] is not None
    try:
        if call_based:
            compiled = lcb.compile_code(lcb.import_string + "\n\n" + job["code"], timeout)
            method = lcb.get_function(compiled, job["fn_name"]) if compiled is not None else None
            inputs = [[json.loads(line) for line in inp.split("\n")] for inp in inputs]
        else:
            compiled = lcb.compile_code(lcb.make_function(lcb.clean_if_name(job["code"])), timeout)
            method = lcb.get_function(compiled, "wrapped_function") if compiled is not None else None
    except Exception as e:  # noqa: BLE001 - LiveCodeBench's run_test: "Error during testing"
        report({"test": 0, "error": -4, "message": f"Error during testing: {e}"})
        return
    if method is None:
        report({"test": 0, "error": -4, "message": "Error during testing: no function to call"})
        return
    for i, inp in enumerate(inputs):
        signal.alarm(timeout)
        try:
            if call_based:
                prediction = method(*inp)
                signal.alarm(0)
                if isinstance(prediction, tuple):
                    prediction = list(prediction)
                line = {"test": i, "value": encode(prediction)}
            else:
                with lcb.Capturing() as captured:
                    lcb.call_method(method, inp)
                    signal.alarm(0)
                line = {"test": i, "stdout": captured[0] if captured else ""}
        except BaseException as e:  # noqa: BLE001 - the program's failure is its result
            signal.alarm(0)
            timed_out = "timeoutexception" in repr(e).lower()
            report({"test": i, "error": -3 if timed_out else -4,
                    "message": "Time Limit Exceeded" if timed_out else f"Runtime Error: {e!r}"[:300]})
            return
        report(line)


def main() -> None:
    fd = int(sys.argv[1])
    job = json.loads(sys.stdin.read())
    # the evaluator's death (SIGKILL included) reaches this process: SIGTERM, which the launcher answers
    # by killing the program's namespace (contain() arms it again where credentials change)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != job.get("parent", os.getppid()):
        os._exit(4)
    # into the program's own cgroup (cgroups.py, made by the evaluator) before anything else starts
    for procs in job.get("cgroup_procs") or ():
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            job["cgroup_missing"] = [f"memory cgroup of its own (joining {procs}: {e.strerror})"]
    sys.stdin = open(os.devnull)
    dumps, write = json.dumps, os.write

    def report(line: dict) -> None:
        data = (dumps(line, default=str) + "\n").encode()
        while data:
            data = data[write(fd, data):]

    if sys.platform.startswith("linux"):   # before any import that may start threads (numpy's BLAS)
        held = contain(job)
    else:
        held = {"missing": ["Linux namespaces (this is not Linux)"]}
        limit(job["limits"])
    report({"isolation": held})
    if held["missing"] and job["policy"] == "strict":
        os._exit(3)            # fail closed: the program never runs
    if job.get("code") is not None:
        try:
            run_tests(job, report)
        except BaseException as e:  # noqa: BLE001
            report({"test": -1, "error": -4, "message": f"harness: {e!r}"[:300]})
    os._exit(0)                # no atexit, no lingering threads of the program


if __name__ == "__main__":
    main()
