"""Every config composes and validates; the paper experiments carry their published settings;
bad configs fail before anything is built, naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONF, ROOT
from reasoning_sft.config import grad_accumulation, validate_train_config
from reasoning_sft.errors import ConfigError

GROUPS = ["model", "data", "ablation", "trainer", "deepspeed", "peft", "logger", "eval", "paths"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
# data.source.path is ??? on purpose: the user's own file
NEEDS_A_PATH = {("data", "skyt1_ablation_base"), ("data", "long1k"), ("data", "jsonl")}


def test_the_tree_has_what_the_pipeline_needs():
    names = {(g, o) for g, o in OPTIONS}
    for needed in [("deepspeed", "zero3"), ("deepspeed", "zero3_offload"), ("deepspeed", "zero2"),
                   ("deepspeed", "none"), ("peft", "lora"), ("peft", "none"), ("logger", "wandb"),
                   ("logger", "none"), ("ablation", "none"), ("model", "tiny"), ("model", "tiny_m"),
                   ("model", "tiny_l"), ("model", "tiny_llama"), ("model", "qwen2.5_32b")]:
        assert needed in names
    assert {"demo", "s1k_qwen32b", "skyt1_qwen32b", "skyt1_qwen32b_lora", "long1k_qwen32b"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_validates(make_cfg, group, option):
    cfg = make_cfg([f"{group}={option}"])
    OmegaConf.to_container(cfg, resolve=True)   # every interpolation resolves
    if (group, option) in NEEDS_A_PATH:
        with pytest.raises(ConfigError, match=r"data\.source\.path: a required value is missing"):
            validate_train_config(cfg)
        cfg = make_cfg([f"{group}={option}", "data.source.path=/data/long1k.jsonl"])
    if (group, option) == ("ablation", "reflection_rewrite"):   # the rewrite's chat model: no default endpoint
        with pytest.raises(ConfigError, match=r"ablation\.llm\.base_url: a required value is missing"):
            validate_train_config(cfg)
        cfg = make_cfg([f"{group}={option}", "ablation.llm.base_url=http://127.0.0.1:9/v1"])
    validate_train_config(cfg)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(make_cfg, name):
    overrides = [f"experiment={name}"]
    if name.startswith("long1k"):
        overrides.append("data.source.path=/data/long1k.jsonl")
    cfg = make_cfg(overrides)
    validate_train_config(cfg)
    assert cfg.experiment_name == name


def test_s1_experiment_has_the_published_setup(make_cfg):
    cfg = make_cfg(["experiment=s1k_qwen32b"])
    t = cfg.trainer
    assert cfg.model.name_or_path == "Qwen/Qwen2.5-32B-Instruct"
    assert (t.learning_rate, t.lr_scheduler, t.warmup_ratio, t.weight_decay) == (1e-5, "cosine", 0.05, 1e-4)
    assert (t.adam_beta1, t.adam_beta2, t.num_epochs, t.global_batch_size) == (0.9, 0.95, 5, 16)
    assert cfg.data.max_seq_len == 32768 and t.precision == "bf16" and cfg.data.format.thinking_style == "s1"
    assert cfg.deepspeed.config.zero_optimization.stage == 3
    assert grad_accumulation(cfg.trainer) == 1          # 16 GPUs x micro batch 1


def test_skyt1_experiments_have_the_published_setup(make_cfg):
    full = make_cfg(["experiment=skyt1_qwen32b"])
    t = full.trainer
    assert (t.learning_rate, t.num_epochs, t.warmup_ratio, t.global_batch_size) == (1e-5, 3, 0.1, 96)
    assert full.data.max_seq_len == 16384 and not full.peft.enabled
    assert full.deepspeed.config.zero_optimization.offload_optimizer.device == "cpu"
    assert grad_accumulation(full.trainer) == 12        # 8 GPUs x micro 1 x 12 = 96
    lora = make_cfg(["experiment=skyt1_qwen32b_lora"])
    assert lora.peft.enabled and lora.trainer.learning_rate == 1e-4
    assert (lora.peft.config.r, lora.peft.config.lora_alpha, lora.peft.config.target_modules) == (64, 128, "all-linear")
    assert lora.trainer.num_epochs == 3 and lora.data.max_seq_len == 16384   # the rest inherited


def test_long1k_experiment(make_cfg):
    cfg = make_cfg(["experiment=long1k_qwen32b", "data.source.path=/x.jsonl"])
    assert cfg.data.name == "long1k" and cfg.trainer.learning_rate == 1e-5 and cfg.trainer.num_epochs == 5
    assert cfg.deepspeed.config.zero_optimization.offload_param.device == "cpu"


def test_unknown_group_option_names_the_group(make_cfg):
    with pytest.raises(ConfigCompositionException, match=r"model.*qwen9"):
        make_cfg(["model=qwen9"])


@pytest.mark.parametrize("override,key", [
    ("trainer.learning_rate=-1e-5", "trainer.learning_rate"),
    ("trainer.warmup_ratio=1.5", "trainer.warmup_ratio"),
    ("data.source.reflection_prob=-0.1", "data.source.reflection_prob"),
    ("trainer.global_batch_size=10", "trainer.global_batch_size"),   # not a multiple of micro x world (4)
    ("data.max_seq_len=4", "data.max_seq_len"),
    ("data.overflow=keep", "data.overflow"),
    ("data.format.thinking_style=o1", "data.format.thinking_style"),
    ("+model.network.hidden_sizee=64", "model.network.hidden_sizee"),
    ("data.source._target_=reasoning_sft.data.nowhere.load", "data.source._target_"),
    # every group is typed (issue 26): its problems are found before anything is built
    ("logger.mode=sometimes", "logger.mode"),
    ("peft.enabled=true", "peft.config"),
    ("deepspeed=zero3 deepspeed.config.zero_optimization.stage=5", "deepspeed.config.zero_optimization.stage"),
    ("~model.network._target_", "model.network"),
    ("+report.figure=histogram", "report.figure"),
    ("eval.budget_forcing.max_answer_tokens=0", "eval.budget_forcing.max_answer_tokens"),
    ("eval.code.workers=0", "eval.code.workers"),
    ("ablation=combine ablation.k=0", "ablation.k"),
])
def test_bad_values_are_rejected_naming_the_key(make_cfg, override, key):
    cfg = make_cfg(["trainer.micro_batch_size=4", *override.split()])
    with pytest.raises(ConfigError) as err:
        validate_train_config(cfg)
    assert str(err.value).startswith(key), str(err.value)


def test_tiny_model_sizes(make_cfg, tiny_tokenizer):
    from hydra.utils import instantiate
    from reasoning_sft.training.models import count_parameters
    sizes = {}
    for name in ["tiny", "tiny_m", "tiny_l", "tiny_llama"]:
        cfg = make_cfg([f"model={name}"])
        tok = instantiate(cfg.model.tokenizer)
        model = instantiate(cfg.model.network, tokenizer=tok)
        sizes[name] = count_parameters(model)
        assert model.config.vocab_size >= len(tok)
    assert 0.5e6 < sizes["tiny"] < 1.5e6 and 3e6 < sizes["tiny_m"] < 8e6 and 15e6 < sizes["tiny_l"] < 30e6
    assert 0.5e6 < sizes["tiny_llama"] < 1.5e6


def test_cli_rejects_a_bad_value_before_building_anything(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.train", "trainer.learning_rate=-1", "logger=none",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config error: trainer.learning_rate=-1" in proc.stderr
    assert not (tmp_path / "run").exists()     # failed before the run wrote anything: no run dir is left


def test_a_refused_command_leaves_an_existing_run_untouched(tmp_path):
    """A bad config in the dir of a finished run fails up front: that run's summary.json stays as it was."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"status": "finished"}')
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_sft.train", "trainer.learning_rate=-1", "logger=none",
         f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "config error" in proc.stderr
    assert (run / "summary.json").read_text() == '{"status": "finished"}'


