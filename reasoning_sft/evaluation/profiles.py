"""Grading profiles: each paper's released maths grader, reproduced, so our numbers sit beside theirs
(`eval.grading.profile` for evaluation, `profile=` for the grade stage; each experiment sets its paper's):

- `strict` (ours): the answer section of the thinking style, math-verify; a response that never left its
  thinking is `truncated` (wrong, counted apart). grading.py.
- `skythought`: SkyThought's `MathTaskHandler.check_correctness` (skythought/evals/tasks/math/
  math_handler.py:14-18): `extract_answer` on the whole generation (util/math_parsing_util.py:246-302:
  the last `boxed`, then "he answer is", then "final answer is", then the last number), then
  `math_equal`. Equivalence here is math-verify: SkyThought's `math_equal` imports latex2sympy2, whose
  antlr4 4.7.2 pin cannot share an environment with Hydra's 4.9 (FIELD_NOTES).
- `s1`: s1's `openai_math/utils.py:process_results` (eval/lm-evaluation-harness/lm_eval/tasks/
  openai_math/utils.py:265-300): the text after the last `<|im_start|>answer\\n`, else after the last
  `<|im_start|>` minus its first line, else the whole text; there the last `\\boxed{}`, else the last
  `Answer:` match (case-insensitive, DOTALL); integers compared as integers; otherwise the judge
  (gpt-4o-mini in s1, `EXTRACTION_TEMPLATE_IDX`) picks which option the attempt equals, and with no
  judge the strings are compared exactly, as s1's code does without one.
- `qwen_math`: the Qwen2.5-Math harness that scored the Sky-T1 paper's tables (SkyThought `corrupt`
  branch, skythought/Qwen2.5-Math/evaluation): its extraction, `strip_string` and `math_equal`
  (evaluation/qwen_math/).
- `long1k`: Long1K's `calc_metric_lc.py`: a judge (Qwen2.5-32B-Instruct there) reads the question, the
  reference's last line and the response's last 5 lines joined, and scores `[[0]]` or `[[1]]`
  (temperature 0.9, top_p 0.7). With no judge, math-verify on those last 5 lines.

A profile that uses a judge and has none says so once and records `judge: none` in the summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from reasoning_sft.data.answers import extract_answer, grade
from reasoning_sft.evaluation.grading import Grade, grade_letter_response, grade_response
from reasoning_sft.registry import GRADING_PROFILES
from reasoning_sft.schema import JudgeConfig

class Judge:
    """The OpenAI-compatible endpoint a judged profile asks (`eval.grading.judge` / the grade stage's
    `judge`: schema.JudgeConfig). Built once per evaluation: one HTTP client, its connections reused for
    every answer it judges."""

    def __init__(self, config: JudgeConfig):
        self.config = config
        self._client = None

    def ask(self, prompt: str, system: str | None = None, sampling: dict | None = None) -> str:
        from reasoning_sft.data.llm_client import chat_completion, http_client
        if self._client is None:
            self._client = http_client()
        c = self.config
        return chat_completion(c.base_url, c.model, prompt, c.api_key_env, system=system, sampling=sampling,
                               client=self._client)

    def describe(self) -> str:
        return f"{self.config.model} at {self.config.base_url}"


def judge_from(config: JudgeConfig | None) -> Judge | None:
    """The judge of a `judge` config group, None when no endpoint is set."""
    return Judge(config) if config is not None and config.base_url else None


def describe_judge(judge: Judge | None) -> str:
    return "none" if judge is None else judge.describe()


# --- SkyThought ------------------------------------------------------------------------------------

def skythought_extract(text: str) -> str:
    """SkyThought's `extract_answer` (math_parsing_util.py:246-302), its order and its clean-up; its
    final `strip_answer_string` normalisation is left to math-verify's equivalence."""
    text = text.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        ans = text.split("boxed")[-1]
        if not ans:
            return ""
        if ans[0] == "{":
            depth, pred = 1, ""
            for c in ans[1:]:
                depth += (c == "{") - (c == "}")
                if depth == 0:
                    break
                pred += c
        else:
            pred = ans.split("$")[0].strip()
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith(".") or pred.endswith("/"):
        pred = pred[:-1]
    return pred.strip()


