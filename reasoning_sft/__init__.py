"""reasoning-sft: SFT on long chain-of-thought traces (s1, Sky-T1, Long1K) in one Hydra config tree.

Pipeline map: data -> ablation -> formatting/tokenisation -> train -> evaluate -> report.
"""
__version__ = "0.1.0"
