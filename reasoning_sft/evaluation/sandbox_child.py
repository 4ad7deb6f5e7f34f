"""Runs inside the sandbox: one program against one problem's tests, with LiveCodeBench's own
`testing_util.run_test`. Started by reasoning_sft.evaluation.sandbox as `python -I sandbox_child.py RESULT_FD`,
the job (JSON) on stdin; the verdict goes to RESULT_FD as one JSON line.

Before the program runs, this process (still holding the privileges the evaluator has) puts itself in
new network, mount and PID namespaces, makes every mount read-only but its own working directory,
forks the process that will run the program (pid 1 of the new PID namespace: when it dies, every
process the program started dies with it), and there drops to an unprivileged user (when started as
root) and sets the resource limits. Where the OS refuses a step, it is skipped and reported in the
verdict's `isolation`, so a summary says how contained its programs were.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_REC, MS_PRIVATE, MS_BIND, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x4000, 1 << 18, 0x1000, 2, 4, 8
MNT_DETACH, PR_SET_PDEATHSIG = 2, 1
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = -100, 0x8000, 0x1
SYS_MOUNT_SETATTR = 442            # the same number on x86_64 and aarch64
NOBODY = 65534


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _check(ret: int, what: str) -> None:
    if ret != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def isolate(workdir: str) -> dict:
    """New namespaces and a read-only filesystem but `workdir`; returns what took effect."""
    done = {"network": False, "filesystem_read_only": False, "pid_namespace": False, "user": "unchanged"}
    if not sys.platform.startswith("linux"):
        return done
    libc = _libc()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
    if os.geteuid() != 0:
        flags |= CLONE_NEWUSER   # an unprivileged user gets the namespaces through a user namespace
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(flags) != 0:
        return done
    if flags & CLONE_NEWUSER:
        try:
            with open("/proc/self/setgroups", "w") as f:
                f.write("deny")
            with open("/proc/self/uid_map", "w") as f:
                f.write(f"{uid} {uid} 1")
            with open("/proc/self/gid_map", "w") as f:
                f.write(f"{gid} {gid} 1")
        except OSError:
            pass
    done["network"] = done["pid_namespace"] = True
    try:
        _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
        done["home_hidden"] = _hide_home(libc, workdir)
        path = workdir.encode()
        _check(libc.mount(path, path, None, MS_BIND, None), "bind the working directory")   # a mount of its own
        ro = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
        _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(ro), ctypes.sizeof(ro)),
               "mount_setattr read-only")
        rw = _MountAttr(0, MOUNT_ATTR_RDONLY, 0, 0)
        _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path, 0, ctypes.byref(rw), ctypes.sizeof(rw)),
               "mount_setattr writable working directory")
        done["filesystem_read_only"] = True
    except OSError as e:
        done["filesystem_error"] = str(e)
    return done


def _hide_home(libc, workdir: str) -> str:
    """An empty tmpfs over the evaluator's home (its tokens, .netrc, caches), with the Python the
    program needs (interpreter prefix, venv) bound back where they were."""
    import pwd
    home = os.path.realpath(pwd.getpwuid(os.geteuid()).pw_dir)
    if home in ("/", "") or not os.path.isdir(home):
        return "no home"
    keep = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, os.path.dirname(os.__file__))
                   if os.path.realpath(p).startswith(home + os.sep)})
    keep = [p for p in keep if not any(p.startswith(q + os.sep) for q in keep if q != p)]
    stashes = []
    for i, path in enumerate(keep):
        stash = os.path.join(workdir, f".keep{i}")
        os.mkdir(stash)
        _check(libc.mount(path.encode(), stash.encode(), None, MS_BIND | MS_REC, None), f"stash {path}")
        stashes.append((stash, path))
    _check(libc.mount(b"tmpfs", home.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755,size=1m"), "tmpfs on home")
    for stash, path in stashes:
        os.makedirs(path, exist_ok=True)
        _check(libc.mount(stash.encode(), path.encode(), None, MS_BIND | MS_REC, None), f"restore {path}")
        _check(libc.umount2(stash.encode(), MNT_DETACH), f"unstash {path}")
        os.rmdir(stash)
    return home


def limit(job: dict) -> None:
    lim = job["limits"]
    for name, value in (("RLIMIT_CPU", lim["cpu_seconds"]), ("RLIMIT_AS", lim["memory_bytes"]),
                        ("RLIMIT_FSIZE", lim["file_bytes"]), ("RLIMIT_NPROC", lim["processes"]),
                        ("RLIMIT_NOFILE", 256), ("RLIMIT_CORE", 0)):
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError):
            pass


def drop_privileges(workdir: str) -> str:
    if os.geteuid() != 0:
        return "unchanged"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    return "nobody"


def run(job: dict, out) -> None:
    from livecodebench.evaluation.testing_util import run_test   # imported before the lockdown
    workdir = job["workdir"]
    isolation = isolate(workdir)
    pid = os.fork() if isolation["pid_namespace"] else 0
    if pid:   # the launcher: waits for pid 1 of the new namespace, whose verdict goes straight to `out`
        _, status = os.waitpid(pid, 0)
        os._exit(0)
    if isolation["pid_namespace"]:
        os.setsid()                        # its own process group: kill(0) reaches nothing of ours
        try:                               # a /proc of this namespace only: no other process's environ
            _check(_libc().mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
            isolation["proc"] = "own"
        except OSError:
            isolation["proc"] = "host"
    os.chdir(workdir)
    isolation["user"] = drop_privileges(workdir)
    if isolation["pid_namespace"]:         # after setuid, which clears it: die with the launcher
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    limit(job)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an oversized write fails with EFBIG instead
    sys.setrecursionlimit(50000)
    verdict: dict = {"isolation": isolation}
    try:
        results, meta = run_test({"input_output": job["input_output"]}, test=job["code"], timeout=job["timeout"])
        verdict.update(results=[r if isinstance(r, bool) else int(r) for r in results], metadata=meta)
    except BaseException as e:  # noqa: BLE001 - whatever the program did, the verdict is written
        verdict.update(results=[-4], metadata={"error_code": -4, "error_message": f"Runtime Error: {e!r}"})
    out.write(job["nonce"] + json.dumps(verdict, default=str) + "\n")
    out.flush()
    os._exit(0)   # no atexit, no lingering threads of the program


def main() -> None:
    out = os.fdopen(int(sys.argv[1]), "w")
    job = json.loads(sys.stdin.read())
    sys.stdin = open(os.devnull)
    run(job, out)


if __name__ == "__main__":
    main()
