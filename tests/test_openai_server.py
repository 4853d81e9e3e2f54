"""The chat backend against a real OpenAI-compatible server: `transformers serve` on the embedded SmolLM2, 127.0.0.1.

The server is started once for this module on a free port and stopped by the fixture; it is also killed at
interpreter exit and (on Linux) when this process dies, so a crashed run leaves no server behind.
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

try:  # the HTTP library under the installed openai client: httpx2 for openai 3.x, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx

from models.base import GenerationConfig, Message, Prompt

STARTUP_TIMEOUT_S = 180
SECRET = "sk-ftbench-server-test-0123456789SECRET"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _wait_until_healthy(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"transformers serve exited with {process.returncode} before answering; log tail:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"transformers serve did not answer {url} within {STARTUP_TIMEOUT_S} s; log tail:\n"
                f"{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(base_url, model id) of a running `transformers serve` with SmolLM2-135M-Instruct."""
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"`transformers serve` needs {module}: pip install 'ftbench[serving]'")
    cli = Path(sys.executable).with_name("transformers")
    if not cli.exists():
        pytest.skip(f"no `transformers` command next to {sys.executable}; install transformers[serving]")
    from models.errors import MissingDependencyError
    from models.weights import smollm2_folder

    try:
        folder = smollm2_folder()[0]
    except MissingDependencyError as err:
        pytest.skip(f"no SmolLM2 weights to serve: {err}")
    port, log = _free_port(), tmp_path_factory.mktemp("serve") / "serve.log"
    command = [str(cli), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
               "--log-level", "warning"]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                                   env=os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"})
    atexit.register(_stop, process)
    try:
        _wait_until_healthy(process, f"http://127.0.0.1:{port}/health", log)
        yield f"http://127.0.0.1:{port}/v1", str(folder)
    finally:
        _stop(process)


class RequestCounter:
    """Counts chat requests as they leave the client (an httpx event hook on the client's own transport)."""

    def __init__(self):
        self.chat_requests = 0

    async def on_request(self, request):
        self.chat_requests += request.url.path.endswith("/chat/completions")

    def http_client(self):
        return httpx.AsyncClient(event_hooks={"request": [self.on_request]}, timeout=120)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path / "predictions"))
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # the server ignores it; it must still never show up anywhere
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def test_real_completions_in_order_with_usage(served):
    from models.openai_api import Endpoint, OpenAIChatModel

    base_url, model_id = served
    model = OpenAIChatModel("openai-compatible", Endpoint(model_id, base_url, max_concurrency=3, timeout_s=120))
    questions = ["What is 2+2?", "Name a color.", "What is the capital of France?"]
    prompts = [Prompt(q, (Message("system", "Answer in a few words."), Message("user", q))) for q in questions]
    config = GenerationConfig(max_new_tokens=5, stop=("\n",))
    together = model.generate(prompts, config)
    alone = [model.generate([p], config)[0] for p in reversed(prompts)][::-1]
    assert [c.text for c in together] == [c.text for c in alone]  # greedy: in order, whatever the arrival order
    for completion in together:
        assert completion.finish_reason in ("stop", "length") and completion.error is None
        assert completion.usage.prompt_tokens > 5 and 1 <= completion.usage.completion_tokens <= 5
        assert completion.latency_s > 0 and "\n" not in completion.text


def test_benchmark_rerun_is_answered_from_the_prediction_cache(served, tmp_path):
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings, build_record, eval_examples, prepare_model, timed_generate
    from models.backends.openai import OpenAIBackend
    from benchmarks.tasks import get_task
    from models import catalog
    from models.pricing import load_prices

    base_url, model_id = served
    settings = Settings(data=resolve_data("fixtures"), limit=3, prices=load_prices(), max_new_tokens=6,
                        progress=False, openai=OpenAISettings(base_url=base_url, model=model_id))
    task, entry = get_task("viggo"), catalog.get("openai-compatible")
    assert not entry.is_paid(base_url)

    def run(counter):
        prepared = prepare_model(entry, task, settings, backend=OpenAIBackend(http_client_factory=counter.http_client))
        examples = eval_examples(task, settings)
        completions, wall_s = timed_generate(prepared.model, examples, task, settings)
        scores = task.score(examples, [c.text for c in completions], settings.data)
        record = build_record(task, entry, prepared, examples, completions, scores, wall_s, settings)
        return completions, record.to_json()

    first, second = RequestCounter(), RequestCounter()
    completions, record = run(first)
    cached, again = run(second)
    assert first.chat_requests == 3 and second.chat_requests == 0
    assert [c.text for c in cached] == [c.text for c in completions] and all(c.cached for c in cached)
    assert again["predictions"] == record["predictions"] and again["tokens"] == record["tokens"]
    assert record["tokens"]["prompt"] > 0 and record["model_fingerprint"]["endpoint"] == base_url
    assert record["cost_usd"]["pricing"]["eval"].startswith("machine time")  # a local server is not token-priced
    stored = json.dumps(record) + "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert SECRET not in stored
