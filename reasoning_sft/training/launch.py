"""Starting the worker processes of a multi-process run, and knowing which rank this process is.

One Hydra process composes, validates and resolves the config, writes it to the run dir, then starts
`trainer.nproc_per_node x trainer.nnodes` workers with DeepSpeed's launcher (or torchrun). Each
worker runs `python -m reasoning_sft.train_worker <run dir>`: it reads that frozen config.yaml and
writes into the same run dir, so no rank re-runs Hydra (no per-rank `${now:}` dirs, no `--local_rank`
argument for Hydra to reject). Under SLURM (hydra/launcher=slurm) every task is already one rank:
`slurm_rank_env` maps SLURM's variables to torch's (submitit reads them) and the task trains in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from reasoning_sft.config import world_size
from reasoning_sft.errors import ConfigError, DataError
from reasoning_sft.registry import LAUNCHERS

WORKER_ENV = "RSFT_WORKER"   # set for the processes this module starts
LAUNCHER_ENV = "RSFT_LAUNCHER"   # host:pid of the launching command, which the workers watch


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_worker() -> bool:
    """A process started by `launch_workers`, or a SLURM task of a multi-task job."""
    return os.environ.get(WORKER_ENV) == "1" or int(os.environ.get("WORLD_SIZE", "1")) > 1


def slurm_rank_env(master_port: int | None = None) -> dict[str, str]:
    """torch.distributed's variables for this SLURM task (one task per rank, as hydra-submitit-launcher
    starts them), read by submitit, whose launcher started the task. Empty when this is not a
    multi-task SLURM job."""
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in os.environ:
        return {}
    from submitit.helpers import TorchDistributedEnvironment
    given = os.environ.get("SUBMITIT_EXECUTOR")
    os.environ["SUBMITIT_EXECUTOR"] = given or "slurm"   # set by submitit's launcher; a plain srun task lacks it
    try:
        dist = TorchDistributedEnvironment()   # node list, ranks; a port seeded by the job id, same on every task
    finally:
        if given is None:   # a plain srun task stays one: under_slurm_launcher() reads this variable
            del os.environ["SUBMITIT_EXECUTOR"]
    return {"RANK": str(dist.rank), "WORLD_SIZE": str(dist.world_size), "LOCAL_RANK": str(dist.local_rank),
            "LOCAL_WORLD_SIZE": str(dist.local_world_size), "MASTER_ADDR": dist.master_addr,
            "MASTER_PORT": str(master_port or dist.master_port)}


def rendezvous_address(node: str) -> str:
    """An address the job's tasks reach the first node at. submitit names the node, and a SLURM node name
    need not resolve as a host name (several slurmd on one host, many sites' naming): then the node's
    NodeAddr, as `scontrol show node` gives it. Neither: one line naming the node, before any rank waits."""
    try:
        socket.getaddrinfo(node, None)
        return node
    except OSError:
        pass
    try:
        out = subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"SLURM node {node!r}: its name does not resolve and scontrol could not say its "
                          f"address ({e})") from None
    addr = next((f.split("=", 1)[1] for f in out.stdout.split() if f.startswith("NodeAddr=")), None)
    if not addr:
        raise ConfigError(f"SLURM node {node!r}: its name does not resolve and scontrol shows no NodeAddr "
                          f"for it ({(out.stderr or out.stdout).strip()[:200]})")
    return addr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def under_slurm_launcher() -> bool:
    """Running as a task of a submitit SLURM job (hydra/launcher=slurm): submitit's own mark."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm"


def launcher_name(cfg: DictConfig) -> str:
    name = cfg.trainer.launcher
    if name == "auto" and under_slurm_launcher():
        return "slurm"
    if name == "auto":
        return "deepspeed" if cfg.deepspeed.config is not None else "torchrun"
    return name


def check_launch_config(cfg: DictConfig) -> None:
    """What a launch needs, checked in the parent before any worker starts."""
    t = cfg.trainer   # trainer.launcher's name is checked by the schema (registry.LAUNCHERS)
    if launcher_name(cfg) == "slurm":
        tasks = int(os.environ.get("SLURM_NTASKS", "0"))
        if tasks != world_size(cfg.trainer):
            raise ConfigError(f"trainer.launcher='slurm': this process is not one of {world_size(cfg.trainer)} SLURM tasks "
                              f"(SLURM_NTASKS={tasks or 'unset'}); run with hydra/launcher=slurm")
        return
    if t.hostfile is not None and not Path(t.hostfile).is_file():
        raise ConfigError(f"trainer.hostfile={t.hostfile!r}: no such file (expected DeepSpeed's hostfile, "
                          "one line per node: `<host> slots=<GPUs>`)")
    if t.nnodes > 1 and not is_worker():
        if launcher_name(cfg) != "deepspeed" or t.hostfile is None:
            raise ConfigError(f"trainer.nnodes={t.nnodes}: a multi-node run needs trainer.hostfile with the "
                              "DeepSpeed launcher, or hydra/launcher=slurm (one task per rank)")
    if t.hostfile is not None and launcher_name(cfg) == "deepspeed" and not is_worker():
        check_hosts(t)


def hostfile_hosts(path: str) -> list[str]:
    """The hosts of a DeepSpeed hostfile (`<host> slots=<N>` a line; blank lines and # comments skipped)."""
    hosts = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        host, *rest = line.split()
        if not rest or not rest[0].startswith("slots="):
            raise ConfigError(f"trainer.hostfile={path}, line {number}: {line!r} is not `<host> slots=<N>`")
        hosts.append(host)
    if not hosts:
        raise ConfigError(f"trainer.hostfile={path}: names no host")
    return hosts


def ssh_options(t) -> list[str]:
    """The options DeepSpeed's pdsh runner gives ssh: the user's PDSH_SSH_ARGS_APPEND (an `-F ssh_config`
    passes through) and trainer.ssh_port."""
    import shlex
    return shlex.split(os.environ.get("PDSH_SSH_ARGS_APPEND", "")) + (["-p", str(t.ssh_port)] if t.ssh_port else [])


def check_hosts(t) -> None:
    """Every host of the hostfile answers over ssh, as pdsh will reach it, within trainer.host_check_timeout_s
    (all at once), and the first resolves (it is the rendezvous address): else one line naming the host and
    ssh's own words, before any rank starts anywhere."""
    hosts = hostfile_hosts(t.hostfile)
    timeout = t.host_check_timeout_s
    checks = {h: subprocess.Popen(["ssh", *ssh_options(t), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout}",
                                   h, "true"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for h in hosts}
    failed = []
    for host, proc in checks.items():
        try:
            _, err = proc.communicate(timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = f"no answer within {timeout} s"
        if proc.returncode != 0:
            failed.append(f"{host} ({(err.strip().splitlines() or ['ssh exited with ' + str(proc.returncode)])[-1]})")
    if failed:
        raise ConfigError(f"trainer.hostfile={t.hostfile}: cannot reach over ssh: {'; '.join(failed)}")
    rendezvous_host(hosts[0], t.hostfile)


def rendezvous_host(host: str, hostfile: str) -> str:
    """The first host's address, where every rank meets: it must resolve (DeepSpeed's runner would ask the
    host for it over plain ssh, outside the user's ssh options; it is given the name instead)."""
    try:
        return socket.getaddrinfo(host, None)[0][4][0]
    except OSError as e:
        raise ConfigError(f"trainer.hostfile={hostfile}: the first host {host!r} (the rendezvous address) does "
                          f"not resolve ({e})") from None


def deepspeed_command(t, port: str) -> list[str]:
    cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", str(t.nproc_per_node),
           "--master_port", port, "--no_local_rank"]   # Hydra-style args must not get --local_rank
    if t.hostfile is not None:   # checked by check_hosts, with the same ssh options pdsh gets
        cmd += ["--hostfile", str(t.hostfile), "--num_nodes", str(t.nnodes), "--no_ssh_check",
                "--master_addr", hostfile_hosts(t.hostfile)[0]]
        if t.ssh_port:
            cmd += ["--ssh_port", str(t.ssh_port)]
    return cmd + ["--module"]


# What the ranks on other hosts are given of this process's environment (DeepSpeed's pdsh runner passes
# only NCCL_*, PYTHON* and the like, plus the DS_ENV_FILE it reads): how to run, never a credential (W&B's
# and the hub's come from each host's own login: `wandb login`, `huggingface-cli login`).
REMOTE_ENV = ("OMP_NUM_THREADS", "TOKENIZERS_PARALLELISM", "WANDB_MODE", "WANDB_DIR", "HF_HOME", "HF_HUB_OFFLINE",
              "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "TORCH_EXTENSIONS_DIR")


def remote_env_file(run_dir: Path, env: dict) -> Path:
    """DeepSpeed's env file, one `KEY=VALUE` a line: its pdsh runner exports each in the remote shell and
    double-quotes a value with a space or other special characters itself (`MultiNodeRunner.add_export`)."""
    path = run_dir / "deepspeed_env"
    keep = {k: env[k] for k in (WORKER_ENV, LAUNCHER_ENV, *REMOTE_ENV) if env.get(k)}
    path.write_text("".join(f"{k}={v}\n" for k, v in keep.items()))
    return path


def torchrun_command(t, port: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(t.nproc_per_node),
            "--nnodes", "1", "--master_port", port, "-m"]


# trainer.launcher: each names the command that starts the ranks (`auto` picks one: launcher_name);
# slurm starts none (hydra/launcher=slurm made every rank a SLURM task)
LAUNCHERS.add("auto", None)
LAUNCHERS.add("deepspeed", deepspeed_command)
LAUNCHERS.add("torchrun", torchrun_command)
LAUNCHERS.add("slurm", None)


def worker_command(cfg: DictConfig, run_dir: Path, port: int | None = None) -> list[str]:
    t = cfg.trainer
    port = str(port or t.master_port or free_port())
    return LAUNCHERS[launcher_name(cfg)](t, port) + ["reasoning_sft.train_worker", str(run_dir)]


SHM_DIR = Path("/dev/shm")


def release_shared_memory(port, rank: int | str = "*") -> int:
    """Remove DeepSpeed's CPU allreduce buffers of a finished run: its shm.cpp creates
    /dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank> (69 MB a rank) and never unlinks it,
    so each CPU run left RAM behind until reboot (20 GB after a day of test runs here, measured, until
    vLLM's engine no longer started). Unlinking after the ranks' collectives is safe: only the name goes;
    a process still mapping a buffer keeps it. Returns how many were removed."""
    removed = 0
    for path in SHM_DIR.glob(f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_{rank}"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def threads_per_rank(nproc_per_node: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // max(1, nproc_per_node))


class LaunchError(RuntimeError):
    """Workers exited with an error that is not a config or data error."""


def launch_workers(cfg: DictConfig, run_dir: Path) -> None:
    """Start the workers on the frozen config in `run_dir` and wait. A config or data error raised in
    a worker comes back as the same exception here (rank 0 writes it to worker_error.json)."""

    error_file = run_dir / "worker_error.json"
    error_file.unlink(missing_ok=True)
    env = {**os.environ, WORKER_ENV: "1", "PYTHONUNBUFFERED": "1", LAUNCHER_ENV: f"{socket.gethostname()}:{os.getpid()}"}
    # N ranks on one node share its cores: each rank's OpenMP pool defaults to every core, and the
    # oversubscribed pools spin against each other (ZeRO-3 on 2 ranks x 2 cores: 7x slower, measured).
    # torchrun sets 1; we give each rank its share. A value the user set wins.
    env.setdefault("OMP_NUM_THREADS", str(threads_per_rank(cfg.trainer.nproc_per_node)))
    # The launcher dies with this process (even on kill -9), and each worker with the launcher
    # (train_worker sets the same): no worker trains on with nobody waiting for it.
    if cfg.trainer.hostfile is not None and launcher_name(cfg) == "deepspeed":   # the ranks start over ssh
        env["DS_ENV_FILE"] = str(remote_env_file(run_dir, env))   # read by DeepSpeed's runner, exported to each
    port = cfg.trainer.master_port or free_port()
    proc = subprocess.Popen(worker_command(cfg, run_dir, port), env=env, start_new_session=True,
                            preexec_fn=die_with_parent)

    def forward(signum, _frame):
        """SIGTERM (preemption) goes to the training ranks only, once: each checkpoints at the end of
        its step and exits 0. DeepSpeed's launcher processes (their command lines name the worker
        module too) are left alone: theirs would SIGKILL the workers after 30 s."""
        for pid in training_ranks(proc.pid):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    except BaseException:   # Ctrl-C or any error here: the workers must not outlive this command
        _kill_group(proc)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        release_shared_memory(port)   # the ranks are gone (however they ended): their buffers go too
    if error_file.exists():
        err = json.loads(error_file.read_text())
        raise {"config": ConfigError, "data": DataError}.get(err["kind"], LaunchError)(err["message"])
    if code != 0:
        raise LaunchError(f"{launcher_name(cfg)} workers exited with code {code} (run dir {run_dir})")


def training_ranks(launcher_pid: int) -> list[int]:
    """The worker processes under a launcher: `python [-u] -m reasoning_sft.train_worker <run dir>`,
    not DeepSpeed's runner / launch or torchrun, whose command lines also name the module."""
    import psutil
    ranks = []
    for child in psutil.Process(launcher_pid).children(recursive=True):
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        args = [a for a in cmd[1:] if a != "-u"]
        if args[:2] == ["-m", "reasoning_sft.train_worker"]:
            ranks.append(child.pid)
    return ranks


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: this process gets `sig` when its parent exits, however it exits (prctl PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, int(sig), 0, 0, 0)   # PR_SET_PDEATHSIG


def watch_launcher(interval: float = 2.0) -> None:
    """In a worker: when the launching command is gone (kill -9, a crash), stop as on preemption
    (SIGTERM to itself: checkpoint at the step end, exit). DeepSpeed's launcher processes do not die
    with it, so the workers watch it themselves; a worker on another node cannot see it."""
    import threading
    import time
    host, _, pid = os.environ.get(LAUNCHER_ENV, "").rpartition(":")
    if not pid or host != socket.gethostname():
        return

    def watch():
        while True:
            time.sleep(interval)
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except PermissionError:
                pass
    threading.Thread(target=watch, name="watch-launcher", daemon=True).start()


def _group_alive(pgid: int) -> bool:
    """A live (not zombie) process is left in the group: the launcher or any of its workers."""
    import psutil
    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher's process group (launcher and workers), then SIGKILL what is left.
    Returns when the whole group is gone, not only the launcher: the command that started the
    workers never returns while one of them still runs (on a slow machine a rank's step can
    outlast its launcher by many seconds)."""
    import time
    for sig, wait in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            proc.poll()   # reap the launcher
            if not _group_alive(proc.pid):
                return
            time.sleep(0.2)


def write_worker_error(run_dir: Path, error: Exception) -> None:
    kind = "config" if isinstance(error, ConfigError) else "data" if isinstance(error, DataError) else "other"
    (run_dir / "worker_error.json").write_text(json.dumps({"kind": kind, "message": str(error)}))


def single_process_env() -> None:
    """A one-process run that still initialises torch.distributed (DeepSpeed does): without these
    DeepSpeed falls back to MPI discovery (mpi4py) and fails."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))


def finish_distributed() -> None:
    """Every rank waits here until all are done with the collective work; the rest is rank 0's.
    The group is not torn down: destroying it (explicitly, or by C++ destructors at interpreter exit)
    sometimes aborted a worker with "terminate called without an active exception" on this machine,
    so launched workers leave through os._exit (reasoning_sft/train_worker.py)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def needs_launch(cfg: DictConfig) -> bool:
    return world_size(cfg.trainer) > 1 and not is_worker() and launcher_name(cfg) != "slurm"
