"""The Qwen2.5-Math harness's own code, vendored verbatim (MIT): parser.py, grader.py."""
