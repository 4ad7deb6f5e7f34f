"""Typed config schemas (Hydra ConfigStore dataclasses, as lingua types its TrainArgs): the trainer,
the data selection and the evaluation. Each holds its keys' types, defaults and ranges in one place;
the YAML files of conf/trainer, conf/data and conf/eval extend one (`defaults: [schema, _self_]`) and
set only what differs. Hydra refuses an unknown key or a mistyped value while composing; `check`
refuses a value out of range before anything is built, naming the key.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from reasoning_sft.errors import ConfigError

# The thinking styles' names (reasoning_sft/data/formatting.py defines each one's delimiters).
THINKING_STYLE_NAMES = ("s1", "r1", "skyt1")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts")


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r}: expected {expected}")


def _one_of(key: str, value: Any, choices: tuple) -> None:
    _check(value in choices, key, " or ".join(repr(c) for c in choices) if len(choices) < 3
           else f"one of {choices}", value)


@dataclass
class TrainerConfig:
    """transformers.Trainer settings. Batch sizes are explicit: the gradient accumulation is derived as
    global_batch_size / (micro_batch_size x nproc_per_node x nnodes) and must divide exactly."""
    learning_rate: float = 1e-5
    lr_scheduler: str = "cosine"         # to 0 at the end, as s1 and Sky-T1 use
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    num_epochs: float = 3
    max_steps: int = -1                  # > 0 overrides num_epochs
    global_batch_size: int = 16
    micro_batch_size: int = 1            # per device
    nproc_per_node: int = 1
    nnodes: int = 1
    # > 1: DeepSpeed Ulysses (ALST) splits each sequence over this many GPUs (untested on GPU);
    # data-parallel ranks = nproc_per_node x nnodes / this
    sequence_parallel_size: int = 1
    gradient_checkpointing: bool = False
    # GPU only (pip install liger-kernel): fused kernels and a fused linear cross-entropy
    liger_kernel: bool = False
    # a row with more labelled tokens scores them this many at a time: its logits are never held at
    # once (reasoning_sft/training/chunked_loss.py); 0: the model's own loss. Liger replaces it
    loss_chunk_tokens: int = 2048
    # keep the activations saved for backward in CPU memory (torch save_on_cpu): slower, less GPU memory
    activation_offload: bool = False
    gpu_memory_gb: int = 80              # per GPU, for the memory plan (python -m reasoning_sft.plan)
    host_memory_gb: int = 1024           # CPU memory per node, for the memory plan (offloaded states live there)
    precision: str = "auto"              # auto: bf16 on a bf16-capable GPU, fp32 on CPU | bf16 | fp16 | fp32
    logging_steps: int = 10
    dataloader_num_workers: int = 0
    sampling: str = "random"             # random | group_by_length (batches of similar length: less padding)
    # padding-free: whole samples packed into rows, attention per sample (reasoning_sft/training/packing.py);
    # batch sizes then count rows of pack_length tokens
    packing: bool = False
    pack_length: Optional[int] = None    # tokens per packed row; null: data.max_seq_len
    save_final_model: bool = True        # final_model/: weights, tokenizer, reasoning_sft.json, a model card
    push_to_hub: bool = False            # upload final_model/ (with its card) to trainer.hub_model_id after training
    hub_model_id: Optional[str] = None   # <org>/<name>
    hub_private: bool = True
    # auto: a bar on a terminal, step / total / loss / ETA lines otherwise | true | false
    progress_bar: Any = "auto"
    # Processes and checkpoints. More than one process: this command freezes the config into the run
    # dir and starts the workers; each reads it and writes into the same run dir.
    # auto: DeepSpeed's launcher with a DeepSpeed config, else torchrun | slurm (set by hydra/launcher=slurm)
    launcher: str = "auto"
    hostfile: Optional[str] = None       # multi-node with DeepSpeed's launcher: one line per node, `<host> slots=<GPUs>`
    master_port: Optional[int] = None    # null: a free port
    save_steps: int = 0                  # checkpoint every N optimizer steps (0: none); SIGTERM always checkpoints
    save_total_limit: int = 2            # keep the last N checkpoints
    resume_trust: bool = False           # a checkpoint outside the run dir is unpickled on resume: only with true
    resume: str = "never"                # never | auto (last complete checkpoint of the run dir) | <checkpoint dir>
    verify_save: bool = True             # reload the saved final model and compare its logits with the trained one

    def check(self, key: str = "trainer") -> None:
        _check(self.learning_rate > 0, f"{key}.learning_rate", "a positive number", self.learning_rate)
        _check(self.weight_decay >= 0, f"{key}.weight_decay", "a number >= 0", self.weight_decay)
        for k in ("adam_beta1", "adam_beta2"):
            _check(0 <= getattr(self, k) < 1, f"{key}.{k}", "a number in [0, 1)", getattr(self, k))
        _check(0 <= self.warmup_ratio <= 1, f"{key}.warmup_ratio", "a number in [0, 1]", self.warmup_ratio)
        _check(self.max_grad_norm > 0, f"{key}.max_grad_norm", "a positive number", self.max_grad_norm)
        _check(self.num_epochs > 0 or self.max_steps > 0, f"{key}.num_epochs", "> 0 (or trainer.max_steps > 0)",
               self.num_epochs)
        for k in ("micro_batch_size", "global_batch_size", "nproc_per_node", "nnodes", "logging_steps",
                  "save_total_limit", "sequence_parallel_size"):
            _check(getattr(self, k) >= 1, f"{key}.{k}", "an integer >= 1", getattr(self, k))
        for k in ("save_steps", "loss_chunk_tokens", "dataloader_num_workers"):
            _check(getattr(self, k) >= 0, f"{key}.{k}", "an integer >= 0", getattr(self, k))
        _one_of(f"{key}.precision", self.precision, PRECISIONS)
        _one_of(f"{key}.sampling", self.sampling, ("random", "group_by_length"))
        _one_of(f"{key}.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _check(self.progress_bar in ("auto", True, False), f"{key}.progress_bar", "auto, true or false",
               self.progress_bar)
        if self.packing:
            _check(self.sampling == "random", f"{key}.sampling", "'random' with trainer.packing=true (packing "
                   "already removes padding)", self.sampling)


@dataclass
class FormatConfig:
    thinking_style: str = "r1"           # s1 | r1 | skyt1 (reasoning_sft/data/formatting.py)
    system_prompt: Optional[str] = None  # null: the chat template's default


@dataclass
class DataConfig:
    """A training set: where its records come from (`source`, a loader's `_target_` and arguments),
    how they are rendered, and which of them are kept (reasoning_sft/data/selection.py: seeded; smaller
    num_samples nest in larger ones for one seed)."""
    name: str = MISSING
    source: Dict[str, Any] = MISSING
    format: FormatConfig = field(default_factory=FormatConfig)
    max_seq_len: int = 16384             # tokens, prompt + completion
    overflow: str = "drop"               # drop | truncate; both counted in the data card
    domains: Optional[List[str]] = None  # e.g. [math] or [code]: only records of these domains (card: dropped_domain)
    keep: str = "all"                    # all | correct | wrong: graded against the gold answer (card: correctness)
    num_samples: Optional[int] = None    # null: all
    min_trace_tokens: Optional[int] = None   # trace length in tokens of the model's tokenizer
    max_trace_tokens: Optional[int] = None
    length_buckets: Optional[List[List[int]]] = None   # e.g. [[0,2000],[2000,4000]]: equally many from each
    samples_per_bucket: Optional[int] = None

    def check(self, key: str = "data") -> None:
        _check(self.max_seq_len >= 16, f"{key}.max_seq_len", "an integer >= 16", self.max_seq_len)
        _one_of(f"{key}.overflow", self.overflow, ("drop", "truncate"))
        _one_of(f"{key}.keep", self.keep, ("all", "correct", "wrong"))
        _one_of(f"{key}.format.thinking_style", self.format.thinking_style, THINKING_STYLE_NAMES)
        _one_of(f"{key}.source.on_error", self.source.get("on_error", "raise"), ("raise", "skip"))
        for k in ("num_samples", "min_trace_tokens", "max_trace_tokens", "samples_per_bucket"):
            v = getattr(self, k)
            _check(v is None or v >= 0, f"{key}.{k}", "null or an integer >= 0", v)
        for i, bucket in enumerate(self.length_buckets or []):
            _check(len(bucket) == 2 and 0 <= bucket[0] < bucket[1], f"{key}.length_buckets[{i}]",
                   "[low, high) token bounds with 0 <= low < high", list(bucket))


@dataclass
class GradingConfig:
    truncated: str = "wrong"             # wrong | whole_response: a response that never left its thinking
    timeout_seconds: int = 5             # math-verify's limit per answer; a timeout is wrong and counted


@dataclass
class BudgetForcingConfig:
    """s1's test-time scaling; off: plain greedy generation."""
    enabled: bool = False
    max_thinking_tokens: Optional[int] = None   # cap (null: max_new_tokens)
    min_thinking_tokens: int = 0         # extend with wait_string until this many thinking tokens
    num_wait: int = 0                    # extend this many times when thinking ends early
    wait_string: str = "Wait"
    max_answer_tokens: int = 1024


@dataclass
class VllmConfig:
    """LLM(...) settings when eval.backend=vllm."""
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: Optional[int] = None


@dataclass
class CodeEvalConfig:
    """LiveCodeBench / APPS / TACO: the problems' file and window, and the sandbox's limits."""
    path: Optional[str] = None           # a jsonl of LiveCodeBench problem rows (code_generation_lite's test*.jsonl)
    start_date: Optional[str] = None     # the release window of contest dates, ISO, inclusive (the benchmark's definition)
    end_date: Optional[str] = None
    public_only: bool = False            # true: public tests only
    workers: int = 4                     # (grade stage) programs run in parallel
    timeout_seconds: int = 6             # per test, LiveCodeBench's default
    memory_mb: int = 4096                # per program
    file_mb: int = 16                    # largest file a program may write
    processes: int = 64                  # per program


@dataclass
class EvalConfig:
    """What is evaluated (after training with after_train, or by python -m reasoning_sft.evaluate) and how."""
    after_train: bool = False
    tasks: List[str] = field(default_factory=list)   # reasoning_sft/evaluation/tasks.py's registry
    num_problems: int = 200              # synthetic: held-out problems (never in any training split)
    data_dir: str = "${paths.data_dir}"  # benchmark files (aime24.jsonl, math500.jsonl, ...)
    gpqa_path: Optional[str] = None      # your copy of gpqa_diamond.csv (never bundled); task name gpqa_diamond
    limit: Optional[int] = None          # the first N problems of each task
    # null: the length the model was trained on (reasoning_sft.json), else 32768
    max_new_tokens: Optional[int] = None
    batch_size: int = 8
    bootstrap_samples: int = 1000        # resamples for the 95% intervals
    samples_per_problem: int = 1         # generations per problem: accuracy is their mean pass@1
    temperature: float = 0.0             # 0: greedy; > 0 samples (seeded by `seed`) with top_p
    top_p: float = 1.0
    ks: List[int] = field(default_factory=lambda: [1])   # pass@k and maj@k for each k <= samples_per_problem
    # trained (the model's own training format) | s1 | skyt1 | qwen_math (reasoning_sft/evaluation/prompts.py)
    prompt: str = "trained"
    grading: GradingConfig = field(default_factory=GradingConfig)
    budget_forcing: BudgetForcingConfig = field(default_factory=BudgetForcingConfig)
    # hf: transformers generate | vllm: vLLM's engine (pip install vllm; CUDA), from a saved model
    backend: str = "hf"
    vllm: VllmConfig = field(default_factory=VllmConfig)
    code: CodeEvalConfig = field(default_factory=CodeEvalConfig)

    def check(self, key: str = "eval") -> None:
        _one_of(f"{key}.backend", self.backend, ("hf", "vllm"))
        _one_of(f"{key}.grading.truncated", self.grading.truncated, ("wrong", "whole_response"))
        for k in ("batch_size", "samples_per_problem", "bootstrap_samples", "num_problems"):
            _check(getattr(self, k) >= 1, f"{key}.{k}", "an integer >= 1", getattr(self, k))
        for k in ("limit", "max_new_tokens"):
            v = getattr(self, k)
            _check(v is None or v >= 1, f"{key}.{k}", "null or an integer >= 1", v)
        _check(self.temperature >= 0, f"{key}.temperature", "a number >= 0", self.temperature)
        _check(0 < self.top_p <= 1, f"{key}.top_p", "a number in (0, 1]", self.top_p)
        _check(all(1 <= k <= self.samples_per_problem for k in self.ks), f"{key}.ks",
               f"integers in [1, eval.samples_per_problem={self.samples_per_problem}]", list(self.ks))


SCHEMAS = {"trainer": TrainerConfig, "data": DataConfig, "eval": EvalConfig}


def register() -> None:
    """`<group>/schema` for each typed group (conf/<group>/*.yaml extend it)."""
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=group, name="schema", node=schema)


def typed(node: DictConfig, schema: type, key: str):
    """`node` as an instance of `schema`: types converted and checked, ranges by its `check`. A node read
    back from a run dir's config.yaml, or given a key with `+`, gets the checks Hydra gives while composing."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))
        obj = OmegaConf.to_object(merged)
    except ConfigKeyError as e:   # a key the schema does not have
        path = str(e.full_key)
        names = [f.name for f in fields(schema)] if "." not in path else []
        near = difflib.get_close_matches(path, names, n=1)
        raise ConfigError(f"{key}.{path}: not a key of {key} (reasoning_sft/schema.py: {schema.__name__})"
                          + (f"; did you mean {key}.{near[0]}?" if near else "")) from None
    except OmegaConfBaseException as e:
        where = f"{key}.{e.full_key}" if getattr(e, "full_key", None) else key
        raise ConfigError(f"{where}: {str(e).splitlines()[0]}") from None
    obj.check(key)
    return obj
