"""Memory and throughput over trace length: our packed training vs TRL's padding-free configuration.

    .venv/bin/pip install -e '.[bench]'        # TRL, for this benchmark only
    .venv/bin/python benchmarks/bench_long_traces.py [--lengths 2048,4096,8192,16384,32768] [--steps 4]

For each pack length L, both trainers see the same rows: L tokens of real R1 traces per optimizer
step (traces of at least min(L, 4096) tokens cut to that length, L / that many per row), the same
tiny Qwen2 (hidden 128, 2 layers, 4 heads / 2 KV heads, fp32, SDPA) from the same weights, AdamW,
`--steps` steps, glibc keeping freed memory (reasoning_sft/training/cpu_allocator.py, as the training stage
on CPU). Ours: the training stage's packing collator, per-sample attention and chunked loss
(`trainer.loss_chunk_tokens` default). Each run is its own process, so its peak RSS is its own. Printed per length: peak
RSS (GB) and real tokens/s of each, and the two bounds of issue 18 for ours: peak memory from 8k to
32k at most 3.2x, tokens/s at 32k at least 0.85x of 4k.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
R1 = ROOT.parent / "shared" / "data" / "r1_distill_qwen32b_aime_traces.jsonl"
os.environ.setdefault("WANDB_MODE", "disabled")


def rows_of(length: int, steps: int):
    """(tokenizer, examples, per_row): traces cut to min(length, 4096) tokens, enough for `steps` rows."""
    from reasoning_sft.data.loaders import load_r1
    from reasoning_sft.data.formatting import THINKING_STYLES, tokenize_records
    from reasoning_sft.training.models import train_tiny_tokenizer
    tokenizer = train_tiny_tokenizer(vocab_size=4096, corpus_files=[str(R1)])
    cut = min(length, 4096)
    examples, _ = tokenize_records(list(load_r1(str(R1))), tokenizer, THINKING_STYLES["r1"], cut, "truncate")
    full = [e for e in examples if len(e["input_ids"]) == cut]
    per_row = length // cut
    need = per_row * steps
    if len(full) < need:
        raise SystemExit(f"only {len(full)} traces reach {cut} tokens; {need} needed")
    return tokenizer, full[:need], per_row


def one_run(method: str, length: int, steps: int) -> dict:
    import torch
    from transformers import TrainingArguments

    from reasoning_sft.training.cpu_allocator import keep_freed_memory
    from reasoning_sft.training.models import build_tiny_model
    keep_freed_memory()   # as the training stage does on CPU; for both, so the trainers are compared
    tokenizer, examples, per_row = rows_of(length, steps)
    model = build_tiny_model(tokenizer, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=384, seed=0)
    common = dict(per_device_train_batch_size=1 if method == "ours" else per_row, max_steps=steps, learning_rate=1e-3,
                  lr_scheduler_type="constant", logging_steps=10_000, save_strategy="no", report_to=["none"],
                  use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True)
    with tempfile.TemporaryDirectory() as out:
        if method == "ours":
            from transformers import Trainer

            from reasoning_sft.schema import TrainerConfig
            from reasoning_sft.training.chunked_loss import add_chunked_loss
            from reasoning_sft.training.packing import PackedCollator, use_packed_attention
            use_packed_attention(model)
            add_chunked_loss(model, TrainerConfig().loss_chunk_tokens)   # the trainer's default, from its one place
            rows = [{"samples": examples[i * per_row:(i + 1) * per_row]} for i in range(steps)]
            trainer = Trainer(model=model, args=TrainingArguments(output_dir=out, remove_unused_columns=False, **common),
                              train_dataset=rows, data_collator=PackedCollator(), processing_class=tokenizer)
        else:
            from datasets import Dataset
            from trl import SFTConfig, SFTTrainer
            data = Dataset.from_dict({"input_ids": [e["input_ids"] for e in examples]})
            trainer = SFTTrainer(model=model, args=SFTConfig(output_dir=out, max_length=None, padding_free=True,
                                                             packing=False, shuffle_dataset=False, **common),
                                 train_dataset=data, processing_class=tokenizer)
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"method": method, "length": length, "seconds": seconds, "tokens_per_s": length * steps / seconds,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="2048,4096,8192,16384,32768")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--methods", default="ours,trl_padding_free")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one[0], int(args.one[1]), args.steps)))
        return 0
    results: dict = {}
    failed = 0
    for length in (int(x) for x in args.lengths.split(",")):
        for method in args.methods.split(","):
            proc = subprocess.run([sys.executable, __file__, "--one", method, str(length), "--steps", str(args.steps)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(f"{method:18s} {length:6d}: failed ({proc.stderr.strip().splitlines()[-1][:160]})", flush=True)
                failed += 1
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[(method, length)] = r
            print(f"{method:18s} {length:6d} tokens/row: peak RSS {r['peak_rss_gb']:5.2f} GB   "
                  f"{r['tokens_per_s']:8,.0f} real tok/s   {r['seconds']:6.1f} s", flush=True)
    ours = {length: r for (m, length), r in results.items() if m == "ours"}
    if 8192 in ours and 32768 in ours:
        print(f"ours: peak RSS 32k / 8k = {ours[32768]['peak_rss_gb'] / ours[8192]['peak_rss_gb']:.2f}x (bound 3.2x)")
    if 4096 in ours and 32768 in ours:
        print(f"ours: tokens/s 32k / 4k = {ours[32768]['tokens_per_s'] / ours[4096]['tokens_per_s']:.2f}x (bound 0.85x)")
    for (m, length), r in sorted(results.items()):
        if m != "ours" and length in ours:
            print(f"ours / {m} at {length}: {ours[length]['tokens_per_s'] / r['tokens_per_s']:.2f}x tokens/s, "
                  f"{r['peak_rss_gb'] / ours[length]['peak_rss_gb']:.2f}x less memory")
    return 1 if failed else 0   # a run that failed is a benchmark that does not measure: say so in the exit code


if __name__ == "__main__":
    sys.exit(main())
