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
from reasoning_sft.registry import BACKENDS, GRADE_TASKS, GRADING_PROFILES, LAUNCHERS, PROMPTS, REPORT_FIGURES, THINKING_STYLES

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
TRUNCATED_POLICIES = ("wrong", "whole_response")   # a response that never left its thinking: wrong, or graded whole
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts")


Errors = List[str]   # every problem of a config, collected before one ConfigError names them all


def _check(errs: Errors, ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        errs.append(f"{key}={value!r}: expected {expected}")


def _one_of(errs: Errors, key: str, value: Any, choices: tuple) -> None:
    _check(errs, value in choices, key, " or ".join(repr(c) for c in choices) if len(choices) < 3
           else f"one of {choices}", value)


def raise_errors(errs: Errors) -> None:
    """One ConfigError for all of them: the user fixes a config in one go, not one key per run."""
    errs = list(dict.fromkeys(errs))   # a share checked twice (its group's schema and the generic check) is one problem
    if len(errs) == 1:
        raise ConfigError(errs[0])
    if errs:
        raise ConfigError(f"{len(errs)} problems in the config:\n  " + "\n  ".join(errs))


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
    ssh_port: Optional[int] = None       # with a hostfile: the hosts' sshd port (else ssh's config, PDSH_SSH_ARGS_APPEND)
    host_check_timeout_s: int = 30       # with a hostfile: each host answers over ssh within this, before any rank starts
    master_port: Optional[int] = None    # null: a free port
    save_steps: int = 0                  # checkpoint every N optimizer steps (0: none); SIGTERM always checkpoints
    save_total_limit: int = 2            # keep the last N checkpoints
    resume_trust: bool = False           # a checkpoint outside the run dir is unpickled on resume: only with true
    # unfinished: a run dir holding complete checkpoints of a run that did not finish (preempted, killed,
    # a requeued SLURM job) continues from the last one; anything else starts fresh |
    # never | auto (also says a finished run is finished) | <checkpoint dir>
    resume: str = "unfinished"
    verify_save: bool = True             # reload the saved final model and compare its logits with the trained one
    # true: when a finished run under paths.log_dir trained this model (the same records, settings, code and
    # kind of processor: reasoning_sft/training/reuse.py), link its final_model/ and evaluate it instead of
    # training again (summary.json: train.reused_from). Sweeps sharing an arm train it once
    reuse_trained: bool = False

    def check(self, key: str, errs: Errors) -> None:
        _check(errs, self.learning_rate > 0, f"{key}.learning_rate", "a positive number", self.learning_rate)
        _check(errs, self.weight_decay >= 0, f"{key}.weight_decay", "a number >= 0", self.weight_decay)
        for k in ("adam_beta1", "adam_beta2"):
            _check(errs, 0 <= getattr(self, k) < 1, f"{key}.{k}", "a number in [0, 1)", getattr(self, k))
        _check(errs, 0 <= self.warmup_ratio <= 1, f"{key}.warmup_ratio", "a number in [0, 1]", self.warmup_ratio)
        _check(errs, self.max_grad_norm > 0, f"{key}.max_grad_norm", "a positive number", self.max_grad_norm)
        _check(errs, self.num_epochs > 0 or self.max_steps > 0, f"{key}.num_epochs", "> 0 (or trainer.max_steps > 0)",
               self.num_epochs)
        for k in ("micro_batch_size", "global_batch_size", "nproc_per_node", "nnodes", "logging_steps",
                  "save_total_limit", "sequence_parallel_size"):
            _check(errs, getattr(self, k) >= 1, f"{key}.{k}", "an integer >= 1", getattr(self, k))
        for k in ("save_steps", "loss_chunk_tokens", "dataloader_num_workers"):
            _check(errs, getattr(self, k) >= 0, f"{key}.{k}", "an integer >= 0", getattr(self, k))
        _one_of(errs, f"{key}.precision", self.precision, PRECISIONS)
        _one_of(errs, f"{key}.sampling", self.sampling, ("random", "group_by_length"))
        _one_of(errs, f"{key}.lr_scheduler", self.lr_scheduler, SCHEDULERS)
        LAUNCHERS.check(errs, f"{key}.launcher", self.launcher)
        _check(errs, self.host_check_timeout_s >= 1, f"{key}.host_check_timeout_s", "an integer >= 1",
               self.host_check_timeout_s)
        _check(errs, self.ssh_port is None or 0 < self.ssh_port < 65536, f"{key}.ssh_port", "null or a port number",
               self.ssh_port)
        _check(errs, self.pack_length is None or self.pack_length >= 16, f"{key}.pack_length", "null or an integer >= 16",
               self.pack_length)
        _check(errs, self.progress_bar in ("auto", True, False), f"{key}.progress_bar", "auto, true or false",
               self.progress_bar)
        if self.packing:
            _check(errs, self.sampling == "random", f"{key}.sampling", "'random' with trainer.packing=true (packing "
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

    def check(self, key: str, errs: Errors) -> None:
        _check(errs, self.max_seq_len >= 16, f"{key}.max_seq_len", "an integer >= 16", self.max_seq_len)
        _one_of(errs, f"{key}.overflow", self.overflow, ("drop", "truncate"))
        _one_of(errs, f"{key}.keep", self.keep, ("all", "correct", "wrong"))
        THINKING_STYLES.check(errs, f"{key}.format.thinking_style", self.format.thinking_style)
        _one_of(errs, f"{key}.source.on_error", self.source.get("on_error", "raise"), ("raise", "skip"))
        for k in ("num_samples", "min_trace_tokens", "max_trace_tokens", "samples_per_bucket"):
            v = getattr(self, k)
            _check(errs, v is None or v >= 0, f"{key}.{k}", "null or an integer >= 0", v)
        _check(errs, not self.length_buckets or bool(self.samples_per_bucket), f"{key}.samples_per_bucket",
               "an integer >= 1 with data.length_buckets", self.samples_per_bucket)
        for i, bucket in enumerate(self.length_buckets or []):
            _check(errs, len(bucket) == 2 and 0 <= bucket[0] < bucket[1], f"{key}.length_buckets[{i}]",
                   "[low, high) token bounds with 0 <= low < high", list(bucket))


@dataclass
class JudgeConfig:
    """An OpenAI-compatible endpoint for the graders that ask an LLM (profiles s1 and long1k)."""
    base_url: Optional[str] = None       # null: no judge (said once; summaries record judge: none)
    model: Optional[str] = None
    api_key_env: str = "OPENAI_API_KEY"  # the variable holding the key (never the key itself)


@dataclass
class GradingConfig:
    # strict (ours: answer section, truncated apart) | skythought | s1 | long1k (each paper's released
    # grader); each experiment sets its paper's
    profile: str = "strict"
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    truncated: str = "wrong"             # strict: wrong | whole_response for a response that never left its thinking
    timeout_seconds: int = 5             # math-verify's limit per answer; a timeout is wrong and counted


@dataclass
class BudgetForcingConfig:
    """s1's test-time scaling; off: plain greedy generation."""
    enabled: bool = False
    # cap: a number | auto (s1's: max_new_tokens - the longest prompt - the forced tokens - 100; the summary
    # says the number) | null (max_new_tokens)
    max_thinking_tokens: Any = None
    min_thinking_tokens: int = 0         # extend with wait_string until this many thinking tokens
    num_wait: int = 0                    # extend this many times when thinking ends early
    wait_string: str = "Wait"
    # the answer phase's budget; null: eval.max_new_tokens, as s1's fork runs it (the full max_gen_toks)
    max_answer_tokens: Optional[int] = None


@dataclass
class VllmConfig:
    """vllm.LLM(...) settings when eval.backend=vllm (make install-vllm: the CUDA build on a GPU machine,
    the CPU build elsewhere)."""
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9  # a GPU's share vLLM takes (on CPU it would be the machine's RAM: see kv_cache_gb)
    # the KV cache, GiB; null: on a GPU vLLM's own (gpu_memory_utilization), on CPU what eval.batch_size sequences
    # of the model's full length need (vLLM's CPU default reserves 0.9 of the RAM and refuses a busy machine)
    kv_cache_gb: Optional[float] = None
    max_model_len: Optional[int] = None
    dtype: str = "auto"                  # auto: what the HF backend uses here (bfloat16 on a GPU, float32 on CPU)
    enforce_eager: bool = False          # true: no CUDA graphs / torch.compile (faster start; CPU tests)
    engine_args: Dict[str, Any] = field(default_factory=dict)   # any other vllm.LLM keyword, as written


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
    processes: int = 64                  # per program (its own count: other programs do not use it up)
    disk_mb: int = 64                    # its writable tmpfs, all files together
    max_tests_mb: int = 256              # a problem's decoded tests (a compressed row can hold a zlib bomb)
    sandbox: str = "strict"              # strict: refuse untrusted code where containment fails; weak: run anyway

    def check(self, key: str, errs: Errors) -> None:
        _check(errs, self.sandbox in ("strict", "weak"), f"{key}.sandbox",
               "strict (refuse where the sandbox cannot contain) or weak (run anyway, recorded)", self.sandbox)
        for k in ("workers", "timeout_seconds", "file_mb", "processes", "disk_mb", "max_tests_mb"):
            _check(errs, getattr(self, k) >= 1, f"{key}.{k}", "an integer >= 1", getattr(self, k))
        _check(errs, self.memory_mb >= 64, f"{key}.memory_mb", "an integer >= 64 (MB)", self.memory_mb)


@dataclass
class EvalConfig:
    """What is evaluated (after training with after_train, or by python -m reasoning_sft.evaluate) and how."""
    after_train: bool = False
    tasks: List[str] = field(default_factory=list)   # reasoning_sft/evaluation/tasks.py's registry
    num_problems: int = 200              # synthetic: held-out problems (never in any training split)
    # local copies of the benchmark sets (aime24.jsonl, math500.jsonl, ...); a set not found here is read
    # from the hub dataset the papers' evaluation code loads (evaluation/tasks.py: HUB_SETS)
    data_dir: Optional[str] = "${paths.data_dir}"
    gpqa_path: Optional[str] = None      # your copy of gpqa_diamond.csv (never bundled); task name gpqa_diamond
    limit: Optional[int] = None          # the first N problems of each task
    # null: the length the model was trained on (reasoning_sft.json), else 32768
    max_new_tokens: Optional[int] = None
    batch_size: int = 8
    bootstrap_samples: int = 1000        # resamples for the 95% intervals
    samples_per_problem: int = 1         # generations per problem: accuracy is their mean pass@1
    # decoding, as the papers' vLLM SamplingParams set it and nothing else (a checkpoint's
    # generation_config.json is never inherited): the same on both backends
    temperature: float = 0.0             # 0: greedy; > 0 samples (seeded by eval.seed) with top_p
    top_p: float = 1.0
    top_k: Optional[int] = None          # null: off (vLLM's -1 / 0)
    repetition_penalty: float = 1.0      # 1.0: none
    min_tokens: int = 0                  # no end of turn (nor a one-token stop marker) before this many tokens
    seed: Optional[int] = None           # generation's seed (sampling, vLLM's engine); null: the run's `seed`
    ks: List[int] = field(default_factory=lambda: [1])   # pass@k and maj@k for each k <= samples_per_problem
    # trained (the model's own training format) | s1 | skyt1 | qwen_math (reasoning_sft/evaluation/prompts.py)
    prompt: str = "trained"
    grading: GradingConfig = field(default_factory=GradingConfig)
    budget_forcing: BudgetForcingConfig = field(default_factory=BudgetForcingConfig)
    # hf: transformers generate | vllm: vLLM's engine, from a saved model (eval.vllm)
    backend: str = "hf"
    # replicas of the engine, each its own process (GPU(s), or share of the CPU cores), the problems x samples
    # spread over them and merged in order: the same rows and summary as 1 (docs/evaluation.md). The
    # evaluate stage's; the evaluation after training runs in the training process, one replica.
    data_parallel_size: int = 1
    vllm: VllmConfig = field(default_factory=VllmConfig)
    code: CodeEvalConfig = field(default_factory=CodeEvalConfig)

    def check(self, key: str, errs: Errors) -> None:
        BACKENDS.check(errs, f"{key}.backend", self.backend)
        PROMPTS.check(errs, f"{key}.prompt", self.prompt)
        _one_of(errs, f"{key}.grading.truncated", self.grading.truncated, TRUNCATED_POLICIES)
        GRADING_PROFILES.check(errs, f"{key}.grading.profile", self.grading.profile)
        _check(errs, not self.grading.judge.base_url or bool(self.grading.judge.model), f"{key}.grading.judge.model",
               "a model name when judge.base_url is set", self.grading.judge.model)
        for k in ("batch_size", "samples_per_problem", "bootstrap_samples", "num_problems", "data_parallel_size"):
            _check(errs, getattr(self, k) >= 1, f"{key}.{k}", "an integer >= 1", getattr(self, k))
        for k in ("limit", "max_new_tokens"):
            v = getattr(self, k)
            _check(errs, v is None or v >= 1, f"{key}.{k}", "null or an integer >= 1", v)
        _check(errs, self.temperature >= 0, f"{key}.temperature", "a number >= 0", self.temperature)
        _check(errs, 0 < self.top_p <= 1, f"{key}.top_p", "a number in (0, 1]", self.top_p)
        _check(errs, self.top_k is None or self.top_k >= 1, f"{key}.top_k", "null (off) or an integer >= 1", self.top_k)
        _check(errs, self.repetition_penalty > 0, f"{key}.repetition_penalty", "a positive number (1.0: none)",
               self.repetition_penalty)
        _check(errs, self.min_tokens >= 0, f"{key}.min_tokens", "an integer >= 0", self.min_tokens)
        _check(errs, 0 < self.vllm.gpu_memory_utilization <= 1, f"{key}.vllm.gpu_memory_utilization",
               "a number in (0, 1]", self.vllm.gpu_memory_utilization)
        _check(errs, self.vllm.tensor_parallel_size >= 1, f"{key}.vllm.tensor_parallel_size", "an integer >= 1",
               self.vllm.tensor_parallel_size)
        _check(errs, self.vllm.kv_cache_gb is None or self.vllm.kv_cache_gb > 0, f"{key}.vllm.kv_cache_gb",
               "null or a positive number (GiB)", self.vllm.kv_cache_gb)
        self.code.check(f"{key}.code", errs)
        _check(errs, self.grading.timeout_seconds >= 1, f"{key}.grading.timeout_seconds", "an integer >= 1",
               self.grading.timeout_seconds)
        bf = self.budget_forcing
        for k in ("min_thinking_tokens", "num_wait"):
            _check(errs, getattr(bf, k) >= 0, f"{key}.budget_forcing.{k}", "an integer >= 0", getattr(bf, k))
        _check(errs, bf.max_answer_tokens is None or bf.max_answer_tokens >= 1,
               f"{key}.budget_forcing.max_answer_tokens", "an integer >= 1 or null", bf.max_answer_tokens)
        cap = bf.max_thinking_tokens
        _check(errs, cap is None or cap == "auto" or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1),
               f"{key}.budget_forcing.max_thinking_tokens", "an integer >= 1, auto or null", cap)
        _check(errs, all(1 <= k <= self.samples_per_problem for k in self.ks), f"{key}.ks",
               f"integers in [1, eval.samples_per_problem={self.samples_per_problem}]", list(self.ks))


@dataclass
class ModelConfig:
    """A model: a tokenizer and a network, each a `_target_` node (reasoning_sft/training/models.py: a tiny
    model built here, or a hub / local checkpoint); `architecture` sizes a hub model for the memory plan."""
    name: str = MISSING
    name_or_path: Optional[str] = None   # hub id or local dir (null: built from its config)
    trust_remote_code: bool = False      # an explicit user choice: true runs code from the hub
    architecture: Optional[Dict[str, Any]] = None
    tokenizer: Dict[str, Any] = MISSING
    network: Dict[str, Any] = MISSING

    def check(self, key: str, errs: Errors) -> None:
        for part in ("tokenizer", "network"):
            _check(errs, "_target_" in getattr(self, part), f"{key}.{part}", "a node with a _target_",
                   dict(getattr(self, part)))


@dataclass
class PeftConfig:
    """LoRA (or any peft config): off unless enabled."""
    enabled: bool = False
    merge_after_train: bool = False      # also save a merged full model next to the adapter
    config: Optional[Dict[str, Any]] = None   # e.g. {_target_: peft.LoraConfig, r: 64, ...}

    def check(self, key: str, errs: Errors) -> None:
        _check(errs, not self.enabled or (self.config is not None and "_target_" in self.config), f"{key}.config",
               "a peft config node (_target_: peft.LoraConfig, ...) with peft.enabled=true", self.config)


@dataclass
class DeepSpeedConfig:
    """A DeepSpeed config dict as DeepSpeed reads it (null: no DeepSpeed)."""
    config: Optional[Dict[str, Any]] = None

    def check(self, key: str, errs: Errors) -> None:
        stage = ((self.config or {}).get("zero_optimization") or {}).get("stage", 0)
        _check(errs, stage in (0, 1, 2, 3), f"{key}.config.zero_optimization.stage", "0, 1, 2 or 3", stage)


LOGGER_MODES = ("auto", "online", "offline", "disabled")


@dataclass
class LoggerConfig:
    """W&B on rank 0 (reasoning_sft/training/wandb_logging.py)."""
    enabled: bool = False
    project: str = "reasoning-sft"
    entity: Optional[str] = None
    group: Optional[str] = None          # the study
    name: Optional[str] = None           # null: a sweep job's overrides, else the experiment's name
    tags: List[str] = field(default_factory=list)
    mode: str = "auto"                   # auto: online with an API key, else offline (said once)

    def check(self, key: str, errs: Errors) -> None:
        _one_of(errs, f"{key}.mode", self.mode, LOGGER_MODES)


@dataclass
class ReportConfig:
    """A sweep file's `report:` block: what the study varies, for python -m reasoning_sft.report."""
    figure: Optional[str] = None         # one of registry.REPORT_FIGURES (report.py)
    x: Optional[str] = None              # the config key on the x axis
    baseline: Any = None                 # the x value the others are compared with

    def check(self, key: str, errs: Errors) -> None:
        REPORT_FIGURES.check(errs, f"{key}.figure", self.figure, allow=(None,))


@dataclass
class GradeFields:
    response: Optional[str] = None       # null: `generation` (eval_samples.jsonl), else `response`
    gold: Optional[str] = None           # null: the first of gold, answer, gt, gold_answer
    verdict: Optional[str] = None        # an existing verdict column (e.g. correct): agreement is reported
    id: Optional[str] = None             # null: `id` when rows have one, else the line number
    problem: Optional[str] = None        # rows of one problem share it: pass@1 per problem


@dataclass
class GradeConfig:
    """The grade stage (conf/grade.yaml): a jsonl of responses graded as the task says."""
    input: str = MISSING                 # a .jsonl file, one response per line
    task: str = "math"                   # math | gpqa | livecodebench | apps | taco
    fields: GradeFields = field(default_factory=GradeFields)
    thinking_style: Optional[str] = None   # s1 | r1 | skyt1 | none; null: each row's, else its markers
    profile: str = "strict"              # strict | skythought | s1 | long1k: whose grader (profiles.py)
    judge: JudgeConfig = field(default_factory=JudgeConfig)   # profiles s1 / long1k: their LLM judge
    truncated: str = "wrong"             # wrong | whole_response: a response that never left its thinking
    timeout_seconds: int = 5             # math-verify's per-answer limit; a timeout is wrong and counted
    bootstrap_samples: int = 1000
    code: CodeEvalConfig = field(default_factory=CodeEvalConfig)   # the sandbox's limits (code tasks)
    # every stage's own keys (conf/grade.yaml sets them; paths and hydra come from their groups)
    task_name: str = "grade"
    experiment_name: str = "default"
    run_name: Optional[str] = None       # the run dir's name (conf/grade.yaml: after the file graded)
    seed: int = 42
    paths: Dict[str, Any] = field(default_factory=dict)

    def check(self, key: str, errs: Errors) -> None:
        prefix = f"{key}." if key else ""
        THINKING_STYLES.check(errs, f"{prefix}thinking_style", self.thinking_style, allow=(None, "none"))
        GRADE_TASKS.check(errs, f"{prefix}task", self.task)
        _one_of(errs, f"{prefix}truncated", self.truncated, TRUNCATED_POLICIES)
        GRADING_PROFILES.check(errs, f"{prefix}profile", self.profile)
        _check(errs, not self.judge.base_url or bool(self.judge.model), f"{prefix}judge.model",
               "a model name when judge.base_url is set", self.judge.model)
        _check(errs, self.timeout_seconds >= 1, f"{prefix}timeout_seconds", "an integer >= 1", self.timeout_seconds)
        _check(errs, self.bootstrap_samples >= 1, f"{prefix}bootstrap_samples", "an integer >= 1",
               self.bootstrap_samples)
        self.code.check(f"{prefix}code", errs)


# group -> schema: conf/<group>/*.yaml extend `schema` (defaults: [schema, _self_]) and set what differs
SCHEMAS = {"trainer": TrainerConfig, "data": DataConfig, "eval": EvalConfig, "model": ModelConfig,
           "peft": PeftConfig, "deepspeed": DeepSpeedConfig, "logger": LoggerConfig}


def register() -> None:
    """`<group>/schema` for each typed group (conf/<group>/*.yaml extend it)."""
    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=group, name="schema", node=schema)
    store.store(name="grade_schema", node=GradeConfig)   # the grade stage's whole config (conf/grade.yaml)


def typed(node: DictConfig, schema: type, key: str, errs: Errors):
    """`node` as an instance of `schema`: types converted and checked, ranges by its `check`; problems are
    appended to `errs` (None is returned when the node cannot be read as the schema at all). A node read
    back from a run dir's config.yaml, or given a key with `+`, gets the checks Hydra gives while composing."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))
        obj = OmegaConf.to_object(merged)
    except ConfigKeyError as e:   # a key the schema does not have
        path = str(e.full_key)
        names = [f.name for f in fields(schema)] if "." not in path else []
        near = difflib.get_close_matches(path, names, n=1)
        at = f"{key}." if key else ""
        errs.append(f"{at}{path}: not a key of {key or 'the config'} (reasoning_sft/schema.py: {schema.__name__})"
                    + (f"; did you mean {at}{near[0]}?" if near else ""))
        return None
    except OmegaConfBaseException as e:
        full = getattr(e, "full_key", None)
        where = (f"{key}.{full}" if key else full) if full else (key or "config")
        errs.append(f"{where}: {str(e).splitlines()[0]}")
        return None
    if hasattr(obj, "check"):
        obj.check(key, errs)
    return obj
