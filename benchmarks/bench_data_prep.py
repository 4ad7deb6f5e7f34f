"""Data preparation speed: the train stage's data path vs the tokenizer's own batch encode.

    .venv/bin/python benchmarks/bench_data_prep.py [--records 17000] [--model tiny]

The 291 bundled R1 traces are replicated (new ids, a copy number in question and trace, so every text
is unique) to --records records in a jsonl file; ours is
`reasoning_sft.training.recipe.prepare_examples` on it (load, select, card with trace-token stats, chat
rendering, tokenization with assistant-only labels); the reference is `tokenizer(texts)` (one batch
call, Rust threads on every core) on the same rendered conversations. Prints records/s, tokens/s and
the ratio (target >= 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=17000)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--vocab", type=int, default=4096)
    args = ap.parse_args()

    from hydra.utils import instantiate
    from conftest import compose_config
    from reasoning_sft.data.formatting import get_style, render_chat
    from reasoning_sft.training.recipe import prepare_examples
    from reasoning_sft.config import parse_groups

    source = ROOT.parent / "shared" / "data" / "r1_distill_qwen32b_aime_traces.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r1_replicated.jsonl"
        with open(path, "w") as f:
            for i in range(args.records):
                row = rows[i % len(rows)]   # every copy made unique: no cache can skip a repeat
                f.write(json.dumps({**row, "id": f"{row['id']}-{i}", "question": f"({i}) {row['question']}",
                                    "solution": f"Copy {i}. {row['solution']}"}) + "\n")
        # A 4k BPE trained on the traces (as the training benchmark): ~3k tokens per trace, like a real
        # tokenizer; the default 512-token vocabulary would split them ~3x finer.
        cfg = compose_config([f"model={args.model}", f"model.tokenizer.vocab_size={args.vocab}",
                              f"+model.tokenizer.corpus_files=[{source}]", "data=r1_traces",
                              f"data.source.path={path}", "data.max_seq_len=65536"], "train", Path(tmp) / "run")
        tokenizer = instantiate(cfg.model.tokenizer)
        print(f"{args.records} records, tokenizer {type(tokenizer).__name__} ({len(tokenizer)} tokens), "
              f"{os.cpu_count()} cores")

        t0 = time.perf_counter()
        groups = parse_groups(cfg)    # the config read once, as the recipe reads it
        examples, card = prepare_examples(groups, tokenizer)
        ours = time.perf_counter() - t0
        tokens = sum(len(e["input_ids"]) for e in examples)

        from reasoning_sft.data.loaders import load_r1
        records = load_r1(str(path))
        style = get_style(cfg.data.format.thinking_style)
        texts = ["".join(render_chat(r, tokenizer, style)) for r in records]
        t0 = time.perf_counter()
        ref_tokens = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
        ref = time.perf_counter() - t0

    print(f"ours (prepare_examples):   {len(examples) / ours:10,.0f} records/s  {tokens / ours:12,.0f} tokens/s"
          f"  ({ours:.2f} s, {tokens:,} tokens)")
    print(f"tokenizer batch encode:    {len(texts) / ref:10,.0f} records/s  {ref_tokens / ref:12,.0f} tokens/s"
          f"  ({ref:.2f} s, {ref_tokens:,} tokens; rendering excluded)")
    print(f"ratio (tokens/s):          {(tokens / ours) / (ref_tokens / ref):.2f}  (target >= 0.8)")


if __name__ == "__main__":
    main()
