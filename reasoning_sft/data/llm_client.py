"""One chat-completion call to an OpenAI-compatible endpoint (vLLM, TGI, a hosted API), for the
LLM step splitter and the curation domain classifier. Plain urllib: no client library needed."""

from __future__ import annotations

import json
import os
import urllib.request


def chat_completion(base_url: str, model: str, prompt: str, api_key_env: str = "OPENAI_API_KEY",
                    timeout_seconds: float = 120.0) -> str:
    """The reply text of a single-turn, temperature-0 chat request to `{base_url}/chat/completions`."""
    body = json.dumps({"model": model, "temperature": 0,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions", data=body,
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {os.environ.get(api_key_env, 'none')}"})
    with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
        return json.loads(response.read())["choices"][0]["message"]["content"]
