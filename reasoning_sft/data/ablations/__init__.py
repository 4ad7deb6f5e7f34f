"""Ablations: transforms of prepared records, selected by the `ablation` config group.

Sky-T1's local-content corruptions (content.py: wrong answers, digit corruption, reflection removal) and
global-structure perturbations (structure.py: shuffle / delete / insert steps), Long1K's long-trace
synthesis and the short-CoT baseline (long.py), over a shared base (base.py). Each treatment is an
algorithm, `fn(records, ctx, **params) -> records`, deterministic for a seed, that appends what it
changed to each record's `metadata["ablation"]`; and a plugin, the small frozen class the config's
`ablation.transforms` names (`_target_`), registered by name in registry.ABLATIONS, which checks its
parameters when it is built (before any run dir: a bad value is one line naming its key), applies the
algorithm (`t(records, ctx)`) and reports its own figures in the data card (`card`). A new treatment is
one function and one class in the module of its kind, one YAML file in conf/ablation. The question is
never rewritten (except by `combine`, which makes new problems), so every record lines up with its
original by `id`.
"""

from reasoning_sft.data.ablations.base import Context, apply_transforms, summarize, transform
from reasoning_sft.data.ablations.content import (DIGIT_SCOPES, NUMBER, REFLECTION_KEYWORDS, REMOVE_REFLECTION_PROMPT,
                                                  REWRITE_SAMPLING, REWRITE_SYSTEM, WRONG_ANSWER_MODES,
                                                  DigitCorruption, KeywordRemoval, ReflectionRewrite, RewriteClient,
                                                  WrongAnswers, digit_corruption, keyword_removal, parse_rewrite,
                                                  reflection_rewrite, skyt1_response, wrong_answers)
from reasoning_sft.data.ablations.long import LINKING, Combine, ShortCot, combine, short_cot
from reasoning_sft.data.ablations.structure import (LLMSplitter, ParagraphSplitter, StepDelete, StepInsert, StepShuffle,
                                                    align_steps, step_delete, step_insert, step_shuffle)

__all__ = ["Context", "apply_transforms", "summarize", "transform", "DIGIT_SCOPES", "NUMBER", "REFLECTION_KEYWORDS",
           "REMOVE_REFLECTION_PROMPT", "REWRITE_SAMPLING", "REWRITE_SYSTEM", "WRONG_ANSWER_MODES", "DigitCorruption",
           "KeywordRemoval", "ReflectionRewrite", "RewriteClient", "WrongAnswers", "digit_corruption",
           "keyword_removal", "parse_rewrite", "reflection_rewrite", "skyt1_response", "wrong_answers", "LINKING",
           "Combine", "ShortCot", "combine", "short_cot", "LLMSplitter", "ParagraphSplitter", "StepDelete",
           "StepInsert", "StepShuffle", "align_steps", "step_delete", "step_insert", "step_shuffle"]
