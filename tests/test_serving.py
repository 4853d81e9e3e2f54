"""Serving the evaluated model (models.serving) and the concurrency sweep (models.loadtest).

Against a real `transformers serve` on 127.0.0.1 with tiny-random + a random LoRA adapter merged: the served folder is
built once, its greedy answers equal HFModel's in-process answers on the task's own prompts, a sweep measures every
level, and a server killed mid-sweep leaves the measured levels, its log tail and no process. Process-group handling
(SIGTERM ignored, a grandchild, a start that fails or hangs) is checked on a fake server: a few lines of Python.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import BackendError, ConfigError
from models.loadtest import LevelResult, RequestResult, percentile, sweep
from models.serving import LocalServer, prepare_served_folder

PROMPTS = 4  # spider fixture prompts
MAX_TOKENS = 8


def _running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, killed but not reaped yet, is not)."""
    try:
        import psutil

        return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except ImportError:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z"
    except Exception:  # psutil.NoSuchProcess: gone between the two calls
        return False


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """True once `pid` is gone; an orphaned grandchild is reaped by init a moment after it is killed."""
    deadline = time.monotonic() + wait_s
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture(scope="module")
def task_prompts():
    from benchmarks.data import resolve_data
    from benchmarks.tasks import get_task

    task = get_task("spider")
    examples = task.examples(resolve_data("fixtures"), task.eval_split)[:PROMPTS]
    return [task.prompt(e) for e in examples], tuple(task.stop)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter with random (non-zero) weights on tiny-random: merged, it changes the answers."""
    from peft import LoraConfig, get_peft_model

    from models.weights import load_tiny_random

    # Strong enough (alpha 64) that greedy answers differ from prompt to prompt.
    config = LoraConfig(r=4, lora_alpha=64, init_lora_weights=False,
                        target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])
    model = get_peft_model(load_tiny_random()[0], config)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served_folder(adapter, tmp_path_factory):
    from models import catalog

    for module in ("fastapi", "uvicorn"):
        pytest.importorskip(module, reason="`transformers serve` needs it: pip install 'ftbench[serving]'")
    root = tmp_path_factory.mktemp("served")
    return prepare_served_folder(catalog.get("tiny-random-lora"), adapter, root=root), root


@pytest.fixture(scope="module")
def server(served_folder, tmp_path_factory):
    with LocalServer(served_folder[0].path, log_path=tmp_path_factory.mktemp("logs") / "serve.log") as running:
        yield running


@pytest.fixture(scope="module")
def in_process_answers(adapter, task_prompts):
    from models import catalog
    from models.base import GenerationConfig

    prompts, stop = task_prompts
    model = catalog.get("tiny-random-lora").load(adapter)
    model.progress = False
    return [c.text for c in model.generate(prompts, GenerationConfig(max_new_tokens=MAX_TOKENS, stop=stop))]


def test_served_folder_is_built_once_and_reused(served_folder, adapter):
    from models import catalog

    folder, root = served_folder
    again = prepare_served_folder(catalog.get("tiny-random-lora"), adapter, root=root)
    assert not folder.cached and again.cached and again.path == folder.path
    assert json.loads((folder.path / "ftbench.json").read_text())["key"] == folder.key
    assert folder.fingerprint["adapter_sha256"] and [p.name for p in root.iterdir()] == [folder.path.name]
    base = prepare_served_folder(catalog.get("tiny-random"), root=root)  # no adapter: another model, another key
    assert base.key != folder.key and not base.cached
    config = json.loads((folder.path / "generation_config.json").read_text())
    assert config["do_sample"] is False and config["eos_token_id"]


def test_served_greedy_answers_equal_in_process_answers(server, task_prompts, in_process_answers):
    prompts, stop = task_prompts
    result = sweep(server.base_url, server.model_id, [p.text for p in prompts], latency_slo_s=600,
                   max_tokens=MAX_TOKENS, stop=stop, levels=(1,), stream=False, warmup=0)
    assert result.levels[0].errors == 0, result.levels[0].error_reasons
    assert result.mismatches(in_process_answers) == []
    assert len(set(in_process_answers)) > 1  # the prompts are told apart: equal answers are not a constant


def test_sweep_measures_every_level_with_finite_stats(server, task_prompts, in_process_answers):
    prompts, stop = task_prompts
    seen = []
    result = sweep(server.base_url, server.model_id, [p.text for p in prompts], latency_slo_s=600,
                   max_tokens=MAX_TOKENS, stop=stop, levels=(1, 2, 4), requests_per_level=2, min_gain=None,
                   on_level=seen.append)
    assert [lv.concurrency for lv in result.levels] == [1, 2, 4] and list(result.levels) == seen
    assert [lv.requests for lv in result.levels] == [4, 4, 8]  # max(2 x level, prompts)
    assert not result.server_failed and result.stopped_by == "all 3 levels run"
    for level in result.levels:
        assert level.errors == 0, level.error_reasons
        stats = (level.latency_p50_s, level.latency_p95_s, level.latency_p99_s, level.ttft_p50_s, level.ttft_p95_s)
        assert all(s is not None and math.isfinite(s) and s > 0 for s in stats), stats
        assert level.latency_p50_s <= level.latency_p95_s <= level.latency_p99_s
        assert level.requests_per_s > 0 and level.output_tokens_per_s >= level.requests_per_s
    assert result.sustainable in result.levels
    json.dumps(result.to_json(answers=True), allow_nan=False)


def test_server_killed_mid_sweep_keeps_measured_levels_and_leaves_no_process(served_folder, task_prompts, tmp_path):
    prompts, stop = task_prompts
    with LocalServer(served_folder[0].path, log_path=tmp_path / "serve.log") as server:
        pid = server.pid

        def kill_after_first_level(level: LevelResult) -> None:
            os.kill(pid, signal.SIGKILL)

        result = sweep(server.base_url, server.model_id, [p.text for p in prompts], latency_slo_s=600,
                       max_tokens=MAX_TOKENS, stop=stop, levels=(1, 2, 4), min_gain=None, timeout_s=30,
                       on_level=kill_after_first_level)
        failure = server.failure()
    assert result.server_failed and [lv.concurrency for lv in result.levels] == [1]
    assert result.levels[0].errors == 0 and "stopped answering at concurrency 2" in result.stopped_by
    assert failure and "status -9" in failure and "/v1/completions" in failure  # the log's last lines
    assert _gone(pid)


# --- process handling, on a fake server -----------------------------------------------------------------------------

FAKE_SERVER = textwrap.dedent("""
    import http.server, signal, subprocess, sys
    mode, port = sys.argv[1], int(sys.argv[2])
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(f"grandchild pid {child.pid}", flush=True)
    if mode == "crash":
        sys.exit("boom: cannot load the model")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a server that does not stop when asked
    if mode == "hang":
        signal.pause()
    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"data": []}')
    http.server.HTTPServer(("127.0.0.1", port), Models).serve_forever()