@pytest.mark.parametrize("stage", ["train", "prepare", "evaluate"])
def test_every_stage_config_composes_and_resolves(make_cfg, stage):
    cfg = make_cfg([], config_name=stage)
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.task_name == stage and cfg.paths.output_dir


@pytest.mark.parametrize("override,message", [
    ("trainer.max_steps=abc", "Value 'abc' of type 'str' could not be converted to Integer"),
    ("trainer.weight_decay=abc", "Value 'abc' of type 'str' could not be converted to Float"),
    ("trainer.packing=maybe", "Value 'maybe' is not a valid bool"),
    ("trainer.learnig_rate=1e-5", "Key 'learnig_rate' not in 'TrainerConfig'"),
])
def test_trainer_types_and_keys_are_refused_while_composing(make_cfg, override, message):
    """The typed schema (reasoning_sft/schema.py): Hydra itself refuses a mistyped value or an unknown
    key while composing, naming the key."""
    from hydra.errors import ConfigCompositionException
    with pytest.raises(ConfigCompositionException) as e:
        make_cfg([override])
    text = f"{e.value} {e.value.__cause__}"
    assert message in text and f"full_key: {override.split('=')[0]}" in text


@pytest.mark.parametrize("override,message", [
    ("+trainer.learnig_rate=1e-5", "trainer.learnig_rate: not a key of trainer (reasoning_sft/schema.py: "
                                   "TrainerConfig); did you mean trainer.learning_rate?"),   # `+` gets past Hydra
    ("trainer.learning_rate=-1", "trainer.learning_rate=-1.0: expected a positive number"),
    ("trainer.adam_beta2=1", "trainer.adam_beta2=1.0: expected a number in [0, 1)"),
    ("trainer.precision=fp8", "trainer.precision='fp8': expected one of ('auto', 'bf16', 'fp16', 'fp32')"),
    ("data.overflow=cut", "data.overflow='cut': expected 'drop' or 'truncate'"),
    ("eval.top_p=0", "eval.top_p=0.0: expected a number in (0, 1]"),
    ("trainer.learning_rate=2", None),                     # a learning rate is no share of 1
    ("trainer.progress_bar=false", None),
])
def test_trainer_keys_and_ranges_are_checked_before_anything_is_built(make_cfg, override, message):
    from reasoning_sft.config import validate_train_config
    cfg = make_cfg([override])
    if message is None:
        validate_train_config(cfg)
        return
    with pytest.raises(ConfigError) as e:
        validate_train_config(cfg)
    assert str(e.value) == message


