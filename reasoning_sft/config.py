"""Config checks run before anything is built (run dirs: rundir.py; the command line: cli.py).

Every error names the config key and what was expected, and every error of a config is collected and
reported in one message (torchtune's `config._validate`), before any run dir exists. `_target_` nodes
are checked against the signature of the function or class they name, and the ablation's transforms are
built (each checks its own parameters): a misspelt key fails here, not an hour in.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from reasoning_sft.errors import ConfigError
from reasoning_sft.schema import (DataConfig, DeepSpeedConfig, Errors, EvalConfig, LoggerConfig, ModelConfig, PeftConfig,
                                  ReportConfig, TrainerConfig, _check, raise_errors, typed)

# Arguments the code passes itself when it instantiates a node (not set in YAML).
RUNTIME_KWARGS = {
    "reasoning_sft.training.models.build_tiny_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.training.models.load_pretrained_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.data.curation.keyword_domain": {"rec"},
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


def world_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.nproc_per_node) * int(cfg.trainer.nnodes)


def sequence_parallel_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.sequence_parallel_size)


def data_parallel_size(cfg: DictConfig) -> int:
    """Ranks that see different samples: the world divided by the sequence-parallel group (whose ranks
    share one sample, each a slice of its tokens)."""
    return world_size(cfg) // sequence_parallel_size(cfg)


def grad_accumulation(cfg: DictConfig) -> int:
    t = cfg.trainer
    per_step = t.micro_batch_size * data_parallel_size(cfg)
    if t.global_batch_size % per_step:
        sp = sequence_parallel_size(cfg)
        raise ConfigError(
            f"trainer.global_batch_size={t.global_batch_size}: expected a multiple of "
            f"trainer.micro_batch_size x nproc_per_node x nnodes" + (f" / sequence_parallel_size ({sp})" if sp > 1 else "")
            + f" = {per_step}")
    return t.global_batch_size // per_step


def validate_train_config(cfg: DictConfig) -> None:
    """Everything that can be known wrong before a tokenizer, dataset or model is built, in two rounds,
    each reporting every problem it finds at once: first the keys and values (missing ones, each typed
    group, the ablation's transforms, the settings that only make sense together), which import
    nothing heavy, so a typo is answered in about a second; then every `_target_` against the code it
    names (importing it: the model builders bring torch and transformers)."""
    errs: Errors = []
    if not _values_problems(cfg, errs):
        raise_errors(errs)
    t = typed(cfg.trainer, TrainerConfig, "trainer", errs)   # every key, its type and range (reasoning_sft/schema.py)
    for key, schema in (("eval", EvalConfig), ("peft", PeftConfig), ("deepspeed", DeepSpeedConfig)):
        typed(cfg[key], schema, key, errs)
    if "report" in cfg:   # a sweep file's block for the report stage
        typed(cfg.report, ReportConfig, "report", errs)
    if t is not None:
        if t.packing:
            _check(errs, t.pack_length is None or t.pack_length >= cfg.data.max_seq_len, "trainer.pack_length",
                   f"null or an integer >= data.max_seq_len={cfg.data.max_seq_len}", t.pack_length)
        sp = t.sequence_parallel_size
        _check(errs, world_size(cfg) % sp == 0, "trainer.sequence_parallel_size",
               f"an integer >= 1 dividing nproc_per_node x nnodes = {world_size(cfg)}", sp)
        if sp > 1:
            _check(errs, cfg.deepspeed.config is not None, "trainer.sequence_parallel_size",
                   "1 without DeepSpeed: Ulysses sequence parallelism runs on DeepSpeed (deepspeed=zero3)", sp)
            attention = cfg.model.network.get("attn_implementation", "sdpa")   # the model's own default
            _check(errs, not t.packing or str(attention).startswith("flash_attention"), "trainer.packing",
                   f"false with trainer.sequence_parallel_size > 1 and {attention} attention: Ulysses runs SDPA "
                   "causal over the whole row, across packed samples (flash_attention_2 keeps their boundaries)",
                   t.packing)
        if cfg.eval.after_train and cfg.eval.backend != "hf":
            errs.append(f"eval.backend={cfg.eval.backend!r}: after training the trainer still holds the GPUs; "
                        "evaluate the saved model with python -m reasoning_sft.evaluate model_path=<run dir>/"
                        "final_model eval.backend=vllm")
        try:
            grad_accumulation(cfg)
        except ConfigError as e:
            errs.append(str(e))
    raise_errors(errs)
    _code_problems(cfg, errs)
    raise_errors(errs)


def validate_prepare_config(cfg: DictConfig) -> None:
    """The data and ablation part of the checks (the `prepare` and `curate` stages have no trainer)."""
    errs: Errors = []
    prepare_problems(cfg, errs)
    raise_errors(errs)


def validate_eval_config(cfg: DictConfig) -> None:
    """The `evaluate` stage's checks: missing values, the model and the eval group, typed."""
    errs: Errors = []
    if _missing(cfg, errs):
        for key, schema in (("model", ModelConfig), ("eval", EvalConfig), ("logger", LoggerConfig)):
            typed(cfg[key], schema, key, errs)
    raise_errors(errs)   # values first: answered before the model's code is imported
    check_targets(cfg.model, errs, "model")
    raise_errors(errs)


def _missing(cfg: DictConfig, errs: Errors) -> bool:
    missing = sorted(OmegaConf.missing_keys(cfg))
    for key in missing:
        errs.append(f"{key}: a required value is missing (set it on the command line, e.g. {key}=...)")
    return not missing


def prepare_problems(cfg: DictConfig, errs: Errors) -> bool:
    """Appends the data / model / ablation problems, values first, then (when those are right) the code
    they name; False when values are missing (nothing else can be read)."""
    if not _values_problems(cfg, errs):
        return False
    if not errs:
        _code_problems(cfg, errs)
    return True


def _values_problems(cfg: DictConfig, errs: Errors) -> bool:
    """Missing values, the typed data / model / logger groups, shares, the ablation's transforms (light
    classes that check their own parameters): nothing heavy imported."""
    if not _missing(cfg, errs):
        return False
    typed(cfg.data, DataConfig, "data", errs)   # keys, types and ranges (reasoning_sft/schema.py)
    typed(cfg.model, ModelConfig, "model", errs)
    if "logger" in cfg:
        typed(cfg.logger, LoggerConfig, "logger", errs)
    _check_rates(cfg, errs)
    if "ablation" in cfg:
        _build_transforms(cfg, errs)
    return True


def _code_problems(cfg: DictConfig, errs: Errors) -> None:
    """Every `_target_` against the signature of the code it names (imported here)."""
    check_targets(cfg, errs)


def _build_transforms(cfg: DictConfig, errs: Errors) -> None:
    """Each transform of the ablation built once here: its class checks its own parameters
    (reasoning_sft/data/ablations.py). prepare_records builds them again where it applies them."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    for i, node in enumerate(cfg.ablation.transforms):
        try:
            import_target(node._target_)
        except Exception as e:  # noqa: BLE001 - the same message check_targets gives
            errs.append(f"ablation.transforms[{i}]._target_={node._target_!r}: cannot be imported ({e})")
            continue
        try:
            instantiate(node)
        except InstantiationException as e:
            cause = e.__cause__ if e.__cause__ is not None else e
            found = str(cause).splitlines() if isinstance(cause, ConfigError) else [f"ablation.transforms[{i}]: {cause}"]
            errs.extend(m for m in found if m not in errs)


def check_hardware(cfg: DictConfig) -> None:
    """What this machine cannot run (kept apart so paper configs validate on a CPU machine)."""
    import torch
    if cfg.trainer.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.precision={cfg.trainer.precision!r}: needs a GPU; "
                          "this machine has none (use trainer.precision=auto or fp32)")
    if cfg.trainer.liger_kernel:
        import importlib.util
        if importlib.util.find_spec("liger_kernel") is None or not torch.cuda.is_available():
            raise ConfigError("trainer.liger_kernel=true: needs a GPU and `pip install liger-kernel`")


def training_dtype(cfg: DictConfig) -> tuple[str, Any]:
    """(precision, dtype to load weights in). Without DeepSpeed weights stay fp32 and autocast does
    bf16 (mixed precision); under DeepSpeed they load in bf16 and DeepSpeed keeps fp32 master copies."""
    import torch
    p = cfg.trainer.precision
    if p == "auto":
        p = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if p == "fp32":
        return p, torch.float32
    half = torch.bfloat16 if p == "bf16" else torch.float16
    return p, half if cfg.deepspeed.config is not None else torch.float32
