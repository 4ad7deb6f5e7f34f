"""Thinking styles: how a trace's thinking and answer are delimited (s1, DeepSeek-R1, Sky-T1), each
registered by name in registry.THINKING_STYLES (`data.format.thinking_style`). Light on purpose: the
schema checks a style's name without importing a tokenizer library."""

from __future__ import annotations

from dataclasses import dataclass

from reasoning_sft.registry import THINKING_STYLES


@dataclass(frozen=True)
class ThinkingStyle:
    name: str
    think_start: str      # opens the thinking
    think_end: str        # closes it: budget forcing strips or forces exactly this delimiter
    answer_prefix: str    # starts the final response
    answer_end: str = ""  # closes the final response (Sky-T1)
    think_stop: str = ""  # what the model emits to end its thinking (where generation stops)
    cap_prefix: str = ""  # forced after the delimiter when budget forcing cuts the thinking
    # s1's data/tokenization.py:27-32: the trajectory and the answer stripped, and `Answer: ` added only
    # to an answer that does not already hold "Answer:" (s1K's attempts often end "Final Answer: ...")
    strip_parts: bool = False


for _style in (
    # s1: `<|im_start|>think` ... `<|im_start|>answer` (their train/sft.py and budget forcing code)
    ThinkingStyle("s1", "<|im_start|>think\n", "\n<|im_start|>answer\n", "Answer: ",
                  think_stop="<|im_start|>", cap_prefix="Final Answer:", strip_parts=True),
    # DeepSeek-R1 and its distillations, OpenThoughts, Long1K
    ThinkingStyle("r1", "<think>\n", "\n</think>\n\n", "", think_stop="</think>"),
    # Sky-T1 / Bespoke-Stratos
    ThinkingStyle("skyt1", "<|begin_of_thought|>\n\n", "\n\n<|end_of_thought|>\n\n<|begin_of_solution|>\n\n",
                  "", "\n\n<|end_of_solution|>", think_stop="<|end_of_thought|>"),
):
    THINKING_STYLES.add(_style.name, _style)


def get_style(name: str) -> ThinkingStyle:
    """The style called `name`; an unknown one is the registry's one-line ConfigError."""
    return THINKING_STYLES.get(name)
