"""Every sweep file composes, and every job of its grid composes and validates."""

from __future__ import annotations

import itertools
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
import yaml
from omegaconf import OmegaConf, open_dict

from conftest import CONF, ROOT
from reasoning_sft.config import validate_eval_config, validate_train_config

SWEEPS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))
# sweeps of the evaluate stage (their defaults start from `evaluate`): a saved model's evaluation, no training
EVALUATE_SWEEPS = [s for s in SWEEPS if "  - evaluate\n" in (ROOT / "sweeps" / f"{s}.yaml").read_text().split("_self_")[0]]


def _header_overrides(name: str) -> list[str]:
    """The overrides of the command a sweep file is headed by (line 2), so the test runs it as written."""
    line = (ROOT / "sweeps" / f"{name}.yaml").read_text().splitlines()[1]
    words = line.split(f"--config-name {name}", 1)[1].split()
    return [w for w in words[:next((i for i, w in enumerate(words) if w.startswith(("(", "#"))), len(words))]]


EXTRA = {name: _header_overrides(name) for name in SWEEPS}


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    # As `--config-dir sweeps` does on the command line: sweeps first, conf/ behind it.
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):
        return compose(config_name=name, overrides=[f"hydra.searchpath=[file://{CONF}]"] + overrides,
                       return_hydra_config=True)


def _jobs(cfg) -> list[list[str]]:
    """The grid as Hydra's sweeper expands it (its own override parser: list values stay whole)."""
    params = cfg.hydra.sweeper.params
    parse = OverridesParser.create().parse_overrides
    grids = [[f"{k}={v}" for v in parse([f"{k}={params[k]}"])[0].sweep_string_iterator()] for k in params]
    return [list(job) for job in itertools.product(*grids)]


@pytest.mark.parametrize("name", SWEEPS)
def test_sweep_grid_jobs_compose_and_validate(name, tmp_path):
    text = (ROOT / "sweeps" / f"{name}.yaml").read_text()
    assert f"--config-name {name}" in text.splitlines()[1]        # headed by its exact command
    cfg = _compose(name, EXTRA.get(name, []))
    jobs = _jobs(cfg)
    assert len(jobs) >= 2
    for job in jobs:
        job_cfg = _compose(name, EXTRA.get(name, []) + job)
        assert job_cfg.experiment_name == name
        with open_dict(job_cfg):
            job_cfg.paths.root_dir = str(ROOT)
            job_cfg.paths.output_dir = str(tmp_path)
            del job_cfg["hydra"]
        # a sweep of the evaluate stage (its defaults start from `evaluate`) validates as that stage
        (validate_eval_config if "- evaluate" in text.split("_self_")[0] else validate_train_config)(job_cfg)
        key, value = job[0].split("=", 1)
        if "." in key:   # the job got its grid value
            assert OmegaConf.select(OmegaConf.create(OmegaConf.to_container(job_cfg, resolve=True)), key) \
                == yaml.safe_load(value)


def test_paper_grids_are_the_papers():
    grid = lambda n: _jobs(_compose(n, EXTRA.get(n, [])))
    # Each ablation grid carries its own unablated baseline (rate 0) for the report's bars.
    assert [j[0] for j in grid("ablation_digit_corruption")] == [f"ablation.rate={r}" for r in ("0.0", "0.2", "0.5", "0.7", "1.0")]
    assert [j[0] for j in grid("ablation_keyword_removal")] == [f"ablation.rate={r}" for r in ("0.0", "0.2", "0.5", "1.0")]
    assert [j[0] for j in grid("ablation_reflection_rewrite")] == [f"ablation.rate={r}" for r in ("0.0", "0.2", "0.5", "1.0")]
    assert [j[0] for j in grid("skyt1_data_size")] == [f"data.num_samples={n}" for n in (200, 1000, 3000, 5000, 15000)]
    assert [j[0] for j in grid("skyt1_students")] == [f"model={m}" for m in
                                                      ("llama3.1_8b", "gemma2_27b", "qwen2.5_math_7b", "qwen2.5_32b")]
    for op in ("shuffle", "delete", "insert"):
        assert [j[0] for j in grid(f"ablation_step_{op}")] == [f"ablation.rate={r}" for r in ("0.0", "0.33", "0.67", "1.0")]
    assert [j[0] for j in grid("sample_count")] == [f"data.num_samples={n}" for n in (100, 250, 500, 1000)]
    assert [j[0] for j in grid("trace_length")][-1] == "data.length_buckets=[[6000,12000]]"
    assert [j[0] for j in grid("model_size")] == [f"model=qwen2.5_{s}" for s in ("0.5b", "1.5b", "7b", "14b", "32b")]
    assert [j[0] for j in grid("lora_vs_full")] == ["experiment=skyt1_qwen32b", "experiment=skyt1_qwen32b_lora"]
    assert len(grid("long1k_lengths")) == 6


