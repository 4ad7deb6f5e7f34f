"""Shared fixtures: real Hydra composition of conf/, the bundled data dir, offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import reasoning_sft  # noqa: F401 - registers the `${cwd:}` resolver the configs use

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def compose_config(overrides: list[str], config_name: str = "train", output_dir: Path | None = None) -> DictConfig:
    """Compose like `python -m reasoning_sft.<stage>` would, with `${hydra:...}` resolvable."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(overrides) -> a composed train config writing into tmp_path/run."""
    def _make(overrides=(), config_name="train"):
        return compose_config(list(overrides), config_name, tmp_path / "run")
    return _make


def pytest_collection_modifyitems(config, items):
    """Tests on the bundled real data skip, with the reason, where ../shared/data is absent."""
    missing = pytest.mark.skipif(not SHARED_DATA.is_dir(),
                                 reason=f"{SHARED_DATA} is absent: the bundled real data sits beside the checkout")
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(missing)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from reasoning_sft.training.models import train_tiny_tokenizer
    return train_tiny_tokenizer(512)


@pytest.fixture
def chat_endpoint():
    """start(reply) -> base_url: a real HTTP server on loopback that answers OpenAI-compatible
    `POST /v1/chat/completions` with `reply(prompt, model)` (prompt: the last message, the user turn); it
    records every request it served, with the client's (address, port): its connection."""
    import http.server
    import json
    import threading

    servers = []

    def start(reply):
        requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"    # keep-alive: a client that reuses its connection is seen doing so

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                requests.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                 "connection": self.client_address, **body})
                data = json.dumps({"choices": [{"message": {
                    "content": reply(body["messages"][-1]["content"], body["model"])}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        start.requests = requests
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()


class ProcessOutput:
    """A child's output read on a thread, so a test waits for what the child says (an event), never for a
    fixed time: on a slower machine the same line simply comes later."""

    def __init__(self, proc, stream=None):
        import threading
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, args=(stream or proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float = 600) -> str:
        """The first line matching `pattern`; fails naming the output if the child ends or time runs out."""
        import re
        import time
        rx, deadline = re.compile(pattern), time.time() + timeout
        while time.time() < deadline:
            for line in list(self.lines):
                if rx.search(line):
                    return line
            assert self.proc.poll() is None, f"ended before {pattern!r}:\n" + "".join(self.lines)[-3000:]
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n" + "".join(self.lines)[-3000:])

    def text(self, timeout: float = 300) -> str:
        """All of it, once the child has ended."""
        self.proc.wait(timeout=timeout)
        self._thread.join(timeout=30)
        return "".join(self.lines)


def evaluator_for(cfg: DictConfig, model=None, tokenizer=None):
    """The Evaluator a stage builds from a composed config (its eval and data groups, typed), with the
    model as its HF engine when one is given."""
    from reasoning_sft.config import parse_groups
    from reasoning_sft.data.synthetic import trained_shape
    from reasoning_sft.evaluation.evaluator import Evaluator
    from reasoning_sft.evaluation.generation import HFEngine
    g = parse_groups(cfg)
    ev = Evaluator(g.eval, g.data.format.thinking_style, g.data.format.system_prompt, g.seed,
                   trained_shape(g.data.source))
    return ev.attach(HFEngine(model, tokenizer)) if model is not None else ev
