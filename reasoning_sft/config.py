"""Config checks run before anything is built (run dirs: rundir.py; the command line: cli.py).

Parse, don't validate: each `validate_*` returns the run's groups typed (`RunGroups`, frozen, holding
schema.py's dataclasses), and the stage hands each wing only its own group. Every error names the config
key and what was expected, and every error of a config is collected and reported in one message
(torchtune's `config._validate`), before any run dir exists. `_target_` nodes are checked against the
signature of the function or class they name, and the ablation's transforms are built (each checks its
own parameters): a misspelt key fails here, not an hour in.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from reasoning_sft.errors import ConfigError
from reasoning_sft.registry import ARCHITECTURES
from reasoning_sft.schema import (DataConfig, DeepSpeedConfig, Errors, EvalConfig, LoggerConfig, ModelConfig, PeftConfig,
                                  ReportConfig, TrainerConfig, _check, raise_errors, typed)


@dataclass(frozen=True)
class RunGroups:
    """A run's config, parsed: each group typed (reasoning_sft/schema.py) for the wing that reads it;
    a stage without a group (evaluate has no trainer) leaves it None."""
    trainer: TrainerConfig | None = None
    data: DataConfig | None = None
    model: ModelConfig | None = None
    eval: EvalConfig | None = None
    peft: PeftConfig | None = None
    deepspeed: DeepSpeedConfig | None = None
    logger: LoggerConfig | None = None
    seed: int = 0
    experiment_name: str = "default"
    ablation: str = "none"                # the ablation group's name
    transforms: tuple = ()               # its transforms, built (each checked its parameters)


GROUP_SCHEMAS = {"trainer": TrainerConfig, "data": DataConfig, "model": ModelConfig, "eval": EvalConfig,
                 "peft": PeftConfig, "deepspeed": DeepSpeedConfig, "logger": LoggerConfig}


def parse_groups(cfg: DictConfig, errs: Errors | None = None) -> RunGroups:
    """Every typed group the config holds, as RunGroups; problems are appended to `errs` (or raised as
    one ConfigError when no list is given: a config read back from a run dir)."""
    own = errs is None
    errs = [] if own else errs
    groups = {key: typed(cfg[key], schema, key, errs) for key, schema in GROUP_SCHEMAS.items() if key in cfg}
    ablation = {"ablation": str(cfg.ablation.name), "transforms": tuple(_build_transforms(cfg, errs))} \
        if "ablation" in cfg else {}
    if own:
        raise_errors(errs)
    return RunGroups(**groups, **ablation, seed=int(cfg.get("seed", 0)),
                     experiment_name=str(cfg.get("experiment_name", "default")))


# Arguments the code passes itself when it instantiates a node (not set in YAML).
RUNTIME_KWARGS = {
    "reasoning_sft.training.models.build_tiny_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.training.models.load_pretrained_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.data.domains.keyword_domain": {"rec"},
}


def _is_none(node: Any) -> bool:
    """A typed list or dict key set to null is a container node holding None (schema.py's Optional fields)."""
    return isinstance(node, (DictConfig, ListConfig)) and node._is_none()


def check_targets(node: Any, errs: Errors, key: str = "") -> None:
    """Every `_target_` resolves and its keys match the target's signature."""
    if _is_none(node):
        return
    if isinstance(node, DictConfig):
        if "_target_" in node:
            target = node["_target_"]
            try:
                fn = import_target(target)
            except Exception as e:  # noqa: BLE001 - any import failure is a config error here
                errs.append(f"{key}._target_={target!r}: cannot be imported ({e})")
                return
            params = inspect.signature(fn).parameters
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            given = {k for k in node.keys() if not str(k).startswith("_")}
            if not accepts_any:
                unknown = given - set(params)
                for k in sorted(unknown):
                    errs.append(f"{key}.{k}: not a parameter of {target} "
                                f"(it takes {sorted(k for k in params if k != 'self')})")
            runtime = RUNTIME_KWARGS.get(target, set())
            required = {n for n, p in params.items() if p.default is p.empty
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - runtime - {"self"}
            for k in sorted(required - given):
                errs.append(f"{key}.{k}: required by {target} but not set")
        for k in node.keys():
            check_targets(node._get_node(k), errs, f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_targets(item, errs, f"{key}[{i}]")


def import_target(target: str) -> Any:
    """Import `a.b.c` as an attribute path; classes (e.g. peft.LoraConfig) included."""
    module, _, name = target.rpartition(".")
    mod = __import__(module, fromlist=[name])
    return getattr(mod, name)


def _check_rates(node: Any, errs: Errors, key: str = "") -> None:
    """Any `rate`, `*_rate`, `*_prob` or `*_ratio` anywhere is a share: it must lie in [0, 1]
    (a learning rate is no share: it is checked on its own). Checked where it is set, not where it
    is interpolated."""
    if _is_none(node):
        return
    if isinstance(node, DictConfig):
        for k in node.keys():
            v = node._get_node(k)
            sub = f"{key}.{k}" if key else str(k)
            if isinstance(k, str) and (k == "rate" or k.endswith(("_rate", "_prob", "_ratio"))) \
                    and k != "learning_rate" and not OmegaConf.is_interpolation(node, k) \
                    and not OmegaConf.is_missing(node, k) and not isinstance(v, (DictConfig, ListConfig)):
                val = node[k]
                if val is not None:
                    _check(errs, isinstance(val, (int, float)) and 0 <= val <= 1, sub, "a number in [0, 1]", val)
            _check_rates(v, errs, sub)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_rates(item, errs, f"{key}[{i}]")


def settle_generation_budget(cfg: DictConfig, trained_max_seq_len: int | None) -> None:
    """A derived value, set by the stage before the config is checked and frozen: `eval.max_new_tokens`,
    or when null the length the model was trained on (a model trained on 256-token traces is not given
    32k tokens to ramble in), else s1's 32,768."""
    if cfg.eval.max_new_tokens is not None:
        return
    budget = trained_max_seq_len or 32768
    cfg.eval.max_new_tokens = budget
    print(f"eval.max_new_tokens=null: {budget} new tokens per response "
          f"({'the trained max_seq_len' if trained_max_seq_len else 'no trained length known'})", file=sys.stderr)


def world_size(trainer) -> int:
    """Ranks of a run: `trainer.nproc_per_node x trainer.nnodes` (the trainer group, typed or not)."""
    return int(trainer.nproc_per_node) * int(trainer.nnodes)


def data_parallel_size(trainer) -> int:
    """Ranks that see different samples: the world divided by the sequence-parallel group (whose ranks
    share one sample, each a slice of its tokens)."""
    return world_size(trainer) // int(trainer.sequence_parallel_size)


def grad_accumulation(trainer) -> int:
    t = trainer
    per_step = t.micro_batch_size * data_parallel_size(t)
    if t.global_batch_size % per_step:
        sp = int(t.sequence_parallel_size)
        raise ConfigError(
            f"trainer.global_batch_size={t.global_batch_size}: expected a multiple of "
            f"trainer.micro_batch_size x nproc_per_node x nnodes" + (f" / sequence_parallel_size ({sp})" if sp > 1 else "")
            + f" = {per_step}")
    return t.global_batch_size // per_step


def validate_train_config(cfg: DictConfig) -> RunGroups:
    """Everything that can be known wrong before a tokenizer, dataset or model is built, in two rounds,
    each reporting every problem it finds at once: first the keys and values (missing ones, each typed
    group, the ablation's transforms, the settings that only make sense together), which import
    nothing heavy, so a typo is answered in about a second; then every `_target_` against the code it
    names (importing it: the model builders bring torch and transformers). Returns the groups, typed."""
    errs: Errors = []
    if not _missing(cfg, errs):
        raise_errors(errs)
    g = parse_groups(cfg, errs)   # every key, its type, range and plugin names (reasoning_sft/schema.py)
    _values_problems(cfg, errs)
    if "report" in cfg:   # a sweep file's block for the report stage
        typed(cfg.report, ReportConfig, "report", errs)
    if None not in (g.trainer, g.data, g.model, g.eval, g.deepspeed):
        _training_problems(g, errs)
    raise_errors(errs)
    _code_problems(cfg, errs)
    raise_errors(errs)
    return g


def _training_problems(g: RunGroups, errs: Errors) -> None:
    """The settings that only make sense together."""
    t = g.trainer
    if t.packing:
        _check(errs, t.pack_length is None or t.pack_length >= g.data.max_seq_len, "trainer.pack_length",
               f"null or an integer >= data.max_seq_len={g.data.max_seq_len}", t.pack_length)
    sp = t.sequence_parallel_size
    _check(errs, world_size(t) % sp == 0, "trainer.sequence_parallel_size",
           f"an integer >= 1 dividing nproc_per_node x nnodes = {world_size(t)}", sp)
    if sp > 1:
        _check(errs, g.deepspeed.config is not None, "trainer.sequence_parallel_size",
               "1 without DeepSpeed: Ulysses sequence parallelism runs on DeepSpeed (deepspeed=zero3)", sp)
        attention = g.model.network.get("attn_implementation", "sdpa")   # the model's own default
        _check(errs, not t.packing or str(attention).startswith("flash_attention"), "trainer.packing",
               f"false with trainer.sequence_parallel_size > 1 and {attention} attention: Ulysses runs SDPA "
               "causal over the whole row, across packed samples (flash_attention_2 keeps their boundaries)",
               t.packing)
    if g.eval.after_train and g.eval.backend != "hf":
        errs.append(f"eval.backend={g.eval.backend!r}: after training the trainer still holds the GPUs; "
                    "evaluate the saved model with python -m reasoning_sft.evaluate model_path=<run dir>/"
                    "final_model eval.backend=vllm")
    try:
        grad_accumulation(t)
    except ConfigError as e:
        errs.append(str(e))


def validate_prepare_config(cfg: DictConfig) -> RunGroups:
    """The data and ablation part of the checks (the `prepare` and `curate` stages have no trainer)."""
    errs: Errors = []
    g = prepare_problems(cfg, errs)
    raise_errors(errs)
    return g


def validate_eval_config(cfg: DictConfig) -> RunGroups:
    """The `evaluate` stage's checks: missing values, the model, data, eval and logger groups, typed."""
    errs: Errors = []
    g = parse_groups(cfg, errs) if _missing(cfg, errs) else RunGroups()
    raise_errors(errs)   # values first: answered before the model's code is imported
    check_targets(cfg.model, errs, "model")
    _check_architecture(cfg.model, errs)
    raise_errors(errs)
    return g


def _missing(cfg: DictConfig, errs: Errors) -> bool:
    missing = sorted(OmegaConf.missing_keys(cfg))
    for key in missing:
        errs.append(f"{key}: a required value is missing (set it on the command line, e.g. {key}=...)")
    return not missing


def prepare_problems(cfg: DictConfig, errs: Errors) -> RunGroups | None:
    """Appends the data / model / ablation problems, values first, then (when those are right) the code
    they name; the typed groups, or None when values are missing (nothing else can be read)."""
    if not _missing(cfg, errs):
        return None
    g = parse_groups(cfg, errs)
    _values_problems(cfg, errs)
    if not errs:
        _code_problems(cfg, errs)
    return g


def _values_problems(cfg: DictConfig, errs: Errors) -> None:
    """Shares anywhere in the config (the typed groups and the ablation's transforms, which check their
    own parameters, are parse_groups'): nothing heavy imported."""
    _check_rates(cfg, errs)


def _code_problems(cfg: DictConfig, errs: Errors) -> None:
    """Every `_target_` against the signature of the code it names (imported here), and the names those
    plugins take (a tiny model's architecture: registry.ARCHITECTURES, filled by the code just imported)."""
    check_targets(cfg, errs)
    if "model" in cfg:
        _check_architecture(cfg.model, errs)


def _check_architecture(model: DictConfig, errs: Errors) -> None:
    network = model.get("network")
    if isinstance(network, DictConfig) and "architecture" in network:
        ARCHITECTURES.check(errs, "model.network.architecture", network.architecture)


def _build_transforms(cfg: DictConfig, errs: Errors) -> list:
    """Each transform of the ablation built here: its class checks its own parameters
    (reasoning_sft/data/ablations/); the built ones are the run's (RunGroups.transforms)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    built = []
    for i, node in enumerate(cfg.ablation.transforms):
        try:
            import_target(node._target_)
        except Exception as e:  # noqa: BLE001 - the same message check_targets gives
            errs.append(f"ablation.transforms[{i}]._target_={node._target_!r}: cannot be imported ({e})")
            continue
        try:
            built.append(instantiate(node))
        except InstantiationException as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            found = str(cause).splitlines() if isinstance(cause, ConfigError) else [f"ablation.transforms[{i}]: {cause}"]
            errs.extend(m for m in found if m not in errs)
    return built


# Keys a resumed run may change: where and how it checkpoints, logs and reports, not what it trains.
RESUME_MAY_CHANGE = {"trainer.resume", "trainer.save_steps", "trainer.save_total_limit", "trainer.progress_bar",
                     "trainer.logging_steps", "trainer.dataloader_num_workers", "trainer.master_port",
                     "trainer.hostfile", "trainer.ssh_port", "trainer.host_check_timeout_s", "trainer.launcher",
                     "trainer.verify_save", "trainer.gpu_memory_gb", "trainer.host_memory_gb", "trainer.push_to_hub",
                     "trainer.hub_model_id", "trainer.hub_private", "trainer.resume_trust"}
TRAINING_GROUPS = ("model", "data", "ablation", "trainer", "deepspeed", "peft", "seed")


def _flatten(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def training_differences(saved: DictConfig, current: DictConfig) -> list[str]:
    """Keys whose values differ between the run's saved config and this one, where the difference
    changes training (so the resumed run would not be the same run)."""
    def keyed(cfg):
        container = OmegaConf.to_container(cfg, resolve=True)
        return {k: v for k, v in _flatten({g: container.get(g) for g in TRAINING_GROUPS}).items()
                if k not in RESUME_MAY_CHANGE}
    a, b = keyed(saved), keyed(current)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_hardware(trainer: TrainerConfig) -> None:
    """What this machine cannot run (kept apart so paper configs validate on a CPU machine)."""
    import torch
    if trainer.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.precision={trainer.precision!r}: needs a GPU; "
                          "this machine has none (use trainer.precision=auto or fp32)")
    if trainer.liger_kernel:
        import importlib.util
        if importlib.util.find_spec("liger_kernel") is None or not torch.cuda.is_available():
            raise ConfigError("trainer.liger_kernel=true: needs a GPU and `pip install liger-kernel`")


def training_dtype(precision: str, deepspeed: bool) -> tuple[str, Any]:
    """(precision, dtype to load weights in) for `trainer.precision`. Without DeepSpeed weights stay fp32
    and autocast does bf16 (mixed precision); under DeepSpeed they load in bf16 and DeepSpeed keeps fp32
    master copies."""
    import torch
    p = precision
    if p == "auto":
        p = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if p == "fp32":
        return p, torch.float32
    half = torch.bfloat16 if p == "bf16" else torch.float16
    return p, half if deepspeed else torch.float32
