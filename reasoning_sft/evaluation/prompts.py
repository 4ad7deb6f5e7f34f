"""Evaluation prompts: by default the one the model was trained with; or a paper's own.

`eval.prompt` names one of registry.PROMPTS (each registered below). `trained` is the training format: the question as the user turn
and the training system prompt (stored with the model in `final_model/reasoning_sft.json`). The
others are the papers' released evaluation prompts (docs/fidelity.md says where each comes from):
- `s1`: the question alone under the chat template's default system prompt (s1's lm-eval fork,
  `openai_math/utils.py`: QUERY_TEMPLATE = '{Question}');
- `skyt1`: SkyThought's Sky-T1 system prompt and "Return your final response within \\boxed{}. "
  before the question (skythought_evals `model_configs.yaml`, `tasks/math/math500.yaml`);
- `qwen_math`: Qwen2.5-Math's chain-of-thought instruction after the question (the project's old
  default);
- `skyt1_paper`: the prompt the Sky-T1 paper's tables were generated with: the Qwen2.5-Math harness's
  `Sky-T1` prompt type (SkyThought `corrupt` branch, skythought/Qwen2.5-Math/evaluation/utils.py:148-173):
  its system prompt (unlike main's: no braces, and the `'\n\n'` it quotes is two real newlines), the bare
  question as the user turn;
- `deepseek_qwen`: Long1K's evaluation template (LONG1k-32B `predict.py` `template_map["deepseek-qwen"]`,
  run by `predict.sh` with `--template deepseek-qwen`): its system prompt, the question as the user turn.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reasoning_sft.errors import ConfigError
from reasoning_sft.registry import PROMPTS

FORMAT_FILE = "reasoning_sft.json"   # beside a saved model: the format it was trained on
TRAINED = object()                   # the system prompt the model was trained with

# SkyThought skythought_evals/models/model_configs.yaml `system_prompts.skythought`, as YAML reads it.
SKYT1_SYSTEM_PROMPT = (
    "Your role as an assistant involves thoroughly exploring questions through a systematic long thinking "
    "process before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, backtracing, and "
    "iteration to develop well-considered thinking process. Please structure your response into two main "
    "sections: Thought and Solution. In the Thought section, detail your reasoning process using the "
    "specified format: <|begin_of_thought|> {thought with steps separated with '\n\n'} <|end_of_thought|> "
    "Each step should include detailed considerations such as analisying questions, summarizing relevant "
    "findings, brainstorming new ideas, verifying the accuracy of the current steps, refining any errors, "
    "and revisiting previous steps. In the Solution section, based on various attempts, explorations, and "
    "reflections from the Thought section, systematically present the final solution that you deem correct. "
    "The solution should remain a logical, accurate, concise expression style and detail necessary step "
    "needed to reach the conclusion, formatted as follows: <|begin_of_solution|> {final formatted, precise, "
    "and clear solution} <|end_of_solution|> Now, try to solve the following question through the above "
    "guidelines:"
)


# The Qwen2.5-Math harness's `Sky-T1` prompt type (SkyThought corrupt branch, evaluation/utils.py:148-173), its
# system turn as Python joins the released lines: "{thought ...}" without braces, '\n\n' as two newlines.
SKYT1_PAPER_SYSTEM_PROMPT = SKYT1_SYSTEM_PROMPT.replace(
    "{thought with steps separated with '\n\n'}", "thought with steps separated with '\n\n'").replace(
    "{final formatted, precise, and clear solution}", "final formatted, precise, and clear solution")


# Long1K predict.py `template_map["deepseek-qwen"]`'s system turn, verbatim (its missing spaces included).
DEEPSEEK_QWEN_SYSTEM_PROMPT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.The "
    "assistant first thinks about the reasoning process in the mind and then provides the userwith the answer. "
    "The reasoning process and answer are enclosed within <|begin_of_thought|> <|end_of_thought|> and"
    "<|begin_of_solution|> <|end_of_solution|> tags, respectively, i.e., <|begin_of_thought|> reasoning process "
    "here <|end_of_thought|><answer>answer here <|end_of_solution|>."
)


@dataclass(frozen=True)
class Prompt:
    system: object        # a string, None (the chat template's default) or TRAINED
    user: str             # the user turn, with {question}


for _name, _prompt in {
    "trained": Prompt(TRAINED, "{question}"),
    "s1": Prompt(None, "{question}"),
    "skyt1": Prompt(SKYT1_SYSTEM_PROMPT, "Return your final response within \\boxed{{}}. {question}"),
    "qwen_math": Prompt(None, "{question}\n\nPlease reason step by step, and put your final answer within "
                              "\\boxed{{}}."),
    "deepseek_qwen": Prompt(DEEPSEEK_QWEN_SYSTEM_PROMPT, "{question}"),
    "skyt1_paper": Prompt(SKYT1_PAPER_SYSTEM_PROMPT, "{question}"),
}.items():
    PROMPTS.add(_name, _prompt)


def eval_prompt(name: str, trained_system_prompt: str | None) -> tuple[str | None, str]:
    """(system prompt, user template) of the prompt `name` (`eval.prompt`); `trained` takes the system
    prompt the model was trained with."""
    p = PROMPTS.get(name)
    return (trained_system_prompt if p.system is TRAINED else p.system), p.user


def write_model_format(model_dir: Path, thinking_style: str, system_prompt: str | None, max_seq_len: int) -> None:
    (model_dir / FORMAT_FILE).write_text(json.dumps(
        {"thinking_style": thinking_style, "system_prompt": system_prompt, "max_seq_len": max_seq_len}, indent=2))


def read_model_format(model_dir: Path) -> dict | None:
    """The training format saved with a model, None for a model this project did not train."""
    path = Path(model_dir) / FORMAT_FILE
    if not path.is_file():
        return None
    try:
        fmt = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}); delete it to evaluate with data.format") from e
    if not isinstance(fmt, dict) or "thinking_style" not in fmt:
        raise ConfigError(f"{path}: expected a JSON object with thinking_style and system_prompt")
    return fmt
