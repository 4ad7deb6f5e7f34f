"""A dozen problems written for the tests, in LiveCodeBench's released row format (stdin/stdout and
call-based), each with a known-good, a known-wrong, a too-slow and a crashing solution."""

from __future__ import annotations

import base64
import json
import pickle
import zlib


def _tests(pairs, testtype="stdin"):
    return [{"input": i, "output": o, "testtype": testtype} for i, o in pairs]


def _released(tests) -> str:
    """LiveCodeBench's encoding of private tests: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


SLOW = "import time\ntime.sleep(30)\n"
CRASH = "raise RuntimeError('boom')\n"

# (id, question, public pairs, private pairs, good, wrong)
STDIN = [
    ("sum2", "Read two integers and print their sum.", [("1 2\n", "3\n")], [("10 -4\n", "6\n"), ("0 0\n", "0\n")],
     "a, b = map(int, input().split())\nprint(a + b)", "a, b = map(int, input().split())\nprint(a - b)"),
    ("rev", "Print the line reversed.", [("abc\n", "cba\n")], [("racecar\n", "racecar\n"), ("ab\n", "ba\n")],
     "print(input()[::-1])", "print(input())"),
    ("maxn", "First line n, then n integers; print the largest.", [("3\n1 5 2\n", "5\n")], [("1\n-7\n", "-7\n")],
     "input()\nprint(max(map(int, input().split())))", "input()\nprint(min(map(int, input().split())))"),
    ("fact", "Print n! for the given n.", [("5\n", "120\n")], [("0\n", "1\n"), ("10\n", "3628800\n")],
     "import math\nprint(math.factorial(int(input())))", "n = int(input())\nprint(n * (n - 1))"),
    ("lines", "Print each of the two words on its own line, upper-cased.", [("ab cd\n", "AB\nCD\n")],
     [("x y\n", "X\nY\n")], "for w in input().split():\n    print(w.upper())", "print(input().upper())"),
    ("avg", "Print the mean of the integers on the line with 2 decimals.", [("1 2\n", "1.50\n")],
     [("1 1 1\n", "1.00\n")], "xs = list(map(int, input().split()))\nprint(f'{sum(xs) / len(xs):.2f}')",
     "xs = list(map(int, input().split()))\nprint(sum(xs) // len(xs))"),
    ("main", "Read n and print the sum 1..n (written with a __main__ guard).", [("4\n", "10\n")], [("100\n", "5050\n")],
     "def main():\n    n = int(input())\n    print(n * (n + 1) // 2)\n\nif __name__ == '__main__':\n    main()",
     "def main():\n    n = int(input())\n    print(n * n)\n\nif __name__ == '__main__':\n    main()"),
    ("stdin", "Read all numbers from stdin (several lines) and print their count.", [("1 2\n3\n", "3\n")],
     [("7\n", "1\n")], "import sys\nprint(len(sys.stdin.read().split()))", "import sys\nprint(len(sys.stdin.readline().split()))"),
]
# call-based (LeetCode): (id, question, starter, func_name, public, private, good, wrong)
CALL = [
    ("twosum", "Return the indices of the two numbers adding up to target.",
     "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ", "twoSum",
     [("[2, 7, 11, 15]\n9", "[0, 1]")], [("[3, 2, 4]\n6", "[1, 2]")],
     "class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n        for i, x in enumerate(nums):\n"
     "            if target - x in seen:\n                return [seen[target - x], i]\n            seen[x] = i",
     "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]"),
    ("pal", "Return true if s is a palindrome.", "class Solution:\n    def isPal(self, s: str) -> bool:\n        ",
     "isPal", [('"aba"', "true")], [('"ab"', "false"), ('"x"', "true")],
     "class Solution:\n    def isPal(self, s):\n        return s == s[::-1]",
     "class Solution:\n    def isPal(self, s):\n        return True"),
    ("sq", "Return the list of squares.", "class Solution:\n    def squares(self, xs: List[int]) -> List[int]:\n        ",
     "squares", [("[1, 2, 3]", "[1, 4, 9]")], [("[]", "[]"), ("[-2]", "[4]")],
     "class Solution:\n    def squares(self, xs):\n        return tuple(x * x for x in xs)",   # a tuple is accepted
     "class Solution:\n    def squares(self, xs):\n        return xs"),
    ("cnt", "Count the vowels of a word.", "class Solution:\n    def vowels(self, w: str) -> int:\n        ",
     "vowels", [('"hello"', "2")], [('"sky"', "0")],
     "class Solution:\n    def vowels(self, w):\n        return sum(c in 'aeiou' for c in w)",
     "class Solution:\n    def vowels(self, w):\n        return len(w)"),
]


def problems() -> list[dict]:
    """LiveCodeBench rows; every other problem's private tests are in the released pickled encoding."""
    rows = []
    for i, (pid, question, public, private, _, _) in enumerate(STDIN):
        rows.append({"question_id": pid, "question_title": pid, "question_content": question, "starter_code": "",
                     "platform": "atcoder", "contest_date": f"2024-0{1 + i % 9}-15T00:00:00", "difficulty": "easy",
                     "public_test_cases": json.dumps(_tests(public)),
                     "private_test_cases": _released(_tests(private)) if i % 2 else json.dumps(_tests(private)),
                     "metadata": "{}"})
    for i, (pid, question, starter, fn, public, private, _, _) in enumerate(CALL):
        rows.append({"question_id": pid, "question_title": pid, "question_content": question, "starter_code": starter,
                     "platform": "leetcode", "contest_date": f"2024-1{i % 3}-01T00:00:00", "difficulty": "medium",
                     "public_test_cases": json.dumps(_tests(public, "functional")),
                     "private_test_cases": _released(_tests(private, "functional")),
                     "metadata": json.dumps({"func_name": fn})})
    return rows


def solutions() -> dict[str, dict[str, str]]:
    """problem id -> {good, wrong, slow, crash} program text."""
    out = {}
    for pid, *_, good, wrong in STDIN:
        out[pid] = {"good": good, "wrong": wrong, "slow": SLOW + good, "crash": CRASH + good}
    for pid, _, _, fn, _, _, good, wrong in CALL:
        out[pid] = {"good": good, "wrong": wrong,
                    "slow": good.replace("        ", "        import time; time.sleep(30)\n        ", 1),
                    "crash": good.replace("        ", "        raise RuntimeError('boom')\n        ", 1)}
    return out


def response(program: str, style: str = "skyt1") -> str:
    """A model response that thinks, then commits to the program in its answer section."""
    body = f"Here is the solution.\n\n```python\n{program}\n```"
    if style == "skyt1":
        return f"<|begin_of_thought|>\n\nLet me think.\n\n```python\nprint('draft')\n```\n<|end_of_thought|>\n\n" \
               f"<|begin_of_solution|>\n\n{body}\n\n<|end_of_solution|>"
    return f"<think>\nLet me think.\n</think>\n\n{body}"
