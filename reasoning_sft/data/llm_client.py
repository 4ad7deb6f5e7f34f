"""One chat-completion call to an OpenAI-compatible endpoint (vLLM, TGI, a hosted API), for the
LLM step splitter and the curation domain classifier, through httpx: its timeouts and connection
retries, and its redirect handling, which drops the Authorization header when a redirect leaves the
endpoint's origin (the key never reaches another host). A reply without text content is a
`MalformedReply` the caller counts as a fallback, never a crash."""

from __future__ import annotations

import functools
import os


class EndpointError(OSError):
    """The endpoint could not be reached or refused the request (after httpx's retries): an error, never
    a fallback."""


class MalformedReply(ValueError):
    """The endpoint answered, but not with a chat completion holding text."""


def http_client(timeout_seconds: float = 120.0, retries: int = 2):
    """An httpx client as every call here uses it (timeouts, connection retries, redirects that drop the
    key when they leave the endpoint's origin); one kept by a caller reuses its connections."""
    import httpx
    return httpx.Client(timeout=timeout_seconds, follow_redirects=True, transport=httpx.HTTPTransport(retries=retries))


@functools.lru_cache(maxsize=None)
def shared_client(timeout_seconds: float, retries: int):
    """One client per setting for the process: a client's TLS context costs about a second to build
    (measured here: the CA bundle is read each time), so a classifier or ablation that asked 60 questions
    spent a minute on clients alone; shared, its connections are reused too (httpx's Client is thread-safe)."""
    return http_client(timeout_seconds, retries)


def chat_completion(base_url: str, model: str, prompt: str, api_key_env: str = "OPENAI_API_KEY",
                    timeout_seconds: float = 120.0, retries: int = 2, system: str | None = None,
                    sampling: dict | None = None, client=None) -> str:
    """The reply text of a single-turn chat request to `{base_url}/chat/completions`: temperature 0
    unless `sampling` gives the request's own settings (temperature, top_p, max_tokens, seed). `client`:
    an `http_client()` the caller keeps; None: the process's `shared_client` for these settings."""
    import httpx

    key = os.environ.get(api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    body = {"model": model, "temperature": 0, **(sampling or {}), "messages": messages}
    url = base_url.rstrip("/") + "/chat/completions"
    try:
        response = (client or shared_client(timeout_seconds, retries)).post(url, json=body, headers=headers)
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


def cached_reply(cache_dir: str | None, key_parts: list, ask, keep=lambda reply: True) -> tuple[str | None, bool]:
    """(reply, whether it came from the cache) for a request identified by `key_parts`: read from
    `cache_dir` when there, else `ask()`. A reply `keep` accepts is written whole, then renamed (a
    concurrent sweep job never reads half a file); a `MalformedReply` gives (None, False) and is never
    cached, so the next run asks again."""
    import hashlib
    import json
    from pathlib import Path

    key = hashlib.sha256(json.dumps(key_parts).encode()).hexdigest()
    path = Path(cache_dir) / f"{key}.json" if cache_dir else None
    if path is not None and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["reply"], True
    try:
        reply = ask()
    except MalformedReply:
        return None, False
    if path is not None and keep(reply):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"model": key_parts[0], "reply": reply}), encoding="utf-8")
        os.replace(tmp, path)
    return reply, False
