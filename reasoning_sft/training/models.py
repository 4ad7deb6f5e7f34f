"""Tokenizers and models: hub checkpoints for the cluster, tiny ones built locally for CPU.

Every builder here is a `_target_` of a `conf/model/*.yaml` file. The tiny builders never touch the
hub: the tokenizer is a byte-level BPE trained on the spot and the model is initialised from a config.
torch, tokenizers and transformers are imported by the functions that use them: every stage imports this
module to check its config's `_target_`s before any work, and a config error found there took 9.2 s to
print with them imported here, 1.0 s without (measured: `train model=tiny model.network.architecture=nope`).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from reasoning_sft.registry import ARCHITECTURES
from reasoning_sft.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

# Qwen2-Instruct's chat template (tools left out). Qwen2.5 differs only in its default system text.
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message['role'] == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Thinking markers of the three styles: single tokens in the tiny vocabulary, as in the papers' models.
MARKER_TOKENS = [
    "<think>", "</think>",
    "<|begin_of_thought|>", "<|end_of_thought|>", "<|begin_of_solution|>", "<|end_of_solution|>",
]


def _tokenizer_corpus(extra_files: Iterable[str], seed: int) -> list[str]:
    from reasoning_sft.data.synthetic import generate_records
    from reasoning_sft.data.formatting import THINKING_STYLES, assistant_text

    texts = ["You are a helpful assistant."]
    for i, rec in enumerate(generate_records(num_problems=2000, seed=seed)):
        style = THINKING_STYLES[("s1", "r1", "skyt1")[i % 3]]
        texts += [rec.question, assistant_text(rec, style)]
    for path in extra_files:
        texts += Path(path).read_text(encoding="utf-8").splitlines()
    return texts


def train_tiny_tokenizer(vocab_size: int = 512, corpus_files: list[str] | None = None,
                         seed: int = 0) -> PreTrainedTokenizerFast:
    """Byte-level BPE with Qwen's special tokens and chat template, trained locally.

    Digits are split one per token, as Qwen2's pre-tokenizer does, so arithmetic stays learnable; a
    space before a number joins its first digit (" 64" -> " 6", "4"): shorter sequences, and a
    number's start is a distinctive token to copy from.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?\p{N}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_tokenizer_corpus(corpus_files or [], seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.add_tokens(MARKER_TOKENS)
    fast.chat_template = QWEN_CHAT_TEMPLATE
    fast.padding_side = "right"
    return fast


def load_pretrained_tokenizer(name_or_path: str, trust_remote_code: bool = False,
                              revision: str | None = None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    config_file = Path(name_or_path) / "tokenizer_config.json"
    if config_file.is_file() and json.loads(config_file.read_text()).get("tokenizer_class") in (
            "TokenizersBackend", "PreTrainedTokenizerFast"):
        # A tokenizer saved from a plain `tokenizers` object (the tiny ones): load tokenizer.json as it
        # is. AutoTokenizer would follow config.json's model_type to Qwen2Tokenizer, which rebuilds
        # Qwen's own pre-tokenizer and tokenizes differently from training.
        tok = PreTrainedTokenizerFast.from_pretrained(name_or_path)
    else:
        with _hub_errors_named(name_or_path, "tokenizer"):
            tok = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code,
                                                revision=revision)
    if tok.pad_token is None:
        # Qwen has <|endoftext|>; Llama-style tokenizers have none: pad with eos (labels mask it anyway).
        tok.pad_token = tok.eos_token
    if tok.chat_template is None:
        tok.chat_template = QWEN_CHAT_TEMPLATE
    return tok


@contextlib.contextmanager
def _hub_errors_named(name_or_path: str, what: str):
    """A checkpoint that is neither a local dir nor reachable on the hub: one line naming the key and how
    to get it, not transformers' traceback."""
    try:
        yield
    except OSError as e:
        if Path(name_or_path).is_dir():
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ConfigError(f"model.name_or_path={name_or_path!r}: the {what} is not a local directory and could not be "
                          f"loaded from the hub ({first}); download it where the hub is reachable "
                          "(huggingface-cli download NAME) and set model.name_or_path to that directory, or set "
                          "HF_HUB_OFFLINE=1 once it is in the hub cache") from None


# model.network.architecture of a tiny model: transformers' config and model classes, by name
ARCHITECTURES.add("qwen2", ("Qwen2Config", "Qwen2ForCausalLM"))
ARCHITECTURES.add("llama", ("LlamaConfig", "LlamaForCausalLM"))


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, architecture: str = "qwen2",
                     hidden_size: int = 128, num_hidden_layers: int = 4,
                     num_attention_heads: int = 4, num_key_value_heads: int = 2,
                     intermediate_size: int = 384, max_position_embeddings: int = 4096,
                     tie_word_embeddings: bool = True, attn_implementation: str = "sdpa",
                     dtype: torch.dtype | None = None, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised Qwen2 or Llama model sized for CPU tests and the demo (float32 unless
    `dtype` says otherwise)."""
    import torch
    import transformers
    # the config checked the name before any run dir
    config_cls, model_cls = (getattr(transformers, name) for name in ARCHITECTURES.get(architecture))
    vocab = len(tokenizer)
    config = config_cls(
        vocab_size=(vocab + 63) // 64 * 64,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    return model_cls(config).to(dtype or torch.float32)


def load_pretrained_model(tokenizer: PreTrainedTokenizerBase, name_or_path: str,
                          attn_implementation: str = "sdpa", trust_remote_code: bool = False,
                          revision: str | None = None, dtype: torch.dtype | None = None,
                          seed: int = 0) -> torch.nn.Module:
    """A hub name or a local directory (e.g. a run dir's `final_model`), in bfloat16 unless `dtype` says
    otherwise."""
    import torch
    from transformers import AutoModelForCausalLM
    del seed  # weights come from the checkpoint
    with _hub_errors_named(name_or_path, "model"):
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path, dtype=dtype or torch.bfloat16, attn_implementation=attn_implementation,
            trust_remote_code=trust_remote_code, revision=revision,
        )
    if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())   # ZeRO-3: full size


def load_saved_model(path: str | Path, key: str, dtype: torch.dtype | None = None,
                     adapter_base: torch.nn.Module | None = None, merge_adapter: bool = True):
    """(model, tokenizer) from a saved model directory (a run's final_model or merged_model, any
    from_pretrained dir) or a LoRA adapter directory, whole and unpartitioned: the one loader that
    train (save-and-verify, evaluation under ZeRO-3), evaluate and curate use. An adapter goes on
    `adapter_base` when given (a tiny base rebuilt from its seed), else on the base its config names;
    it is merged unless `merge_adapter` is False. `key` names the setting the path came from."""
    import torch
    from transformers.integrations import unset_hf_deepspeed_config
    unset_hf_deepspeed_config()        # else from_pretrained would partition it again under ZeRO-3
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: no such directory (a saved model or LoRA adapter)")
    dtype = dtype or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    tokenizer = load_pretrained_tokenizer(str(path))
    if not (path / "adapter_config.json").exists():
        return load_pretrained_model(tokenizer, str(path), dtype=dtype), tokenizer
    from peft import AutoPeftModelForCausalLM, PeftModel
    model = (PeftModel.from_pretrained(adapter_base, str(path)) if adapter_base is not None
             else AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=dtype))
    return (model.merge_and_unload() if merge_adapter else model), tokenizer
