"""Config checks run before anything is built (run dirs: rundir.py; the command line: cli.py).

Every error names the config key and what was expected. `_target_` nodes are checked against the
signature of the function they name (torchtune's habit): a misspelt key fails here, not an hour in.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from reasoning_sft.errors import ConfigError

# Arguments the code passes itself when it instantiates a node (not set in YAML).
RUNTIME_KWARGS = {
    "reasoning_sft.models.build_tiny_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.models.load_pretrained_model": {"tokenizer", "dtype", "seed"},
    "reasoning_sft.curate.keyword_domain": {"rec"},
}
RUNTIME_KWARGS_BY_MODULE = {"reasoning_sft.ablation": {"records", "ctx"}}   # transforms: fn(records, ctx, ...)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts")


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def check_targets(node: Any, key: str = "") -> None:
    """Every `_target_` resolves and its keys match the target's signature."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            target = node["_target_"]
            try:
                fn = import_target(target)
            except Exception as e:  # noqa: BLE001 - any import failure is a config error here
                raise ConfigError(f"{key}._target_={target!r}: cannot be imported ({e})") from e
            params = inspect.signature(fn).parameters
            accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
            given = {k for k in node.keys() if not str(k).startswith("_")}
            if not accepts_any:
                unknown = given - set(params)
                if unknown:
                    raise ConfigError(f"{key}.{sorted(unknown)[0]}: not a parameter of {target} "
                                      f"(it takes {sorted(k for k in params if k != 'self')})")
            runtime = RUNTIME_KWARGS.get(target, RUNTIME_KWARGS_BY_MODULE.get(target.rpartition(".")[0], set()))
            required = {n for n, p in params.items() if p.default is p.empty
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - runtime - {"self"}
            if required - given:
                raise ConfigError(f"{key}.{sorted(required - given)[0]}: required by {target} but not set")
        for k in node.keys():
            check_targets(node._get_node(k), f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_targets(item, f"{key}[{i}]")


def import_target(target: str) -> Any:
    """Import `a.b.c` as an attribute path; classes (e.g. peft.LoraConfig) included."""
    module, _, name = target.rpartition(".")
    mod = __import__(module, fromlist=[name])
    return getattr(mod, name)


def _check_rates(node: Any, key: str = "") -> None:
    """Any `rate`, `*_rate`, `*_prob` or `*_ratio` anywhere is a share: it must lie in [0, 1]
    (a learning rate is no share: it is checked on its own)."""
    if isinstance(node, DictConfig):
        for k in node.keys():
            v = node._get_node(k)
            sub = f"{key}.{k}" if key else str(k)
            if isinstance(k, str) and (k == "rate" or k.endswith(("_rate", "_prob", "_ratio"))) \
                    and k != "learning_rate" \
                    and not OmegaConf.is_missing(node, k) and not isinstance(v, (DictConfig, ListConfig)):
                val = node[k]
                if val is not None:
                    _check(isinstance(val, (int, float)) and 0 <= val <= 1, sub, "a number in [0, 1]", val)
            _check_rates(v, sub)
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_rates(item, f"{key}[{i}]")


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# Keys whose default is null take one of these types; a key not listed accepts any value.
NULLABLE_TYPES = {"pack_length": int, "hub_model_id": str, "hostfile": str, "master_port": int}
MIXED_TYPES = {"progress_bar": (str, bool)}   # auto | true | false


def check_group_schema(node: DictConfig, schema_file: Path, key: str) -> None:
    """Every key of `node` exists in its group's default file and has that default's type: a misspelt
    `+trainer.learnig_rate=1e-5` or `trainer.max_steps=abc` is refused in one line naming the key."""
    schema = OmegaConf.to_container(OmegaConf.load(schema_file), resolve=False)
    for k in node.keys():
        if k not in schema:
            near = difflib.get_close_matches(str(k), [str(x) for x in schema.keys()], n=1)
            raise ConfigError(f"{key}.{k}: not a key of {key} ({schema_file.relative_to(CONF_DIR.parent)})"
                              + (f"; did you mean {key}.{near[0]}?" if near else ""))
        value, default = node[k], schema[k]
        if value is None or isinstance(value, (DictConfig, ListConfig)) or \
                (isinstance(default, str) and default.startswith("${")):   # an interpolation: any type
            continue
        expected = MIXED_TYPES.get(k) or (NULLABLE_TYPES.get(k) if default is None else type(default))
        if expected is None:
            continue
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif expected is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected)
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        wanted = " or ".join(names.get(t, t.__name__) for t in (expected if isinstance(expected, tuple) else (expected,)))
        _check(ok, f"{key}.{k}", wanted, value)


def world_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.nproc_per_node) * int(cfg.trainer.nnodes)


