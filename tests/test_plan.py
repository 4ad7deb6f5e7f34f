"""The memory plan on the paper experiments and on a tiny model (exact parameter counts)."""

from __future__ import annotations

import pytest

from reasoning_sft.plan import architecture, architecture_parameters, make_plan, run_plan

# Published sizes of Qwen2.5 (billions of parameters, from the model cards).
PUBLISHED = {"qwen2.5_0.5b": 0.49, "qwen2.5_1.5b": 1.54, "qwen2.5_7b": 7.61, "qwen2.5_14b": 14.7, "qwen2.5_32b": 32.5}


@pytest.mark.parametrize("model", sorted(PUBLISHED))
def test_parameter_counts_match_the_model_cards(make_cfg, model):
    arch = architecture(make_cfg([f"model={model}"]))
    total, largest = architecture_parameters(arch)
    assert total / 1e9 == pytest.approx(PUBLISHED[model], rel=0.02)
    assert largest == arch.vocab_size * arch.hidden_size          # the embedding is the largest


def test_s1_32b_at_32k_fits_16_gpus_and_not_one(make_cfg):
    plan = make_plan(make_cfg(["experiment=s1k_qwen32b"]))
    assert plan["gpus"] == 16 and plan["zero_stage"] == 3 and plan["tokens_per_micro_batch"] == 32768
    assert plan["fits"] and plan["per_gpu_gb"] <= 80
    # ZeRO-3 model states: 18 bytes per parameter over 16 GPUs, plus the largest layer gathered in fp32.
    assert plan["model_states_gb"]["no_offload"]["gpu"] == pytest.approx(
        (18 * plan["parameters"] / 16 + 4 * plan["largest_parameter"]) / 1e9, abs=0.01)
    assert plan["activations_gb"]["no_checkpointing"] > 10 * plan["activations_gb"]["checkpointing"]

    one = make_plan(make_cfg(["experiment=s1k_qwen32b", "trainer.nproc_per_node=1", "trainer.nnodes=1"]))
    assert not one["fits"] and one["model_states_gb"]["no_offload"]["gpu"] > 500
    # Without a fused or chunked cross-entropy the 32k logits alone (~50 GB) break it, and the plan says why.
    unfused = make_plan(make_cfg(["experiment=s1k_qwen32b", "trainer.liger_kernel=false", "trainer.loss_chunk_tokens=0"]))
    assert not unfused["fits"] and unfused["logits_gb"] == pytest.approx(32768 * 152064 * 10 / 1e9, abs=0.01)
    assert any("liger_kernel" in a and "loss_chunk_tokens" in a for a in unfused["advice"])
    chunked = make_plan(make_cfg(["experiment=s1k_qwen32b", "trainer.liger_kernel=false"]))   # 2048 tokens a chunk
    assert chunked["fits"] and chunked["logits_gb"] == pytest.approx(2048 * 152064 * 10 / 1e9, abs=0.01)
    nockpt = make_plan(make_cfg(["experiment=s1k_qwen32b", "trainer.gradient_checkpointing=false"]))
    assert not nockpt["fits"] and "trainer.gradient_checkpointing=true" in nockpt["advice"]


def test_sky_t1_offload_and_lora_plans(make_cfg):
    full = make_plan(make_cfg(["experiment=skyt1_qwen32b"]))
    assert full["offload"] and full["fits"]
    assert full["model_states_gb"]["offload"]["cpu_per_node"] > 400        # Adam states live in CPU memory
    lora = make_plan(make_cfg(["experiment=skyt1_qwen32b_lora"]))
    assert 0 < lora["trainable_parameters"] < 0.03 * lora["parameters"]


def test_zero3_halves_model_states_from_one_to_two_ranks(make_cfg):
    plans = [make_plan(make_cfg(["model=qwen2.5_7b", "deepspeed=zero3", f"trainer.nproc_per_node={n}",
                                 "trainer.global_batch_size=2"])) for n in (1, 2)]
    largest = 4 * plans[0]["largest_parameter"] / 1e9
    one, two = (p["model_states_gb"]["no_offload"]["gpu"] - largest for p in plans)
    assert two == pytest.approx(one / 2, abs=0.01)