def grade_skythought(response: str, gold: str, timeout_seconds: int) -> Grade:
    pred = skythought_extract(response)
    correct, outcome = grade(pred or None, gold, timeout_seconds)
    return Grade(correct, pred or None, outcome)


# --- s1 --------------------------------------------------------------------------------------------

S1_ANSWER_PATTERN = r"(?i)Answer\s*:\s*(.*)"      # openai_math/utils.py:33 (from OpenAI's simple-evals)
S1_SPLITS = ("<|im_start|>answer\n", "<|im_start|>")


def s1_section(text: str) -> str:
    if S1_SPLITS[0] in text:
        return text.split(S1_SPLITS[0])[-1]
    if S1_SPLITS[1] in text:
        rest = text.split(S1_SPLITS[1])[-1]
        return "\n".join(rest.split("\n")[1:]) if "\n" in rest else rest
    return text


def s1_last_boxed(string: str) -> str | None:
    """s1's `last_boxed_only_string` then `remove_boxed` (openai_math/utils.py, gpqa/openai/utils.py),
    as released: `\\boxed 5` (a space, up to a `$`) first, else the last `\\boxed{...}` / `\\fbox{...}`;
    nothing stripped."""
    if "\\boxed " in string:
        return string.split("\\boxed ")[-1].split("$")[0]
    idx = string.rfind("\\boxed")
    if idx < 0:
        idx = string.rfind("\\fbox")
        if idx < 0:
            return None
    depth, i = 0, idx
    while i < len(string):
        depth += {"{": 1, "}": -1}.get(string[i], 0)
        if string[i] == "}" and depth == 0:
            box = string[idx:i + 1]
            left = "\\boxed{" if box.startswith("\\boxed{") else "\\fbox{"
            return box[len(left):-1] if box.startswith(left) else None
        i += 1
    return None


def s1_extract(text: str) -> str:
    """The attempt s1's grader compares: the last boxed answer of its section (s1_last_boxed), else the
    last `Answer:`."""
    section = s1_section(text)
    boxed = s1_last_boxed(section)
    if boxed is not None:
        return boxed
    matches = re.findall(S1_ANSWER_PATTERN, section, re.DOTALL)
    return matches[-1] if matches else section


_S1_TASK = ("Look at the following attempt by a student and extract the student's answer. If it is equivalent "
            "(ignoring trivial simplifications) to any of the provided options, return the index of that option "
            "starting from 1. Else, return -1.")
_S1_RESPOND = ("Respond with only the index of the matching option starting from 1 or -1 if there is absolutely "
               "no reasonable match. Do not include a rationale.")
S1_EXTRACTION_TEMPLATE_IDX = _S1_TASK + "\n" + r"""
Examples:

    Options: ['2x+4', '2x', '4x']
    Attempt: The answer is 3+2x.

-1
(the student's answer is not among the options)

    Options: ['72,000']
    Attempt: 72000 \text{ cents}.

1
(always give benefit of the doubt to units and ignore formatting which makes the 1st option match)

    Options: ['2/(-3)', '2/3']
    Attempt: -1 * 2/3

1
(the 1st option matches after trivial simplifications which are fine)

    Options: ['x=5']
    Attempt: 5

1

    Options: ['\dfrac{33}{100}']
    Attempt: 0.33

1

    Options: ['75^\circ']
    Attempt: ...various calculations and explanations...hence the answer is $\boxed{x in 75}$.

1

    Options: ['(1,-3)', '(1,-1)', '(1,0)', '(1,-2)']
    Attempt: -2, 1

4
(ignore whitespace and other formatting which makes the 4th option match)

    Options: ['-2,1']
    Attempt: 1, -2

1
(likely a problem where multiple solutions are possible thus ignore order)

    Options: ['12']
    Attempt: ...$\boxed{12^{\mathrm{th}}}$.

1

    Options: ['2516_8']
    Attempt: 2516

1
(give benefit of the doubt for different bases)

    Options: ['11\sqrt2']
    Attempt: 11\sqrt{2}

1

    Options: ['11,\! 111,\! 111,\! 100']
    Attempt: 11111111100

1

    Options: ['\text{Navin}']
    Attempt: ...it is navin.

1

---

YOUR TASK


""" + _S1_RESPOND + """

    Options: %(expression1)s
    Attempt: %(expression2)s""".rstrip()       # openai_math/utils.py:35-112, verbatim (its .strip())