def sequence_parallel_size(cfg: DictConfig) -> int:
    return int(cfg.trainer.get("sequence_parallel_size") or 1)


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
    """Everything that can be known wrong before a tokenizer, dataset or model is built."""
    validate_prepare_config(cfg)   # first: missing values, data, ablation, every _target_
    check_group_schema(cfg.trainer, CONF_DIR / "trainer" / "default.yaml", "trainer")
    t = cfg.trainer
    _check(isinstance(t.learning_rate, (int, float)) and t.learning_rate > 0,
           "trainer.learning_rate", "a positive number", t.learning_rate)
    _check(t.weight_decay >= 0, "trainer.weight_decay", "a number >= 0", t.weight_decay)
    _check(0 <= t.adam_beta1 < 1, "trainer.adam_beta1", "a number in [0, 1)", t.adam_beta1)
    _check(0 <= t.adam_beta2 < 1, "trainer.adam_beta2", "a number in [0, 1)", t.adam_beta2)
    _check(t.max_grad_norm > 0, "trainer.max_grad_norm", "a positive number", t.max_grad_norm)
    _check(t.num_epochs > 0 or t.max_steps > 0, "trainer.num_epochs",
           "> 0 (or trainer.max_steps > 0)", t.num_epochs)
    for k in ("micro_batch_size", "global_batch_size", "nproc_per_node", "nnodes", "logging_steps"):
        _check(isinstance(t[k], int) and t[k] >= 1, f"trainer.{k}", "an integer >= 1", t[k])
    _check(t.precision in PRECISIONS, "trainer.precision", f"one of {PRECISIONS}", t.precision)
    _check(t.sampling in ("random", "group_by_length"), "trainer.sampling", "'random' or 'group_by_length'",
           t.sampling)
    chunk = t.get("loss_chunk_tokens", 0)
    _check(isinstance(chunk, int) and chunk >= 0, "trainer.loss_chunk_tokens", "an integer >= 0 (0: the model's own loss)",
           chunk)
    _check(isinstance(t.save_steps, int) and t.save_steps >= 0, "trainer.save_steps", "an integer >= 0", t.save_steps)
    _check(isinstance(t.save_total_limit, int) and t.save_total_limit >= 1, "trainer.save_total_limit",
           "an integer >= 1", t.save_total_limit)
    _check(t.resume is not None and isinstance(t.resume, str), "trainer.resume",
           "'never', 'auto' or a checkpoint dir", t.resume)
    if t.packing:
        _check(t.sampling == "random", "trainer.sampling", "'random' with trainer.packing=true (packing already "
               "removes padding)", t.sampling)
        _check(t.pack_length is None or (isinstance(t.pack_length, int) and t.pack_length >= cfg.data.max_seq_len),
               "trainer.pack_length", f"null or an integer >= data.max_seq_len={cfg.data.max_seq_len}", t.pack_length)
    _check(t.lr_scheduler in SCHEDULERS, "trainer.lr_scheduler", f"one of {SCHEDULERS}", t.lr_scheduler)
    sp = t.get("sequence_parallel_size", 1)
    _check(isinstance(sp, int) and sp >= 1 and world_size(cfg) % sp == 0, "trainer.sequence_parallel_size",
           f"an integer >= 1 dividing nproc_per_node x nnodes = {world_size(cfg)}", sp)
    if sp > 1:
        _check(cfg.deepspeed.get("config") is not None, "trainer.sequence_parallel_size",
               "1 without DeepSpeed: Ulysses sequence parallelism runs on DeepSpeed (deepspeed=zero3)", sp)
        attention = cfg.model.get("network", {}).get("attn_implementation", "sdpa")
        _check(not t.packing or str(attention).startswith("flash_attention"), "trainer.packing",
               f"false with trainer.sequence_parallel_size > 1 and {attention} attention: Ulysses runs SDPA causal over "
               "the whole row, across packed samples (flash_attention_2 keeps their boundaries)", t.packing)
    if cfg.eval.get("after_train") and cfg.eval.get("backend", "hf") != "hf":
        raise ConfigError(f"eval.backend={cfg.eval.backend!r}: after training the trainer still holds the GPUs; "
                          "evaluate the saved model with python -m reasoning_sft.evaluate model_path=<run dir>/"
                          "final_model eval.backend=vllm")
    grad_accumulation(cfg)


