"""Data-parallel evaluation (`eval.data_parallel_size`): one engine in this process against N replicas
(evaluation/replicas.py), the same prompts, the same Evaluator.generate an evaluation runs.

    .venv/bin/python benchmarks/bench_eval_parallel.py [--replicas 2] [--model-path RUN_DIR/final_model]

The one-process run uses every core as torch threads (what `eval.data_parallel_size=1` does), then,
for reference, one thread; the replicas split the cores (here: one thread each). The model never stops early (its end-of-turn row is
zeroed), so both runs generate the same number of tokens. Prints the wall time of each (the replicas'
start-up, spawning and loading the model, apart), generated tok/s, the speed-up, and whether the
generations are the same (they must be: a replica runs the one-process run's own batches).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from functools import partial

import torch

from reasoning_sft.curate import solver_engine
from reasoning_sft.data.formatting import render_prompt
from reasoning_sft.data.synthetic import generate_records
from reasoning_sft.evaluation.evaluator import Evaluator
from reasoning_sft.evaluation.replicas import ReplicaPool
from reasoning_sft.schema import EvalConfig
from reasoning_sft.training.models import build_tiny_model, train_tiny_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-path", default=None, help="a saved model dir; default: a fresh tiny Qwen2")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--problems", type=int, default=96)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.0, help="> 0: sampled, each sample seeded by its identity")
    args = ap.parse_args()
    if args.replicas < 2:
        ap.error("--replicas: at least 2 (1 is the run it is compared with)")
    path = args.model_path
    if path is None:
        path = tempfile.mkdtemp(prefix="bench_eval_parallel_")
        tok = train_tiny_tokenizer(512)
        model = build_tiny_model(tok, tie_word_embeddings=False)
        with torch.no_grad():   # never ends its turn: both runs generate max_new_tokens per prompt
            model.get_output_embeddings().weight[tok.eos_token_id] = 0
        model.save_pretrained(path)
        tok.save_pretrained(path)
    ev = EvalConfig(tasks=[], max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                    temperature=args.temperature)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)

    one = Evaluator(ev, "s1", None, seed=0).attach(solver_engine(path))
    prompts = [render_prompt(r.question, one.engine.tokenizer)
               for r in generate_records(args.problems, seed=0, split="test")]
    one.generate(prompts[:args.batch_size])   # warm-up
    t = time.perf_counter()
    single = one.generate(prompts)
    single_s = time.perf_counter() - t
    torch.set_num_threads(1)                   # the same process on one core: what a replica has
    t = time.perf_counter()
    one_thread = one.generate(prompts)
    one_thread_s = time.perf_counter() - t

    t = time.perf_counter()
    pool = ReplicaPool(partial(solver_engine, path), args.replicas, one.engine.tokenizer, batches_itself=False)
    start_s = time.perf_counter() - t
    try:
        many = Evaluator(ev, "s1", None, seed=0).attach(pool)
        many.generate(prompts[:args.batch_size * args.replicas])   # warm-up, each replica once
        t = time.perf_counter()
        spread = many.generate(prompts)
        spread_s = time.perf_counter() - t
    finally:
        pool.close()

    tokens = sum(r["generated_tokens"] for r in single)
    per = pool.placements[0].threads
    print(f"{args.problems} prompts x {args.max_new_tokens} new tokens, batch {args.batch_size}, "
          f"{'sampled' if args.temperature > 0 else 'greedy'}, {cores} cores")
    print(f"one process ({cores} threads): {single_s:.2f} s, {tokens / single_s:,.0f} generated tok/s")
    print(f"one process (1 thread, for reference): {one_thread_s:.2f} s, {tokens / one_thread_s:,.0f} generated tok/s")
    print(f"{args.replicas} replicas ({per} thread(s) each): {spread_s:.2f} s, "
          f"{sum(r['generated_tokens'] for r in spread) / spread_s:,.0f} generated tok/s "
          f"(start-up {start_s:.2f} s, not counted)")
    print(f"speed-up: {single_s / spread_s:.2f}x ({single_s / (spread_s + start_s):.2f}x with start-up)")
    same = single == spread == one_thread
    print(f"same generations: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit("the replicas' generations differ from one process's")


if __name__ == "__main__":
    main()
