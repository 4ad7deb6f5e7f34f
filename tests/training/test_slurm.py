"""Multi-node for real. SLURM: a two-node cluster on this host (tests/slurm/cluster.sh, started here as root),
jobs submitted by hydra-submitit-launcher exactly as a user submits them (`hydra/launcher=slurm`), ranks from
SLURM's environment through submitit, ZeRO-3 on gloo across two tasks; preemption the way a cluster does
it. DeepSpeed's hostfile launcher: pdsh over an sshd of the tests' own (tests/ssh/hosts.sh), two "hosts"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.ranks]

ZERO3 = ["data.source.num_problems=256", "trainer.global_batch_size=4", "trainer.micro_batch_size=2",
         "trainer.nproc_per_node=2", "deepspeed=zero3", "trainer.logging_steps=1", "trainer.learning_rate=1e-3",
         "trainer.warmup_ratio=0", "trainer.save_final_model=false", "logger=none"]
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=cpu", "hydra.launcher.timeout_min=20"]


def started(script: str, state: Path, missing: str):
    """Run the project's own `tests/<script> up <state>` (it installs what it needs from Debian and starts
    it), yield the path it prints last, and `down` after. Exit 3 (nothing can be installed here: not root,
    no apt-get) skips, saying what is missing; any other failure fails."""
    up = subprocess.run(["bash", str(ROOT / "tests" / script), "up", str(state)],
                        capture_output=True, text=True, timeout=600)
    if up.returncode == 3:
        pytest.skip(f"{missing}: {up.stderr.strip()}")
    assert up.returncode == 0, up.stderr[-3000:]
    yield up.stdout.strip().splitlines()[-1]
    subprocess.run(["bash", str(ROOT / "tests" / script), "down", str(state)], timeout=60)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """SLURM_CONF of a running two-node cluster (installed and started by the project's own script)."""
    yield from started("slurm/cluster.sh", tmp_path_factory.mktemp("slurm"), "no SLURM here")


def env_for(conf: str) -> dict:
    return {**os.environ, "SLURM_CONF": conf, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def submit(conf: str, sweep: Path, overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reasoning_sft.train", "-m", *SLURM, *overrides,
                             f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env_for(conf), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def losses(run_dir: Path) -> dict[int, float]:
    rows = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def job_ids(conf: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], env=env_for(conf), capture_output=True, text=True).stdout
    return out.split()


def wait_gone(conf: str, job: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while job in job_ids(conf):
        assert time.time() < deadline, f"job {job} still in the queue after {timeout} s"
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    import signal
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 300):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the command ended before {what}:\n{proc.stdout.read()[-3000:]}")
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


# docs/cluster.md's command for a CPU partition, run as written (plus where its sweep goes)
DOCUMENTED_CPU_COMMAND = ("python -m reasoning_sft.train -m hydra/launcher=slurm hydra.launcher.partition=cpu "
                          "trainer.nnodes=2 deepspeed=zero3 trainer.max_steps=3 "
                          "trainer.learning_rate=1e-3,3e-3 logger=none")


def test_the_documented_two_job_sweep_of_two_node_zero3_runs_on_slurm_and_reports(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    env = {"HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
           "SLURM_CONF": slurm, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    typed = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                            f"source .venv/bin/activate && {DOCUMENTED_CPU_COMMAND} hydra.sweep.dir={sweep}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert typed.returncode == 0, typed.stdout[-2000:] + typed.stderr[-3000:]
    for job, lr in (("0", 1e-3), ("1", 3e-3)):
        summary = json.loads((sweep / job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["train"]["world_size"] == 2 and summary["train"]["steps"] == 3
        ranks = [json.loads((sweep / job / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
        assert [r["world_size"] for r in ranks] == [2, 2] and [r["node"] for r in ranks] == ["n1", "n2"]
        assert not set(ranks[0]["samples_seen"]) & set(ranks[1]["samples_seen"])   # disjoint shares
        # ZeRO-3 partitions across the two SLURM tasks, one per node: each holds about half of every parameter
        assert all(r["parameters_local"] <= r["parameters_full"] / 2 + 64 for r in ranks)
    # each job was a SLURM job with two tasks (submitit's logs, one per task)
    logs = sorted(p.name for p in (sweep / ".submitit").rglob("*_log.out"))
    assert len(logs) == 4, logs
    report = subprocess.run([sys.executable, "-m", "reasoning_sft.report", str(sweep)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    text = (sweep / "report" / "report.md").read_text()
    assert "2 runs: 2 finished" in text and "trainer.learning_rate=0.003" in text


STEPS = ["trainer.max_steps=32", "trainer.save_steps=4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Losses of an uninterrupted two-rank run on one machine (no SLURM), started at once and waited for
    when first read: the requeued jobs below, on one node or two, must reproduce them."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = subprocess.Popen([sys.executable, "-m", "reasoning_sft.train", *ZERO3, *STEPS, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, env={**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def read() -> dict[int, float]:
        if proc.returncode is None:
            out, _ = proc.communicate(timeout=900)
            assert proc.returncode == 0, out[-3000:]
        return losses(run_dir)
    yield read
    stop(proc)


def test_the_job_is_told_the_first_nodes_address_when_its_name_does_not_resolve(slurm):
    """Node names on this cluster (n1, n2) resolve as no host, as on many sites: the rendezvous address
    is SLURM's NodeAddr; a node SLURM does not know is one line naming it."""
    from reasoning_sft.errors import ConfigError
    from reasoning_sft.training.launch import rendezvous_address
    os.environ["SLURM_CONF"] = slurm
    try:
        assert rendezvous_address("localhost") == "localhost"      # a name that resolves is kept
        assert rendezvous_address("n1") == "127.0.0.1"
        with pytest.raises(ConfigError, match="SLURM node 'n9': its name does not resolve"):
            rendezvous_address("n9")
    finally:
        del os.environ["SLURM_CONF"]


def test_a_two_node_job_trains_as_one_node_does_and_its_requeue_is_waited_for(slurm, reference, tmp_path):
    """`trainer.nnodes=2` as docs/cluster.md submits it: one SLURM job, a task on each of two nodes whose
    names do not resolve; SLURM requeues it mid-run (`scontrol requeue`), the sweep waits, the restarted
    job continues from its checkpoint; every step's loss is the one-node two-rank run's."""
    two_nodes = [o for o in ZERO3 if not o.startswith("trainer.nproc_per_node")] + \
        ["trainer.nproc_per_node=1", "trainer.nnodes=2"]
    sweep = tmp_path / "sweep"
    proc = submit(slurm, sweep, two_nodes + STEPS)
    run_dir = sweep / "0"
    wait_for(lambda: any((p / "complete.json").is_file() for p in (run_dir / "checkpoints").glob("checkpoint-*")),
             "a complete checkpoint", proc)
    (job,) = job_ids(slurm)
    subprocess.run(["scontrol", "requeue", job], env=env_for(slurm), check=True)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0 and "sweep: 1 of 1 jobs finished, 0 failed" in out, out[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train"]["world_size"] == 2 and summary["train"]["resumed_from"]
    ranks = [json.loads((run_dir / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["node"] for r in ranks] == ["n1", "n2"]             # each rank's report names its node
    err = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.err"))
    assert "SIGTERM: checkpoint saved at step" in err and "SLURM job requeued, it continues from there" in err
    ref, got = reference(), losses(run_dir)
    assert sorted(got) == list(range(1, 33))
    for step in range(1, 33):
        assert got[step] == pytest.approx(ref[step], abs=1e-5), step


def test_a_preempted_then_signalled_job_is_requeued_twice_the_sweep_waits_and_ends_on_the_uninterrupted_losses(
        slurm, reference, tmp_path):
    """SLURM's own preemption first (`scontrol requeue`: SIGTERM to every task, then SLURM requeues the
    job, as PreemptMode=REQUEUE does), then submitit's notice before the time limit to the restarted job
    (SIGUSR2, as `--signal=USR2@120`). Each time every rank checkpoints at the end of its step and the job
    ends without a result, so the submitting command keeps waiting; the restarted job continues from the
    checkpoint; the command exits 0 with the job finished, its losses after each resume an uninterrupted
    run's."""
    sweep = tmp_path / "sweep"
    proc = submit(slurm, sweep, ZERO3 + STEPS)
    run_dir = sweep / "0"

    def complete_past(step: int) -> bool:
        return any(int(p.name.split("-")[1]) > step and (p / "complete.json").is_file()
                   for p in (run_dir / "checkpoints").glob("checkpoint-*"))

    def preempted_at() -> int | None:
        summary = run_dir / "summary.json"
        if not summary.is_file():
            return None
        s = json.loads(summary.read_text())
        return s["train"]["steps"] if s["status"] == "preempted" else None

    wait_for(lambda: complete_past(0), "a complete checkpoint", proc)
    (job,) = job_ids(slurm)
    subprocess.run(["scontrol", "requeue", job], env=env_for(slurm), check=True)
    wait_for(lambda: preempted_at() is not None, "the preempted job's summary", proc)
    first = preempted_at()
    wait_for(lambda: complete_past(first), "a checkpoint of the restarted job", proc)
    assert proc.poll() is None, "the sweep returned while SLURM was restarting its job"
    subprocess.run(["scancel", "--signal=USR2", job], env=env_for(slurm), check=True)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    assert "sweep: 1 of 1 jobs finished, 0 failed" in out, out[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["train"]["steps"] == 32
    second = int(summary["train"]["resumed_from"].rsplit("-", 1)[1])
    assert 0 < first < second < 32, (first, second)
    err = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.err"))
    assert "SIGTERM: checkpoint saved at step" in err and "SIGUSR2: checkpoint saved at step" in err
    assert err.count("SLURM job requeued, it continues from there") >= 2 and "(restart 2)" in err
    ref, got = reference(), losses(run_dir)
    assert sorted(got) == list(range(1, 33))       # a loss for every step; resumed_from above: never started over
    for step in range(first + 1, 33):
        assert got[step] == pytest.approx(ref[step], abs=1e-5), step


def test_a_job_killed_outright_is_continued_by_the_same_command(slurm, tmp_path):
    args = ZERO3 + ["trainer.max_steps=400", "trainer.save_steps=2"]
    sweep = tmp_path / "sweep"
    proc = submit(slurm, sweep, args)
    run_dir = sweep / "0"
    wait_for(lambda: any((p / "complete.json").is_file() for p in (run_dir / "checkpoints").glob("checkpoint-*")),
             "a complete checkpoint", proc)
    (job,) = job_ids(slurm)
    subprocess.run(["scancel", "--signal=KILL", "--full", job], env=env_for(slurm), check=True)
    wait_gone(slurm, job)
    stop(proc)   # without slurmdbd submitit cannot learn a killed job's state: it would wait for ever
    if (run_dir / "summary.json").exists():   # a rank that outlived its peer by a moment records the failure
        assert json.loads((run_dir / "summary.json").read_text())["status"] != "finished"
    last = max(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*")
               if (p / "complete.json").is_file())
    again = submit(slurm, sweep, ZERO3 + ["trainer.max_steps=400", "trainer.save_steps=2"])
    wait_for(lambda: any(int(p.name.split("-")[1]) > last for p in (run_dir / "checkpoints").glob("checkpoint-*")
                         if (p / "complete.json").is_file()), "a checkpoint past the killed one", again)
    # The user's `scancel` (SIGTERM, no requeue to follow): the job checkpoints and ends `preempted`, and
    # the sweep command with it, naming the status, rather than waiting for a restart that never comes.
    (job,) = job_ids(slurm)
    subprocess.run(["scancel", job], env=env_for(slurm), check=True)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 1 and "sweep: 0 of 1 jobs finished, 1 failed" in out, out[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "preempted"
    err = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.err"))
    assert "SIGTERM: checkpoint saved at step" in err and "the same command continues from there" in err
    assert f"{run_dir} holds an unfinished run (" in err
    assert f"resuming from {run_dir}/checkpoints/checkpoint-{last} " in err


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory):
    """The ssh_config reaching this machine's sshd of the tests' own as `localhost` and `127.0.0.1`."""
    for config in started("ssh/hosts.sh", tmp_path_factory.mktemp("ssh"), "no sshd/pdsh here"):
        yield Path(config)


def test_the_hostfile_launcher_trains_across_two_ssh_hosts_as_one_node_does(ssh_hosts, reference, tmp_path):
    """docs/cluster.md's `trainer.hostfile` run: DeepSpeed's runner starts each rank through pdsh and ssh
    (the user's `-F ssh_config` in PDSH_SSH_ARGS_APPEND passes through), a rank per host; the losses are
    the one-node two-rank run's at every step, and no credential of this process reaches the hosts."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("localhost slots=1\n127.0.0.1 slots=1\n")
    two_hosts = [o for o in ZERO3 if not o.startswith("trainer.nproc_per_node")] + \
        ["trainer.nproc_per_node=1", "trainer.nnodes=2", f"trainer.hostfile={hostfile}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "PDSH_SSH_ARGS_APPEND": f"-F {ssh_hosts}",
           "WANDB_API_KEY": "secret-not-for-other-hosts"}
    run = subprocess.run([sys.executable, "-m", "reasoning_sft.train", *two_hosts, *STEPS, f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    out = run.stdout + run.stderr
    assert "localhost: " in out and "127.0.0.1: " in out            # pdsh prefixes each host's lines
    sessions = (ssh_hosts.parent / "sshd.log").read_text().count("Accepted publickey")
    assert sessions >= 4, sessions              # two host checks, then a DeepSpeed launch on each host over ssh
    assert "secret-not-for-other-hosts" not in (tmp_path / "run" / "deepspeed_env").read_text()
    ranks = [json.loads((tmp_path / "run" / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert not set(ranks[0]["samples_seen"]) & set(ranks[1]["samples_seen"])
    ref, got = reference(), losses(tmp_path / "run")
    assert sorted(got) == list(range(1, 33))
    for step in range(1, 33):
        assert got[step] == pytest.approx(ref[step], abs=1e-5), step


def test_hosts_that_cannot_be_reached_are_named_in_one_line_before_any_rank_or_run_dir(ssh_hosts, tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("nosuchhost.invalid slots=1\n127.0.0.2 slots=1\n")   # no such name; no sshd there
    env = {**os.environ, "PDSH_SSH_ARGS_APPEND": f"-F {ssh_hosts}"}
    started = time.time()
    run = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "trainer.nnodes=2", "deepspeed=zero3",
                          f"trainer.hostfile={hostfile}", "trainer.host_check_timeout_s=10", "logger=none",
                          f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0 and time.time() - started < 60
    lines = [line for line in run.stderr.splitlines() if "cannot reach over ssh" in line]
    assert len(lines) == 1 and "nosuchhost.invalid (" in lines[0] and "127.0.0.2 (" in lines[0], run.stderr[-2000:]
    assert not (tmp_path / "run").exists()


# docs/cluster.md's hostfile lines on one machine, typed as written (in a directory of their own)
DOCUMENTED_HOSTFILE_COMMANDS = ("printf 'localhost slots=1\\n127.0.0.1 slots=1\\n' > hostfile",
                                "python -m reasoning_sft.train trainer.nnodes=2 trainer.hostfile=hostfile deepspeed=zero3 "
                                "trainer.max_steps=3 logger=none")


def test_the_documented_hostfile_commands_run_as_written(ssh_hosts, tmp_path):
    doc = (ROOT / "docs" / "cluster.md").read_text()
    assert all(line in doc for line in DOCUMENTED_HOSTFILE_COMMANDS)
    env = {"HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PDSH_SSH_ARGS_APPEND": f"-F {ssh_hosts}"}
    typed = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                            f"source {ROOT}/.venv/bin/activate && cd {tmp_path} && " + " && ".join(DOCUMENTED_HOSTFILE_COMMANDS)],
                           env=env, capture_output=True, text=True, timeout=900)
    assert typed.returncode == 0, typed.stdout[-2000:] + typed.stderr[-3000:]
    (summary,) = (tmp_path / "outputs" / "train" / "runs").rglob("summary.json")
    summary = json.loads(summary.read_text())
    assert summary["status"] == "finished" and summary["train"]["world_size"] == 2 and summary["train"]["steps"] == 3
