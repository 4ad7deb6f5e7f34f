"""Generation throughput, plain and with s1's budget forcing, on the Hugging Face backend and on vLLM,
same tiny model, same prompts.

    .venv/bin/python benchmarks/bench_budget_forcing.py [--backends hf,vllm] [--model-path RUN_DIR/final_model]

Forcing runs thinking to a cap, then forces the delimiter and generates the answer: two generation
calls where plain generation makes one. The model stops neither run early (the output rows of its
end-of-turn and stop markers are zeroed: their logit is 0, below the best of the others), so both
produce the same number of tokens and only the overhead differs. vLLM (`make install-vllm`; its CPU build
here) runs float32 and eager, every prompt in one call per phase, as `eval.backend=vllm` does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial

import torch

from reasoning_sft.data.formatting import THINKING_STYLES, render_prompt
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.schema import BudgetForcingConfig, VllmConfig
from reasoning_sft.evaluation.budget_forcing import generate_with_budget
from reasoning_sft.evaluation.generation import HFEngine, generate
from reasoning_sft.training.models import build_tiny_model, load_pretrained_model, load_pretrained_tokenizer, \
    train_tiny_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-path", default=None, help="a saved model dir; default: a fresh tiny Qwen2")
    ap.add_argument("--backends", default="hf", help="comma-separated: hf, vllm")
    ap.add_argument("--problems", type=int, default=64)
    ap.add_argument("--thinking", type=int, default=192)
    ap.add_argument("--answer", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32, help="the HF backend's batch (vLLM batches itself)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    backends = args.backends.split(",")
    if unknown := set(backends) - {"hf", "vllm"}:
        ap.error(f"--backends: {sorted(unknown)} is not one of hf, vllm")
    if args.model_path:
        tok = load_pretrained_tokenizer(args.model_path)
        model = load_pretrained_model(tok, args.model_path, dtype=torch.float32)
    else:
        tok = train_tiny_tokenizer(512)
        model = build_tiny_model(tok, num_key_value_heads=4, tie_word_embeddings=False)
    model.eval()
    style = THINKING_STYLES["s1"]
    with torch.no_grad():   # never stop early, on either backend: the markers' logits are 0
        for token in (tok.eos_token_id, tok.convert_tokens_to_ids(style.think_stop)):
            model.get_output_embeddings().weight[token] = 0
    prompts = [render_prompt(r.question, tok) for r in generate_records(args.problems, seed=0, split="test")]
    total = args.thinking + args.answer
    bf = BudgetForcingConfig(max_thinking_tokens=args.thinking, max_answer_tokens=args.answer)

    rates = {}
    for backend in backends:
        engine, batch = HFEngine(model, tok), args.batch_size
        if backend == "vllm":
            from reasoning_sft.evaluation.vllm_engine import VLLMEngine
            saved = tempfile.mkdtemp(prefix="bench_vllm_")
            model.save_pretrained(saved)
            tok.save_pretrained(saved)
            engine, batch = VLLMEngine(saved, tok, VllmConfig(dtype="float32", enforce_eager=True)), len(prompts)

        def plain():
            return sum(n for _, n in generate(engine, prompts, total, batch))

        texts = {}

        def forced(on=engine, name="budget forcing"):
            outs = generate_with_budget(on, prompts, style, bf, total, batch)
            texts[name] = [o.text for o in outs]
            return sum(o.thinking_tokens + o.answer_tokens for o in outs)

        runs = [("plain generate", plain), ("budget forcing", forced)]
        if backend == "hf":   # the answer phase re-reading prompt + thinking, as before the KV cache was kept
            runs.append(("  re-reading", partial(forced, HFEngine(model, tok, reuse_cache=False), "  re-reading")))
        for name, fn in runs:
            fn()   # warm-up
            best = 0.0
            for _ in range(args.repeats):
                t = time.perf_counter()
                n = fn()
                best = max(best, n / (time.perf_counter() - t))
            rates[backend, name] = best
            print(f"{backend:>4} {name:>15}: {best:8.0f} generated tok/s  ({n} tokens, best of {args.repeats})")
        print(f"{backend:>4} forcing overhead: "
              f"{100 * (1 - rates[backend, 'budget forcing'] / rates[backend, 'plain generate']):.1f}% (target <= 5%)")
        if backend == "hf":
            print(f"{backend:>4} forcing overhead re-reading: "
                  f"{100 * (1 - rates[backend, '  re-reading'] / rates[backend, 'plain generate']):.1f}%")
            same = texts["budget forcing"] == texts["  re-reading"]
            print(f"{backend:>4} same generations with and without the kept KV cache: {'yes' if same else 'NO'}")
            if not same:
                raise SystemExit("budget forcing's generations changed with the kept KV cache")
        if backend == "vllm":
            engine.close()
    if len(backends) == 2:
        for name in ("plain generate", "budget forcing"):
            print(f"vllm / hf, {name}: {rates['vllm', name] / rates['hf', name]:.2f}x")


if __name__ == "__main__":
    main()