S1_JUDGE_SAMPLING = {"temperature": 0.5, "max_tokens": 1024}    # its ChatCompletionSampler's defaults


def grade_s1(response: str, gold: str, judge: Judge | None) -> Grade:
    from reasoning_sft.data.llm_client import MalformedReply
    gt = str(int(gold)) if gold.isdigit() else gold
    attempt = s1_extract(response)
    if attempt.isdigit() and gt.isdigit():
        attempt = str(int(attempt))
    elif judge is not None:
        # s1 lists the gold first, then the other attempts of the same problem; one response is graded
        # at a time here, so the options are the gold alone
        options = "['" + gt + "']"
        try:
            idx = judge.ask(S1_EXTRACTION_TEMPLATE_IDX % {"expression1": options, "expression2": attempt},
                            sampling=S1_JUDGE_SAMPLING).strip()
        except MalformedReply:
            return Grade(attempt == gt, attempt, "exact" if attempt == gt else "judge_fallback")
        if idx == "1":
            return Grade(True, attempt, "exact" if attempt == gt else "judged")
        if idx != "-1" and not idx.lstrip("-").isdigit():   # s1 warns and keeps the attempt: so do we, counted
            return Grade(attempt == gt, attempt, "exact" if attempt == gt else "judge_fallback")
    if not attempt.strip():
        return Grade(False, None, "no_answer")
    return Grade(attempt == gt, attempt, "exact" if attempt == gt else "not_equal")


# --- Long1K ----------------------------------------------------------------------------------------

LONG1K_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
LONG1K_JUDGE_PROMPT = (   # calc_metric_lc.py (the maths prompt), verbatim
    "现在我会向你输入一段数学问题，问题的标准答案，以及由某个大语言模型对该问题的输出，你需要从大语言模型的输出中提取出答案文本，"
    "然后再和标准答案进行对比，判断是否答对了这个问题。如果答对了判断为正确得1分，否则就是错误的得0分，问题是:{}\n标准答案是:{}\n"
    "模型输出是:{}\n,请你先从模型的输出文本中提取出最终答案，然后再对比标准答案看是否作答准确，你的回答模板是：问题是xxx\n标准的答案是xxx\n"
    "从模型输出文本中提取的答案是xxx\n，所以是正确/错误的，\n\n因此最终得[[0]]或[[1]]分。注意得分一定要使用两个中括号括起来。"
    "如果不能从模型输出中提取出答案，可以直接认为错误。注意有时模型输出的形式可能与标准答案形式有所差别，如发现经过简单换算或者添加单位后二者相等，"
    "则同样认为正确。")
LONG1K_JUDGE_SAMPLING = {"temperature": 0.9, "top_p": 0.7, "max_tokens": 32678}   # calc_metric_lc.py:11


def last_lines(text: str, n: int = 5) -> str:
    """Long1K's `"".join(pre.split('\\n')[-5:])`: the last lines, joined without a separator."""
    return "".join(text.strip().strip("\n").split("\n")[-n:])


