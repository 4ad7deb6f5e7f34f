"""Training throughput: our packed trainer vs TRL's SFTTrainer (pad-to-longest and padding-free).

    .venv/bin/pip install -e '.[bench]'        # TRL, for this benchmark only
    .venv/bin/python benchmarks/bench_training.py [--samples 48] [--batch 8]

Same tiny Qwen2 (hidden 128, 2 layers, 4 heads / 2 KV heads, fp32), same initial weights, same data:
the first --samples bundled R1 traces, tokenized once (4k byte-level BPE trained on them, R1 format,
truncated at --max-length tokens, 4,096), one epoch each, AdamW, on every core of this machine. Reported:
real (non-pad) tokens per second, the fraction of computed tokens that are real, and ours / each peer.
Ours: transformers.Trainer + reasoning_sft.training.packing (best-fit rows, one flat row per micro batch,
per-sample causal SDPA). TRL pad-to-longest: batch of --batch samples padded to the longest.
TRL padding_free: the batch flattened into one row (on CPU its attention is dense over the row).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
R1 = ROOT.parent / "shared" / "data" / "r1_distill_qwen32b_aime_traces.jsonl"
os.environ.setdefault("WANDB_MODE", "disabled")


class CountingCollator:
    """Wraps a collator; counts computed vs real tokens of every batch it makes."""

    def __init__(self, collate):
        self.collate, self.computed, self.real = collate, 0, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.computed += batch["input_ids"].numel()
        mask = batch.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else batch["input_ids"].numel()
        return batch


def common_args(out: Path, batch: int, **extra):
    return dict(output_dir=str(out), per_device_train_batch_size=batch, num_train_epochs=1, learning_rate=1e-3,
                lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no", report_to=["none"],
                use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True, **extra)


def run_ours(model, examples, tokenizer, out: Path, pack_length: int):
    from transformers import Trainer, TrainingArguments
    from reasoning_sft.training.packing import PackedCollator, pack_examples, use_packed_attention
    bins, stats = pack_examples(examples, pack_length, seed=0)
    use_packed_attention(model)
    collator = CountingCollator(PackedCollator())
    trainer = Trainer(model=model, args=TrainingArguments(**common_args(out, 1, remove_unused_columns=False)),
                      train_dataset=[{"samples": b} for b in bins], data_collator=collator,
                      processing_class=tokenizer)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0, collator, f"{stats['bins']} rows of <= {pack_length} tokens"


def run_trl(model, examples, tokenizer, out: Path, batch: int, padding_free: bool, max_length: int):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    data = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples]})
    # inputs are already truncated at max_length (TRL refuses max_length with padding_free and no packing)
    args = SFTConfig(**common_args(out, batch), max_length=None if padding_free else max_length,
                     padding_free=padding_free, packing=False,
                     remove_unused_columns=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    trainer.data_collator = CountingCollator(trainer.data_collator)
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0, trainer.data_collator, f"batches of {batch}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pack-length", type=int, default=16384)
    ap.add_argument("--max-length", type=int, default=4096, help="traces truncated at this many tokens")
    ap.add_argument("--only", choices=["ours", "pad", "padding_free"], default=None)
    args = ap.parse_args()

    import tempfile
    from reasoning_sft.data.loaders import load_r1
    from reasoning_sft.data.formatting import THINKING_STYLES, tokenize_records
    from reasoning_sft.training.models import build_tiny_model, train_tiny_tokenizer

    tokenizer = train_tiny_tokenizer(vocab_size=4096, corpus_files=[str(R1)])
    records = list(load_r1(str(R1)))[: args.samples]
    examples, _ = tokenize_records(records, tokenizer, THINKING_STYLES["r1"], args.max_length, "truncate")
    real_tokens = sum(len(e["input_ids"]) for e in examples)
    print(f"{len(examples)} R1 traces, {real_tokens:,} tokens (mean {real_tokens / len(examples):,.0f}), "
          f"vocab {len(tokenizer)}, torch threads {torch.get_num_threads()}")

    def model():
        return build_tiny_model(tokenizer, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=2, intermediate_size=384, seed=0)

    runs = {"ours (packed, per-sample attention)": lambda out: run_ours(model(), examples, tokenizer, out,
                                                                         args.pack_length),
            "TRL SFTTrainer pad-to-longest": lambda out: run_trl(model(), examples, tokenizer, out, args.batch, False,
                                                                        args.max_length),
            "TRL SFTTrainer padding_free": lambda out: run_trl(model(), examples, tokenizer, out, args.batch, True,
                                                                      args.max_length)}
    if args.only:
        runs = {k: v for k, v in runs.items() if args.only in k.lower().replace(" ", "_").replace("-", "_")
                or (args.only == "ours" and k.startswith("ours"))}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():
            seconds, counter, how = run(Path(tmp) / name.split()[0])
            results[name] = counter.real / seconds
            print(f"{name:38s} {counter.real / seconds:9,.0f} real tok/s   real fraction "
                  f"{counter.real / counter.computed:.3f}   {seconds:6.1f} s   ({how})")
    ours = [v for k, v in results.items() if k.startswith("ours")]
    for name, value in results.items():
        if ours and not name.startswith("ours"):
            print(f"ours / {name}: {ours[0] / value:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
