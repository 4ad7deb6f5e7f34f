"""Memory plan: `python -m reasoning_sft.plan [experiment=NAME] [overrides]`.

For the composed training config, per GPU: model states under the configured ZeRO stage (DeepSpeed's
own estimators, with and without CPU offload), activations at `data.max_seq_len` with and without
gradient checkpointing, the logits, tokens per step, and whether it fits `trainer.gpu_memory_gb`.
Parameters are counted exactly by building the architecture on the meta device (no download).

Activation model (bf16, flash/SDPA attention, which keeps no seq x seq matrix), per token per layer:
attention keeps its input, normed input, q, k, v and output (4h + 2kv); the SwiGLU MLP keeps its
input, normed input, gate, up, act(gate) and their product (2h + 4i). With checkpointing only each
layer's input (h) is kept, plus one layer recomputed during backward. Logits: HF upcasts them to
fp32 for the loss and cross-entropy keeps an fp32 log-softmax: 2 + 4 + 4 bytes per token per vocab
entry, for one chunk of `trainer.loss_chunk_tokens` (reasoning_sft/training/chunked_loss.py), or none with
Liger's fused linear cross-entropy (`trainer.liger_kernel`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Optional

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from reasoning_sft.config import validate_train_config, world_size
from reasoning_sft.rundir import finish_stage, open_run_dir
from reasoning_sft.cli import run_cli

GB = 1e9


@dataclass
class Architecture:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    model_type: str = "qwen2"
    head_dim: Optional[int] = None       # where it is not hidden_size / num_attention_heads (Gemma 2)


def architecture(cfg: DictConfig) -> Architecture:
    """`model.architecture` (the hub models' config.json), or the tiny model's network settings."""
    if cfg.model.architecture is not None:
        return Architecture(**cfg.model.architecture)
    net = cfg.model.network
    tokenizer = instantiate(cfg.model.tokenizer)
    return Architecture(net.hidden_size, net.intermediate_size, net.num_hidden_layers, net.num_attention_heads,
                        net.num_key_value_heads, (len(tokenizer) + 63) // 64 * 64,
                        net.get("tie_word_embeddings", True), net.get("architecture", "qwen2"))


def architecture_parameters(arch: Architecture) -> tuple[int, int]:
    """(total, largest single parameter) of the architecture, built on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.for_model(**{k: v for k, v in asdict(arch).items() if v is not None})
    import torch
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    sizes = [p.numel() for p in model.parameters()]
    return sum(sizes), max(sizes)


def lora_trainable(arch: Architecture, rank: int) -> int:
    """LoRA on every linear layer of every block: r x (in + out) per layer."""
    head_dim = arch.head_dim or arch.hidden_size // arch.num_attention_heads
    h, i, kv, q = arch.hidden_size, arch.intermediate_size, head_dim * arch.num_key_value_heads, \
        head_dim * arch.num_attention_heads
    per_layer = (h + q) + (h + kv) * 2 + (q + h) + (h + i) * 2 + (i + h)
    return rank * per_layer * arch.num_hidden_layers


def model_state_bytes(cfg: DictConfig, total: int, largest: int, trainable: int, offload: bool) -> dict:
    """Per-GPU bytes of parameters, gradients and optimizer states (and CPU bytes per node)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    gpus, nodes = int(cfg.trainer.nproc_per_node), int(cfg.trainer.nnodes)
    stage = cfg.deepspeed.config.zero_optimization.stage if cfg.deepspeed.config is not None else 0
    frozen = total - trainable
    if stage == 3:
        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(trainable, largest, gpus, nodes, cpu_offload=offload,
                                                            cpu_offload_params=offload)
        gpu += 0 if offload else 2 * frozen // (gpus * nodes)   # frozen LoRA base: bf16, partitioned
    elif stage in (1, 2):
        cpu, gpu = estimate_zero2_model_states_mem_needs(trainable, gpus, nodes, cpu_offload=offload)
        gpu += 2 * frozen
    else:   # plain data parallel: every GPU holds everything (bf16 weights + fp32 master, grads, Adam)
        cpu, gpu = 0, 18 * trainable + 2 * frozen
    return {"gpu": gpu, "cpu_per_node": cpu}


def activation_bytes(arch: Architecture, tokens: int, elem: int, checkpointing: bool) -> int:
    h, i, L = arch.hidden_size, arch.intermediate_size, arch.num_hidden_layers
    kv = h // arch.num_attention_heads * arch.num_key_value_heads
    per_layer = 6 * h + 2 * kv + 4 * i
    working = 2 * i * tokens * elem            # the widest gradient in flight
    if checkpointing:
        return L * h * tokens * elem + per_layer * tokens * elem + working
    return L * per_layer * tokens * elem + working


def logits_bytes(arch: Architecture, tokens: int, elem: int, t: DictConfig, sp: int) -> int:
    """Logits, their fp32 copy and fp32 log-softmax of the tokens scored at once: none with Liger's fused
    kernel, one chunk with the chunked loss (which sequence parallelism, splitting them, does not use)."""
    if t.liger_kernel:
        return 0
    chunk = t.loss_chunk_tokens
    scored = min(tokens, chunk) if chunk and sp == 1 else tokens
    return scored * arch.vocab_size * (elem + 4 + 4)


def ulysses_buffer_bytes(arch: Architecture, tokens: int, elem: int, sp: int) -> int:
    """Ulysses' all-to-all of one layer in flight: q, k, v and the output, sent and received (each rank
    exchanges its token slice of all heads for all tokens of its heads: the same size, T / sp)."""
    if sp == 1:
        return 0
    kv = arch.hidden_size // arch.num_attention_heads * arch.num_key_value_heads
    return 2 * (2 * arch.hidden_size + 2 * kv) * (tokens // sp) * elem


def per_gpu_bytes(cfg: DictConfig, arch: Architecture, total: int, largest: int, trainable: int,
                  seq_len: int, sp: int, offload: bool) -> int:
    """GPU bytes of one configuration: model states over every GPU (ZeRO partitions over the whole
    world, sequence-parallel ranks included), activations and logits of T / sp tokens, SP buffers."""
    t = cfg.trainer
    elem = 4 if t.precision == "fp32" else 2
    tokens = t.micro_batch_size * seq_len
    return (model_state_bytes(cfg, total, largest, trainable, offload)["gpu"]
            + activation_bytes(arch, tokens // sp, elem, bool(t.gradient_checkpointing))
            + logits_bytes(arch, tokens // sp, elem, t, sp) + ulysses_buffer_bytes(arch, tokens, elem, sp))


LENGTHS = [2 ** k for k in range(13, 21)]   # 8k .. 1M tokens


def longest_trace_table(cfg: DictConfig, arch: Architecture, total: int, largest: int, trainable: int,
                        offload: bool) -> list[dict]:
    """The longest trace (8k..1M, powers of two) one sample fits on 8 and 16 GPUs of trainer.gpu_memory_gb,
    without and with sequence parallelism (over as many of them as divide the attention heads: 8 for
    Qwen2.5-32B's 40), as configured otherwise."""
    from omegaconf import open_dict
    rows = []
    for gpus in (8, 16):
        c = cfg.copy()
        with open_dict(c):
            c.trainer.nproc_per_node, c.trainer.nnodes = 8, gpus // 8
        for sp in (1, math.gcd(gpus, arch.num_attention_heads)):   # Ulysses splits the heads over the SP group
            fits = [n for n in LENGTHS if per_gpu_bytes(c, arch, total, largest, trainable, n, sp, offload)
                    <= cfg.trainer.gpu_memory_gb * GB]
            rows.append({"gpus": gpus, "sequence_parallel_size": sp, "longest_trace": max(fits) if fits else None})
    return rows


def make_plan(cfg: DictConfig) -> dict:
    validate_train_config(cfg)
    arch = architecture(cfg)
    total, largest = architecture_parameters(arch)
    trainable = lora_trainable(arch, cfg.peft.config.r) if cfg.peft.enabled else total
    t = cfg.trainer
    sp = t.sequence_parallel_size
    elem = 4 if t.precision == "fp32" else 2
    tokens = t.micro_batch_size * cfg.data.max_seq_len
    zero = cfg.deepspeed.config.zero_optimization if cfg.deepspeed.config is not None else {}
    offload_configured = "offload_param" in zero or "offload_optimizer" in zero
    states = {"no_offload": model_state_bytes(cfg, total, largest, trainable, offload=False),
              "offload": model_state_bytes(cfg, total, largest, trainable, offload=True)}
    local = tokens // sp                      # each sequence-parallel rank holds T / sp of the tokens
    acts = {"checkpointing": activation_bytes(arch, local, elem, True),
            "no_checkpointing": activation_bytes(arch, local, elem, False)}
    logits = logits_bytes(arch, local, elem, t, sp)
    sp_buffers = ulysses_buffer_bytes(arch, tokens, elem, sp)
    configured = (states["offload" if offload_configured else "no_offload"]["gpu"]
                  + acts["checkpointing" if t.gradient_checkpointing else "no_checkpointing"] + logits + sp_buffers)
    budget = t.gpu_memory_gb * GB
    host_needed = states["offload" if offload_configured else "no_offload"]["cpu_per_node"]
    host_budget = t.host_memory_gb * GB
    advice = []
    if host_needed > host_budget:
        advice.append(f"more CPU memory per node than trainer.host_memory_gb={t.host_memory_gb}, or more nodes "
                      "(offloaded optimizer states divide over the nodes)")
    if configured > budget:
        if not t.gradient_checkpointing and states["no_offload"]["gpu"] + acts["checkpointing"] + logits <= budget:
            advice.append("trainer.gradient_checkpointing=true")
        if logits > 0.25 * budget:
            advice.append("trainer.loss_chunk_tokens=2048 or, on GPUs with liger-kernel, trainer.liger_kernel=true "
                          "(the logits are never materialised at once)")
        if not offload_configured:
            advice.append("deepspeed=zero3_offload or more GPUs")
        if sp == 1 and arch.num_attention_heads % 2 == 0 and world_size(cfg.trainer) > 1:
            advice.append("trainer.sequence_parallel_size=N (Ulysses: activations and logits divide by N)")
        advice.append("a smaller data.max_seq_len")
    return {
        "model": cfg.model.name, "architecture": asdict(arch),
        "parameters": total, "trainable_parameters": trainable, "largest_parameter": largest,
        "gpus": world_size(cfg.trainer), "zero_stage": zero.get("stage", 0) if zero else 0, "offload": offload_configured,
        "precision_bytes": elem, "tokens_per_micro_batch": tokens, "sequence_parallel_size": sp,
        "tokens_per_gpu": local, "sequence_parallel_buffers_gb": round(sp_buffers / GB, 2),
        "longest_trace": longest_trace_table(cfg, arch, total, largest, trainable, offload_configured),
        "tokens_per_step": t.global_batch_size * cfg.data.max_seq_len,
        "model_states_gb": {k: {kk: round(vv / GB, 2) for kk, vv in v.items()} for k, v in states.items()},
        "activations_gb": {k: round(v / GB, 2) for k, v in acts.items()},
        "logits_gb": round(logits / GB, 2),
        "per_gpu_gb": round(configured / GB, 2), "gpu_memory_gb": t.gpu_memory_gb,
        "host_gb_per_node": round(host_needed / GB, 2), "host_memory_gb": t.host_memory_gb,
        "fits_gpu": configured <= budget, "fits_host": host_needed <= host_budget,
        "fits": configured <= budget and host_needed <= host_budget, "advice": advice,
    }


def run_plan(cfg: DictConfig) -> dict:
    t0 = time.time()
    plan = make_plan(cfg)
    run_dir = open_run_dir(cfg)
    return finish_stage(run_dir, "plan", **plan, total_seconds=round(time.time() - t0, 1))


def print_plan(p: dict) -> None:
    ms, act = p["model_states_gb"], p["activations_gb"]
    print(f"\nmodel:            {p['model']}: {p['parameters'] / 1e9:.3f}B parameters "
          f"({p['trainable_parameters'] / 1e9:.3f}B trainable)")
    print(f"GPUs:             {p['gpus']}, ZeRO stage {p['zero_stage']}, offload {'on' if p['offload'] else 'off'}")
    print(f"tokens:           {p['tokens_per_micro_batch']:,} per micro batch, {p['tokens_per_step']:,} per step (at most)")
    print(f"model states:     {ms['no_offload']['gpu']:.1f} GB/GPU without offload; with offload "
          f"{ms['offload']['gpu']:.1f} GB/GPU + {ms['offload']['cpu_per_node']:.0f} GB CPU per node")
    print(f"activations:      {act['checkpointing']:.1f} GB with checkpointing, "
          f"{act['no_checkpointing']:.1f} GB without")
    print(f"logits:           {p['logits_gb']:.1f} GB")
    if p["sequence_parallel_size"] > 1:
        print(f"sequence parallel: {p['sequence_parallel_size']} GPUs per sequence, {p['tokens_per_gpu']:,} tokens "
              f"per GPU, all-to-all buffers {p['sequence_parallel_buffers_gb']:.1f} GB")
    print("longest trace:    " + "; ".join(
        f"{r['gpus']} GPUs SP={r['sequence_parallel_size']}: "
        + (f"{r['longest_trace'] // 1024}k" if r["longest_trace"] else "< 8k")
        for r in p["longest_trace"]) + f" (one sample per GPU, {p['gpu_memory_gb']} GB each, as configured)")
    print(f"as configured:    {p['per_gpu_gb']:.1f} GB per GPU: {'fits' if p['fits_gpu'] else 'does NOT fit'} in "
          f"{p['gpu_memory_gb']} GB; {p['host_gb_per_node']:.0f} GB CPU per node: "
          f"{'fits' if p['fits_host'] else 'does NOT fit'} in {p['host_memory_gb']} GB")
    for a in p["advice"]:
        print(f"  try:            {a}")
    print(f"plan:             {p['run_dir']}/summary.json")
    if not p["fits"]:
        sys.exit(1)    # a script can gate a launch on the plan


@hydra.main(version_base="1.3", config_path="../conf", config_name="plan")
def main(cfg: DictConfig) -> None:
    run_cli(run_plan, cfg, print_plan)


if __name__ == "__main__":
    main()
