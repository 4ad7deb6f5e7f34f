"""One chat-completion call to an OpenAI-compatible endpoint (vLLM, TGI, a hosted API), for the
LLM step splitter and the curation domain classifier, through httpx: its timeouts and connection
retries, and its redirect handling, which drops the Authorization header when a redirect leaves the
endpoint's origin (the key never reaches another host). A reply without text content is a
`MalformedReply` the caller counts as a fallback, never a crash."""

from __future__ import annotations

import os


class EndpointError(OSError):
    """The endpoint could not be reached or refused the request (after httpx's retries): an error, never
    a fallback."""


class MalformedReply(ValueError):
    """The endpoint answered, but not with a chat completion holding text."""


def chat_completion(base_url: str, model: str, prompt: str, api_key_env: str = "OPENAI_API_KEY",
                    timeout_seconds: float = 120.0, retries: int = 2, system: str | None = None,
                    sampling: dict | None = None) -> str:
    """The reply text of a single-turn chat request to `{base_url}/chat/completions`: temperature 0
    unless `sampling` gives the request's own settings (temperature, top_p, max_tokens, seed)."""
    import httpx

    key = os.environ.get(api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body = {"model": model, "temperature": 0, **(sampling or {}), "messages": messages}
    url = base_url.rstrip("/") + "/chat/completions"
    try:
        with httpx.Client(timeout=timeout_seconds, follow_redirects=True,
                          transport=httpx.HTTPTransport(retries=retries)) as client:
            response = client.post(url, json=body, headers=headers)
            response.raise_for_status()
    except httpx.HTTPError as e:
        raise EndpointError(f"{url}: {type(e).__name__}: {e}") from e
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise MalformedReply(f"{base_url}: not a chat completion ({type(e).__name__}: {e}): "
                             f"{response.text[:200]!r}") from e
    if not isinstance(content, str):
        raise MalformedReply(f"{base_url}: the reply's content is {type(content).__name__}, not text")
    return content