def validate_prepare_config(cfg: DictConfig) -> None:
    """The data and ablation part of the checks (the `prepare` stage has no trainer)."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{missing[0]}: a required value is missing (set it on the command line, "
                          f"e.g. {missing[0]}=...)" + (f"; also missing: {missing[1:]}" if missing[1:] else ""))
    d = cfg.data
    _check(isinstance(d.max_seq_len, int) and d.max_seq_len >= 16, "data.max_seq_len",
           "an integer >= 16", d.max_seq_len)
    _check(d.overflow in ("drop", "truncate"), "data.overflow", "'drop' or 'truncate'", d.overflow)
    from reasoning_sft.formatting import THINKING_STYLES
    _check(d.format.thinking_style in THINKING_STYLES, "data.format.thinking_style",
           f"one of {sorted(THINKING_STYLES)}", d.format.thinking_style)
    on_error = d.source.get("on_error", "raise")
    _check(on_error in ("raise", "skip"), "data.source.on_error", "'raise' or 'skip'", on_error)
    for k in ("num_samples", "min_trace_tokens", "max_trace_tokens", "samples_per_bucket"):
        v = d.get(k)
        _check(v is None or (isinstance(v, int) and v >= 0), f"data.{k}", "null or an integer >= 0", v)
    for i, bucket in enumerate(d.get("length_buckets") or []):
        _check(len(bucket) == 2 and 0 <= bucket[0] < bucket[1], f"data.length_buckets[{i}]",
               "[low, high) token bounds with 0 <= low < high", list(bucket))
    _check_rates(cfg)
    check_targets(cfg)


def check_hardware(cfg: DictConfig) -> None:
    """What this machine cannot run (kept apart so paper configs validate on a CPU machine)."""
    if cfg.trainer.precision in ("bf16", "fp16") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.precision={cfg.trainer.precision!r}: needs a GPU; "
                          "this machine has none (use trainer.precision=auto or fp32)")
    if cfg.trainer.liger_kernel:
        import importlib.util
        if importlib.util.find_spec("liger_kernel") is None or not torch.cuda.is_available():
            raise ConfigError("trainer.liger_kernel=true: needs a GPU and `pip install liger-kernel`")


def training_dtype(cfg: DictConfig) -> tuple[str, torch.dtype]:
    """(precision, dtype to load weights in). Without DeepSpeed weights stay fp32 and autocast does
    bf16 (mixed precision); under DeepSpeed they load in bf16 and DeepSpeed keeps fp32 master copies."""
    p = cfg.trainer.precision
    if p == "auto":
        p = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if p == "fp32":
        return p, torch.float32
    half = torch.bfloat16 if p == "bf16" else torch.float16
    return p, half if cfg.deepspeed.config is not None else torch.float32