def grade_long1k(response: str, gold: str, question: str, judge: Judge | None, timeout_seconds: int) -> Grade:
    tail = last_lines(response)
    if judge is None:
        extracted = extract_answer(tail, timeout_seconds)
        correct, outcome = grade(extracted, gold, timeout_seconds)
        return Grade(correct, extracted, outcome)
    from reasoning_sft.data.llm_client import MalformedReply
    ref = gold.strip().split("\n")[-1]
    try:
        reply = judge.ask(LONG1K_JUDGE_PROMPT.format(question.strip(), ref, tail), system=LONG1K_SYSTEM,
                          sampling=LONG1K_JUDGE_SAMPLING)
    except MalformedReply:
        return Grade(False, None, "judge_fallback")
    scores = re.findall(r"\[\[([0-9]+)\]\]", reply)
    score = int(scores[0]) if scores else 0          # no score: 0, as released
    return Grade(score == 1, tail[-200:], "judged" if score == 1 else "not_equal")


# --- GPQA: a letter per profile --------------------------------------------------------------------

# s1's gpqa/openai/utils.py: the judge's question (QUERY_TEMPLATE_API) and its EXTRACTION_TEMPLATE, verbatim
S1_GPQA_QUESTION = "{question}\nAnswer Choices:\n(A) {c[0]}\n(B) {c[1]}\n(C) {c[2]}\n(D) {c[3]}"
S1_GPQA_EXTRACTION_TEMPLATE = ("""
Look at the following question and an attempt by a student and extract which choice among A, B, C, D the """
                               """student picked. If the student did not pick any choice, respond with "-1".
""" + r"""
Examples:

    Question: ...
    Attempt: Answer: **A**

A

    Question: A) Dinosaur B) Elephant C) Cat D) Dog
    Attempt: ...The answer is therefore Elephant...

B

    Question: ...
    Attempt: Answer: None of the above

-1

    Question: ...
    Attempt: ...Answer: D), because...

D

    Question: ...
""" + "(A) 7 \n(B) 8 \n(C) 4 \n(D) 10\n" + r"""    Attempt: 4

C

    Question: ...
    Attempt: ...\\boxed{C}...

C

---

YOUR TASK


Respond only with the capitalized alphabetic letter (without quotes) or -1. Do not include a rationale.

    Question: %(expression1)s
    Attempt: %(expression2)s
""").strip()   # its options' lines end in a space: kept (the example's own concatenated string)


def grade_letter_s1(response: str, gold: str, question: str, judge: Judge | None) -> Grade:
    """s1's GPQA `process_results`: its section, the last boxed answer else the last `Answer:`, a lower-case
    letter upper-cased; anything else asked of the judge (gpt-4o-mini there) with the question as its
    QUERY_TEMPLATE_API writes it; and, when nothing yields a letter, "A" (about a quarter credit for an
    unreadable answer: s1's number; outcome `default_a`, counted)."""
    from reasoning_sft.data.llm_client import MalformedReply
    a = s1_section(response)
    if (box := s1_last_boxed(a)) is not None:
        a = box
    elif matches := re.findall(S1_ANSWER_PATTERN, a, re.DOTALL):
        a = matches[-1]
    if a in ("a", "b", "c", "d"):
        a = a.upper()
    outcome = "letter"
    if a not in ("A", "B", "C", "D") and judge is not None:
        try:
            a = judge.ask(S1_GPQA_EXTRACTION_TEMPLATE % {"expression1": question, "expression2": a},
                          sampling=S1_JUDGE_SAMPLING)
            outcome = "judged"
        except MalformedReply:
            outcome = "judge_fallback"
    if a not in ("A", "B", "C", "D"):
        a, outcome = "A", "default_a"
    return Grade(a == gold, a, outcome)


LONG1K_GPQA_JUDGE_PROMPT = LONG1K_JUDGE_PROMPT.replace("一段数学问题", "一段涉及数学计算的科学问题")   # calc_metric_lc.py, gpqa_diamond