""")


class FakeServer(LocalServer):
    def __init__(self, mode: str, tmp_path: Path, **options):
        super().__init__("fake", log_path=tmp_path / "fake.log", stop_grace_s=0.5, **options)
        self.mode = mode

    def command(self) -> list[str]:
        return [sys.executable, "-c", FAKE_SERVER, self.mode, str(self.port)]

    def child_pid(self) -> int:
        for _ in range(100):  # the child's pid is logged a moment after the server starts
            for line in self.log_path.read_text().splitlines():
                if line.startswith("grandchild pid "):
                    return int(line.split()[2])
            time.sleep(0.05)
        raise AssertionError(f"no child pid in the log:\n{self.log_tail()}")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_server_and_its_children_stop_on_any_exit_from_the_block(tmp_path, interrupt):
    with pytest.raises(interrupt):
        with FakeServer("serve", tmp_path) as server:
            pids = server.pid, server.child_pid()
            assert server.alive() and server.failure() is None
            raise interrupt()
    assert all(_gone(pid) for pid in pids) and not server.alive()
    assert server.process.returncode == -signal.SIGKILL  # it ignored SIGTERM: killed after the grace period


def test_server_that_exits_at_start_raises_with_its_log_tail(tmp_path):
    server = FakeServer("crash", tmp_path)
    with pytest.raises(BackendError, match=r"(?s)exited before answering.*status 1.*boom: cannot load the model"):
        server.start()
    assert _gone(server.child_pid())  # the process group is stopped, children included


def test_server_that_never_answers_is_stopped_after_the_start_timeout(tmp_path):
    server = FakeServer("hang", tmp_path, start_timeout_s=1)
    with pytest.raises(BackendError, match=r"did not answer .*/v1/models within 1 s"):
        server.start()
    assert _gone(server.pid) and _gone(server.child_pid())


def test_adapters_need_vllm_or_a_merged_folder():
    with pytest.raises(ConfigError, match="prepare_served_folder"):
        LocalServer("folder", adapter=Path("adapter"))
    vllm = LocalServer("base", engine="vllm", adapter=Path("/a/adapter"), dtype="bfloat16")
    vllm.port = 8123
    command = vllm.command()
    assert command[1:3] == ["serve", "base"] and vllm.model_id == "adapter"
    assert command[command.index("--lora-modules") + 1] == "adapter=/a/adapter" and "--enable-lora" in command


# --- the sweep's arithmetic ---------------------------------------------------------------------------------------

finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=50), st.floats(min_value=0, max_value=100))
def test_percentile_matches_the_records_percentile(values, q):
    from benchmarks.stats import percentile as record_percentile

    assert percentile(values, q) == pytest.approx(record_percentile(values, q))
    assert min(values) <= percentile(values, q) <= max(values)


@given(st.lists(st.tuples(finite, st.booleans(), st.integers(0, 100)), min_size=1, max_size=40),
       st.floats(min_value=0.001, max_value=1e4), st.integers(1, 64))
def test_level_stats_are_finite_ordered_and_count_every_request(rows, duration_s, concurrency):
    results = [RequestResult(latency, latency / 2 if ok else None, tokens, "a" if ok else "", None if ok else "boom")
               for latency, ok, tokens in rows]
    level = LevelResult.from_requests(concurrency, results, duration_s)
    answered = sum(ok for _, ok, _ in rows)
    assert level.requests == len(rows) and level.errors == len(rows) - answered
    assert level.error_reasons == ({"boom": level.errors} if level.errors else {})
    assert level.requests_per_s * duration_s == pytest.approx(answered)
    if answered:
        assert level.latency_p50_s <= level.latency_p95_s <= level.latency_p99_s
    else:
        assert level.latency_p50_s is None and level.ttft_p50_s is None
    assert len(level.answers) == len(rows) and sum(a is None for a in level.answers) == level.errors


@pytest.mark.parametrize("bad", [{"levels": (2, 1)}, {"levels": ()}, {"latency_slo_s": math.nan},
                                 {"max_tokens": 0}, {"min_gain": -0.1}, {"prompts": []}])
def test_bad_settings_are_refused_before_any_request(bad):
    settings = {"prompts": ["x"], "latency_slo_s": 1.0, "max_tokens": 4} | bad
    with pytest.raises(ConfigError, match="bad load test settings"):
        sweep("http://127.0.0.1:9/v1", "m", **settings)


@pytest.mark.parametrize("rates, stops", [((3.0, 3.05), False), ((3.0, 3.05, 3.1), True), ((3.0, 6.0, 6.1), False),
                                          ((3.0, 6.0, 6.1, 6.2), True), ((3.0, 2.0, 2.5), True)])
def test_the_sweep_stops_after_two_flat_levels_in_a_row(rates, stops):
    from models.loadtest import LevelResult, _stop_reason

    levels = [LevelResult(2 ** i, 8, 0, {}, 1.0, rate, rate * 10, 1.0, 1.0, 1.0, None, None, ())
              for i, rate in enumerate(rates)]
    reason = _stop_reason(levels, slo_s=60.0, min_gain=0.05)
    assert (reason is not None) == stops and (not stops or "2 levels in a row" in reason)