def test_a_run_dirs_untyped_config_gets_the_schemas_checks(make_cfg):
    """A worker reads config.yaml back untyped: the schema converts and checks it the same way."""
    from reasoning_sft.config import validate_train_config
    cfg = OmegaConf.create(OmegaConf.to_yaml(make_cfg([]), resolve=True))
    validate_train_config(cfg)
    cfg.trainer.max_steps = "abc"
    with pytest.raises(ConfigError, match=r"trainer.max_steps: Value 'abc' of type 'str' could not be converted to Integer"):
        validate_train_config(cfg)


def test_every_problem_of_a_command_is_reported_at_once_and_nothing_is_written(tmp_path):
    """Problems in four groups: one message naming each key, exit 2, no traceback, no run dir."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "trainer.learning_rate=-1", "logger.mode=x",
                           "data.overflow=keep", "ablation=digit_corruption", "ablation.scope=all",
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "config error: 4 problems in the config:", proc.stderr
    assert {line.split("=")[0].strip() for line in lines[1:]} == {"trainer.learning_rate", "logger.mode",
                                                                  "data.overflow", "ablation.scope"}
    assert not run_dir.exists()


def test_a_config_mistake_is_answered_before_torch_or_transformers_load():
    """Issue 30: a typo refused in about a second: the checks of keys and values import no heavy library
    (checked by what the interpreter imported, not by a clock that depends on the machine)."""
    for stage, bad in (("train", "+trainer.learnig_rate=1e-5"), ("evaluate", "eval.temperature=-1"),
                       ("prepare", "data.overflow=keep")):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", f"reasoning_sft.{stage}", bad], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "config error:" in proc.stderr, proc.stderr[-2000:]
        imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert not imported & {"torch", "transformers", "deepspeed", "lm_eval", "peft"}, (stage, imported & {"torch"})


@pytest.mark.parametrize("override,kind,known", [
    ("eval.prompt=mine", "evaluation prompt", "trained, s1, skyt1, qwen_math, deepseek_qwen, skyt1_paper"),
    ("eval.grading.profile=lenient", "grading profile", "strict, skythought, s1, long1k, qwen_math"),
    ("eval.backend=tgi", "generation backend", "hf, vllm"),
    ("trainer.launcher=mpirun", "launcher", "auto, deepspeed, torchrun, slurm"),
    ("data.format.thinking_style=o1", "thinking style", "s1, r1, skyt1"),
    ("model.network.architecture=gpt9", "tiny-model architecture", "qwen2, llama"),
])
def test_every_plugin_name_is_checked_against_its_registry_in_one_line(make_cfg, override, kind, known):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as err:
        validate_train_config(make_cfg([override]))
    assert str(err.value) == f"{key}={value!r}: not a known {kind} (known: {known})"


def test_an_unknown_architecture_is_one_line_before_any_run_dir(tmp_path):
    """Issue 35: it was a ValueError from the model builder after the run dir existed."""
    proc = subprocess.run([sys.executable, "-m", "reasoning_sft.train", "model.network.architecture=gpt9",
                           f"hydra.run.dir={tmp_path}/run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == ("config error: model.network.architecture='gpt9': not a known "
                                                    "tiny-model architecture (known: qwen2, llama)")
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
