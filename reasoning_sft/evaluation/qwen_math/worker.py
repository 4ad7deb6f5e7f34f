"""The harness's `math_equal` in a process of its own: `python worker.py ANTLR_DIR`, one JSON line in
({"pred": ..., "gt": ...}), one out ({"equal": bool}), until stdin closes. Run by path, never imported:
it puts ANTLR_DIR (antlr4-python3-runtime 4.11.1) first on its path, so sympy's `parse_latex` works as in
the harness's environment, and imports nothing of the project (whose Hydra needs antlr 4.9).
"""

import json
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, sys.argv[1])
    sys.path.insert(0, str(Path(__file__).parent / "vendor"))
    import antlr4
    assert antlr4.__file__.startswith(sys.argv[1]), antlr4.__file__   # the 4.11 runtime, not the venv's
    from grader import math_equal
    for line in sys.stdin:
        item = json.loads(line)
        try:
            equal = bool(math_equal(item["pred"], item["gt"]))
        except Exception:  # noqa: BLE001 - the harness's pool records a failed comparison as not equal
            equal = False
        sys.stdout.write(json.dumps({"equal": equal}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
