"""Generation throughput with budget forcing vs plain `generate`, same tiny model, same prompts.

    .venv/bin/python benchmarks/bench_budget_forcing.py [--model-path RUN_DIR/final_model]

Forcing runs thinking to a cap, then forces the delimiter and generates the answer: two `generate`
calls where plain generation makes one. The same model stops neither run early (its end-of-turn and
stop markers are suppressed), so both produce the same number of tokens and only the overhead differs.
"""

from __future__ import annotations

import argparse
import time

import torch

from reasoning_sft.evaluation.budget_forcing import BudgetForcing, generate_with_budget
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.evaluation.generation import generate
from reasoning_sft.data.formatting import THINKING_STYLES, render_prompt
from reasoning_sft.training.models import build_tiny_model, load_pretrained_model, load_pretrained_tokenizer, train_tiny_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-path", default=None, help="a saved model dir; default: a fresh tiny Qwen2")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--thinking", type=int, default=192)
    ap.add_argument("--answer", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.model_path:
        tok = load_pretrained_tokenizer(args.model_path)
        model = load_pretrained_model(tok, args.model_path, dtype=torch.float32)
    else:
        tok = train_tiny_tokenizer(512)
        model = build_tiny_model(tok, num_key_value_heads=4)
    model.eval()
    style = THINKING_STYLES["s1"]
    never_stop = [tok.eos_token_id, tok.convert_tokens_to_ids(style.think_stop)]
    model.lm_head.register_forward_hook(lambda m, i, out: out.index_fill(-1, torch.tensor(never_stop), -1e4))
    prompts = [render_prompt(r.question, tok) for r in generate_records(args.problems, seed=0, split="test")]
    total = args.thinking + args.answer

    def plain():
        return sum(n for _, n in generate(model, tok, prompts, total, args.batch_size))

    def forced():
        outs = generate_with_budget(model, tok, prompts, style, BudgetForcing(max_thinking_tokens=args.thinking,
                                    max_answer_tokens=args.answer), total, args.batch_size)
        return sum(o.thinking_tokens + o.answer_tokens for o in outs)

    rates = {}
    for name, fn in [("plain generate", plain), ("budget forcing", forced)]:
        fn()   # warm-up
        best = 0.0
        for _ in range(args.repeats):
            t = time.perf_counter()
            n = fn()
            best = max(best, n / (time.perf_counter() - t))
        rates[name] = best
        print(f"{name:>15}: {best:8.0f} generated tok/s  ({n} tokens, best of {args.repeats})")
    print(f"forcing overhead: {100 * (1 - rates['budget forcing'] / rates['plain generate']):.1f}% "
          f"(target < 10%)")


if __name__ == "__main__":
    main()