def test_plan_of_the_tiny_model_counts_what_training_builds(make_cfg, tiny_tokenizer):
    from hydra.utils import instantiate
    cfg = make_cfg(["trainer.precision=fp32"])
    summary = run_plan(cfg)
    model = instantiate(cfg.model.network, tokenizer=instantiate(cfg.model.tokenizer), seed=0)
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    assert summary["precision_bytes"] == 4 and summary["fits"]


def test_plan_counts_host_memory_and_gates_a_script(make_cfg, tmp_path):
    """Offloaded optimizer states live in CPU memory: one GPU with offload does not fit a 512 GB host,
    and the command exits 1 when the plan does not fit (GPU or host), 0 when it does."""
    import subprocess
    import sys

    from conftest import ROOT
    one = make_plan(make_cfg(["experiment=skyt1_qwen32b", "trainer.nproc_per_node=1", "trainer.host_memory_gb=512"]))
    assert one["fits_gpu"] and not one["fits_host"] and not one["fits"] and one["host_gb_per_node"] > 512
    assert any("host_memory_gb" in a for a in one["advice"])
    runs = {}
    for gb in (512, 4096):
        runs[gb] = subprocess.run(
            [sys.executable, "-m", "reasoning_sft.plan", "experiment=skyt1_qwen32b", "trainer.nproc_per_node=1",
             f"trainer.host_memory_gb={gb}", "logger=none", f"hydra.run.dir={tmp_path}/{gb}"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert runs[512].returncode == 1 and "CPU per node: does NOT fit in 512 GB" in runs[512].stdout
    assert runs[4096].returncode == 0 and "CPU per node: fits in 4096 GB" in runs[4096].stdout


def test_sequence_parallel_divides_activations_and_the_plan_says_how_long_a_trace_fits(make_cfg):
    base = make_plan(make_cfg(["experiment=s1k_qwen32b"]))
    sp = make_plan(make_cfg(["experiment=s1k_qwen32b", "trainer.sequence_parallel_size=8"]))
    assert sp["sequence_parallel_size"] == 8 and sp["tokens_per_gpu"] == 32768 // 8
    assert sp["activations_gb"]["checkpointing"] < base["activations_gb"]["checkpointing"] / 7
    assert sp["sequence_parallel_buffers_gb"] > 0 and sp["model_states_gb"] == base["model_states_gb"]
    table = {(r["gpus"], r["sequence_parallel_size"]): r["longest_trace"] for r in base["longest_trace"]}
    assert set(table) == {(8, 1), (8, 8), (16, 1), (16, 8)}       # 40 heads split over 8, not 16
    assert table[(16, 1)] == 32768                                  # s1's 32k fits 16 GPUs, as configured
    assert table[(8, 1)] is None and table[(8, 8)] >= 16384         # 8 GPUs: only with SP
    assert table[(16, 8)] >= 4 * table[(16, 1)]
    offload = make_plan(make_cfg(["experiment=s1k_qwen32b", "deepspeed=zero3_offload"]))["longest_trace"]
    assert {(r["gpus"], r["sequence_parallel_size"]): r["longest_trace"] for r in offload}[(8, 8)] >= 256 * 1024
    from reasoning_sft.config import validate_train_config
    from reasoning_sft.errors import ConfigError
    with pytest.raises(ConfigError, match=r"trainer.sequence_parallel_size=3: expected an integer >= 1 dividing"):
        validate_train_config(make_cfg(["experiment=s1k_qwen32b", "trainer.sequence_parallel_size=3"]))
    with pytest.raises(ConfigError, match="Ulysses sequence parallelism runs on DeepSpeed"):
        validate_train_config(make_cfg(["trainer.nproc_per_node=2", "trainer.sequence_parallel_size=2",
                                        "trainer.global_batch_size=2"]))


def test_the_64k_experiment_splits_each_trace_over_8_gpus_and_fits(make_cfg):
    from reasoning_sft.config import data_parallel_size, grad_accumulation, validate_train_config
    cfg = make_cfg(["experiment=s1k_qwen32b_64k"])
    validate_train_config(cfg)
    assert cfg.data.max_seq_len == 65536 and cfg.trainer.sequence_parallel_size == 8
    assert data_parallel_size(cfg.trainer) == 2 and grad_accumulation(cfg.trainer) == 8   # global batch 16, as s1
    plan = make_plan(cfg)
    assert plan["tokens_per_gpu"] == 8192 and plan["fits"]