def grade_letter_long1k(response: str, gold: str, question: str, judge: Judge | None, truncated: str) -> Grade:
    """Long1K's GPQA grading (calc_metric_lc.py): its GPQA judge prompt on the reference's last line and the
    response's last 5 lines; without a judge, our letter reading of those lines."""
    if judge is None:
        return grade_letter_response(last_lines(response), gold, None, truncated)
    from reasoning_sft.data.llm_client import MalformedReply
    tail = last_lines(response)
    try:
        reply = judge.ask(LONG1K_GPQA_JUDGE_PROMPT.format(question.strip(), gold.strip().split("\n")[-1], tail),
                          system=LONG1K_SYSTEM, sampling=LONG1K_JUDGE_SAMPLING)
    except MalformedReply:
        return Grade(False, None, "judge_fallback")
    scores = re.findall(r"\[\[([0-9]+)\]\]", reply)
    score = int(scores[0]) if scores else 0
    return Grade(score == 1, tail[-200:], "judged" if score == 1 else "not_equal")


def strict_letter(response, gold, style, question, truncated, judge) -> Grade:
    return grade_letter_response(response, gold, style, truncated)


# --- the Qwen2.5-Math harness (the Sky-T1 paper's tables): qwen_math/ ------------------------------

def _qwen_math():
    import reasoning_sft.evaluation.qwen_math as qwen_math   # imported when the profile is used
    return qwen_math


# --- the registry ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    """A grader as a paper released it: `grade(response, gold, style, question, truncated, timeout_seconds,
    judge) -> Grade` for maths, `letter(response, gold letter, style, question, truncated, judge) -> Grade`
    for multiple choice (GPQA; ours where the paper's code has none); `without_judge`: what a judged
    profile does when no endpoint is given; `require`: a ConfigError saying how to install what it needs."""
    name: str
    grade: Callable[..., Grade]
    without_judge: str | None = None     # None: the profile asks no judge
    require: Callable[[], None] = lambda: None
    letter: Callable[..., Grade] = strict_letter

    def judge_line(self, judge: Judge | None) -> str | None:
        """The one line said when a judged profile runs without a judge (None otherwise)."""
        if self.without_judge is None or judge is not None:
            return None
        return (f"grading profile {self.name}: no judge endpoint (judge.base_url / eval.grading.judge.base_url): "
                f"{self.without_judge}; the summary says judge: none")


for _profile in (
    Profile("strict", lambda r, g, style, q, truncated, timeout, judge: grade_response(r, g, style, truncated, timeout)),
    Profile("skythought", lambda r, g, style, q, truncated, timeout, judge: grade_skythought(r, g, timeout)),
    Profile("s1", lambda r, g, style, q, truncated, timeout, judge: grade_s1(r, g, judge),
            without_judge="integer answers compared as integers, others as exact strings; GPQA letters as read",
            letter=lambda r, g, style, q, truncated, judge: grade_letter_s1(r, g, q, judge)),
    Profile("long1k", lambda r, g, style, q, truncated, timeout, judge: grade_long1k(r, g, q, judge, timeout),
            without_judge="math-verify on the response's last 5 lines",
            letter=lambda r, g, style, q, truncated, judge: grade_letter_long1k(r, g, q, judge, truncated)),
    Profile("qwen_math", lambda r, g, style, q, truncated, timeout, judge: _qwen_math().grade_qwen_math(r, g),
            require=lambda: _qwen_math().require()),
):
    GRADING_PROFILES.add(_profile.name, _profile)


def grade_math_profile(response: str, gold: str, style: str | None, profile: str, truncated: str = "wrong",
                       timeout_seconds: int = 5, judge: Judge | None = None, question: str = "") -> Grade:
    """One response graded by the profile called `profile` (registry.GRADING_PROFILES)."""
    return GRADING_PROFILES.get(profile).grade(response, gold, style, question, truncated, timeout_seconds, judge)
