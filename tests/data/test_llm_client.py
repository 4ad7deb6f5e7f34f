"""The LLM client (reasoning_sft/data/llm_client.py): the key stays with its endpoint, a reply without
text is a counted fallback."""

from __future__ import annotations

import http.server
import threading

import pytest

from reasoning_sft.data.ablations import LLMSplitter, ParagraphSplitter
from reasoning_sft.data.llm_client import MalformedReply, chat_completion


def _server(handler_cls) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_redirect_to_another_origin_never_carries_the_key(chat_endpoint, monkeypatch):
    monkeypatch.setenv("RSFT_TEST_KEY", "sk-secret")
    target = chat_endpoint(lambda prompt, model: "hello")       # another origin: another port
    seen = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(self.headers.get("Authorization"))
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(307)
            self.send_header("Location", target + "/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _server(Redirect)
    try:
        reply = chat_completion(f"http://127.0.0.1:{server.server_port}/v1", "m", "hi", "RSFT_TEST_KEY", 10)
    finally:
        server.shutdown()
    assert reply == "hello"
    assert seen == ["Bearer sk-secret"]                              # the endpoint asked for got it
    assert [r["authorization"] for r in chat_endpoint.requests] == [None]   # the redirect's target did not


@pytest.mark.parametrize("content", [None, {"steps": ["a"]}])
def test_a_reply_without_text_is_a_counted_fallback_not_a_crash(chat_endpoint, content):
    url = chat_endpoint(lambda prompt, model: content)
    with pytest.raises(MalformedReply, match="content is"):
        chat_completion(url, "m", "hi")
    trace = "First we add.\n\nThen we check the sum again.\n\nSo the answer is 3."
    steps, _, how = LLMSplitter(base_url=url, model="m")(trace)
    assert how == "paragraph_fallback" and steps == ParagraphSplitter()(trace)[0]
    with pytest.raises(Exception, match="not a JSON list of steps"):
        LLMSplitter(base_url=url, model="m", fallback="raise")(trace)