def _cpu_train_commands() -> list[list[str]]:
    """The `python -m reasoning_sft.train` commands of docs/reproduce.md's CPU versions and of the
    sweep files' `# CPU:` lines, as argv."""
    import re
    import shlex
    text = (ROOT / "docs" / "reproduce.md").read_text()
    commands = []
    for block in re.findall(r"^CPU version.*?```bash\n(.*?)```", text, flags=re.S | re.M):
        for cmd in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(cmd.split("#")[0])
            if argv[:3] == ["python", "-m", "reasoning_sft.train"]:
                commands.append(argv[3:])
    for sweep in sorted((ROOT / "sweeps").glob("*.yaml")):   # and each study's own "# CPU:" line
        for line in sweep.read_text().splitlines():
            if line.startswith("# CPU: python -m reasoning_sft.train"):
                commands.append(shlex.split(line[len("# CPU: python -m reasoning_sft.train"):]))
    return commands


@pytest.mark.parametrize("argv", _cpu_train_commands(), ids=lambda a: " ".join(a)[:60])
def test_reproduce_cpu_commands_compose_and_validate(argv, tmp_path):
    """Every job of every CPU command in docs/reproduce.md composes and validates as written."""
    overrides = [a for a in argv if a != "-m"]
    name = overrides[overrides.index("--config-name") + 1] if "--config-name" in overrides else None
    overrides = [a for a in overrides if a not in ("--config-dir", "sweeps", "--config-name", name)]
    # Command-line sweeps (a=1,2) expand too, and replace the file's grid for their key.
    parse = OverridesParser.create().parse_overrides
    fixed = [o for o in overrides if not parse([o])[0].is_sweep_override()]
    jobs = _jobs(_compose(name, fixed)) if name else [[]]
    swept = [[f"{o.split('=')[0]}={v}" for v in parse([o])[0].sweep_string_iterator()]
             for o in overrides if o not in fixed]
    for job in jobs:
        for extra in itertools.product(*swept) if swept else [()]:
            job_overrides = fixed + list(job) + list(extra)
            if name:
                job_cfg = _compose(name, job_overrides)
                with open_dict(job_cfg):
                    job_cfg.paths.root_dir = str(ROOT)
                    job_cfg.paths.output_dir = str(tmp_path)
                    del job_cfg["hydra"]
            else:
                from conftest import compose_config
                job_cfg = compose_config(job_overrides, "train", tmp_path)
            validate_train_config(job_cfg)


@pytest.mark.parametrize("name", [s for s in SWEEPS if not s.startswith("tiny_") and s not in EVALUATE_SWEEPS])
def test_every_study_job_ends_with_its_evaluation(name):
    """On the cluster a job evaluates the paper's benchmarks after training; scale=cpu swaps in the
    synthetic held-out task (a config that would generate 32k tokens per AIME problem on a CPU is
    the mistake this catches)."""
    cfg = _compose(name, EXTRA.get(name, []))
    assert cfg.eval.after_train and {"math500", "openaimath"} & set(cfg.eval.tasks)   # openaimath: s1's MATH500
    cpu = _compose(name, EXTRA.get(name, []) + ["scale=cpu"])
    assert cpu.eval.after_train and list(cpu.eval.tasks) == ["synthetic"] and cpu.eval.max_new_tokens <= 256
    assert cpu.model.name == "tiny" and cpu.deepspeed.config is None and cpu.trainer.nproc_per_node == 1


def _study_cpu_line(name: str) -> list[str]:
    for line in (ROOT / "sweeps" / f"{name}.yaml").read_text().splitlines():
        if line.startswith("# CPU: python -m reasoning_sft.train"):
            return [a for a in shlex.split(line[len("# CPU: python -m reasoning_sft.train"):])
                    if a not in ("-m", "--config-dir", "sweeps", "--config-name", name)]
    return []


@pytest.mark.parametrize("name", [s for s in SWEEPS if not s.startswith("tiny_") and s not in EVALUATE_SWEEPS])
def test_every_study_has_a_cpu_version_on_the_demos_task(name):
    """A study's `# CPU:` line trains and evaluates on one task the tiny model learns in minutes (the
    demo's sums, one epoch), keeping the study's own treatment: what it varies differs across its jobs
    and stays the study's (scale=cpu_study does not clobber the ablation, LoRA or model of a job)."""
    line = _study_cpu_line(name)
    if not line:   # the two studies with their own CPU files (make demo-sweep, make demo-ablation), and
        # the LLM rewrite, which needs a chat model (its offline approximation: ablation_keyword_removal's line)
        assert name in ("sample_count", "ablation_digit_corruption", "ablation_reflection_rewrite")
        return
    parse = OverridesParser.create().parse_overrides
    fixed = [o for o in line if not parse([o])[0].is_sweep_override()]
    swept = [[f"{o.split('=')[0]}={v}" for v in parse([o])[0].sweep_string_iterator()] for o in line if o not in fixed]
    paper = _compose(name, EXTRA.get(name, []))
    jobs = [list(j) for j in itertools.product(*swept)] if swept else _jobs(paper)
    seen = set()
    for job in jobs:
        cfg = _compose(name, fixed + job)
        assert cfg.data.name == "synthetic" and list(cfg.eval.tasks) == ["synthetic"] and cfg.eval.after_train
        assert cfg.trainer.num_epochs <= 2 and cfg.trainer.nproc_per_node == 1 and cfg.deepspeed.config is None
        assert cfg.model.name.startswith("tiny") and cfg.ablation.name == paper.ablation.name
        assert cfg.eval.prompt == "trained" and cfg.report == paper.report
        seen.add(str(OmegaConf.select(cfg, paper.report.x)))
    assert len(seen) == len(jobs) > 1
    if name == "lora_vs_full":   # the LoRA arm stays LoRA
        assert [_compose(name, fixed + job).peft.enabled for job in jobs] == [False, True]


def _accuracy_by(sweep, key: str) -> dict:
    import csv
    rows = list(csv.DictReader(open(sweep / "report" / "report.csv")))
    assert rows and all(r["status"] == "finished" for r in rows)
    return {float(r[key]): (float(r["synthetic/accuracy"]), float(r["synthetic/ci95_low"]),
                            float(r["synthetic/ci95_high"])) for r in rows}


@pytest.mark.learning
# two CPU studies, 3 trainings (4 arms: one is reused): minutes on an idle machine, but CI runs them on one
# core beside the demo and make test (a 2,400 s limit on make demo-sweep alone was hit there)
@pytest.mark.timeout(7200)
def test_make_demo_sweep_and_demo_ablation_show_their_effect():
    """The two CPU studies run as written (make targets) and show an effect you can see: accuracy
    grows with the training samples, and falls when the traces' numbers are corrupted. The ablation's
    rate-0 arm trains what the sample sweep's 22,000 arm trained: it is reused (trainer.reuse_trained),
    and evaluating the reused model gives the trained run's figures."""
    import json
    import subprocess
    sweeps = {}
    for target, study in (("demo-sweep", "tiny_sample_count"), ("demo-ablation", "tiny_digit_corruption")):
        proc = subprocess.run(["make", target], cwd=ROOT, capture_output=True, text=True, timeout=5400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        sweeps[target] = ROOT / "outputs" / "train" / "multiruns" / study / f"make-{target}"
        report = json.loads((sweeps[target] / "report" / "summary.json").read_text())
        assert not report["warnings"] and report["failed"] == 0
    # Intervals apart. How far apart depends on the CPU: the 22,000-sample arm (= rate 0) measured 55.0%,
    # 80.5% and 7.0% on three kinds of machine (benchmarks/README.md, "The demo").
    by_samples = _accuracy_by(sweeps["demo-sweep"], "examples")
    assert by_samples[22000][1] > by_samples[2000][2]
    by_rate = _accuracy_by(sweeps["demo-ablation"], "ablation_rate")
    assert by_rate[0.0][1] > by_rate[1.0][2]
    trained = {OmegaConf.load(job / "config.yaml").data.num_samples: job
               for job in sweeps["demo-sweep"].iterdir() if job.name.isdigit()}
    reused = [json.loads((job / "summary.json").read_text()) for job in sweeps["demo-ablation"].iterdir()
              if job.name.isdigit()]
    reused = {s["train"].get("reused_from"): s for s in reused}
    assert set(reused) == {None, str(trained[22000].resolve())}, set(reused)   # the rate-1.0 arm trained
    assert reused[str(trained[22000].resolve())]["eval"]["synthetic"]["accuracy"] == by_samples[22000][0]
    figure = sweeps["demo-ablation"] / "report" / "ablation.png"
    assert figure.stat().st_size > 5000
    assert "![ablation](ablation.png)" in (figure.parent / "report.md").read_text()


@pytest.mark.parametrize("name", SWEEPS)
def test_every_sweep_declares_what_it_studies(name):
    """`report: {figure, x, baseline}`: a known figure, and x a key whose value differs across the grid's jobs."""
    from reasoning_sft.registry import REPORT_FIGURES as FIGURES
    cfg = _compose(name, EXTRA.get(name, []))
    assert cfg.report.figure in FIGURES
    values = []
    for job in _jobs(cfg):
        value = OmegaConf.select(_compose(name, EXTRA.get(name, []) + job), cfg.report.x)
        values.append(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
    assert len({str(v) for v in values}) == len(values) > 1, (cfg.report.x, values)
    if cfg.report.get("baseline") is not None:
        assert str(cfg.report.baseline) in {str(v) for v in values}
