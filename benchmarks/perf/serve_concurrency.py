"""How many requests to keep in flight against a local OpenAI-compatible server: `transformers serve` on this machine.

    python -m benchmarks.perf.serve_concurrency [--limit 8] [--concurrency 1,2,4,8] [--timeout 60] [--max-retries 5]

Starts `transformers serve` with the embedded SmolLM2-135M-Instruct on 127.0.0.1 (a free port; stopped at the end,
and with this process), then sends the first N spider fixture prompts through ftbench's chat backend once per
concurrency level, with no prediction cache. For each level it prints answered / errors, requests the server
received (retries included), wall time and per-item latency p50 / p95, so the default `--openai-concurrency` for
local servers (models.openai_api.LOCAL_CONCURRENCY) can be checked on any machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from benchmarks.data import resolve_data
    from benchmarks.stats import percentile
    from benchmarks.tasks import get_task
    from models.base import GenerationConfig
    from models.openai_api import Endpoint, OpenAIChatModel
    from models.weights import smollm2_folder

    task = get_task("spider")
    prompts = [task.prompt(e) for e in task.examples(resolve_data(args.data), task.eval_split)[: args.limit]]
    config = GenerationConfig(max_new_tokens=100, stop=tuple(task.stop))
    folder = smollm2_folder()[0]
    print(f"cpu cores: {os.cpu_count()}; {len(prompts)} spider prompts; timeout {args.timeout:g} s, "
          f"{args.max_retries} retries; server: transformers serve {folder}")
    print("| concurrency | answered | errors | requests received | wall s | p50 s | p95 s |")
    print("|---|---|---|---|---|---|---|")
    with transformers_serve(folder) as (base_url, counter):
        for level in args.concurrency:
            endpoint = Endpoint(str(folder), base_url, max_concurrency=level, max_retries=args.max_retries,
                                timeout_s=args.timeout)
            before, started = counter(), time.perf_counter()
            completions = OpenAIChatModel("smollm2-served", endpoint).generate(prompts, config)
            wall = time.perf_counter() - started
            answered = [c.latency_s for c in completions if c.error is None]
            p50, p95 = (f"{percentile(answered, q):.1f}" if answered else "-" for q in (50, 95))
            print(f"| {level} | {len(answered)} | {len(completions) - len(answered)} | {counter() - before} | "
                  f"{wall:.1f} | {p50} | {p95} |", flush=True)
            _drain(base_url)  # let abandoned requests finish before the next level is timed
    return 0


@contextmanager
def transformers_serve(folder: Path):
    """(base URL, count of chat requests received so far) of `transformers serve` on a free 127.0.0.1 port."""
    cli = Path(sys.executable).with_name("transformers")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ftbench-serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen([str(cli), "serve", str(folder), "--host", "127.0.0.1", "--port", str(port),
                                    "--device", "cpu", "--log-level", "info"], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://127.0.0.1:{port}/v1", lambda: log.read_text(errors="replace").count("POST /v1/chat/completions")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_for(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"transformers serve did not answer {url} within {timeout_s:g} s; see {log}")


def _drain(base_url: str, quiet_s: float = 3.0) -> None:
    """Wait until the server answers a health check quickly again (it computes abandoned requests to the end)."""
    health = base_url.removesuffix("/v1") + "/health"
    while True:
        started = time.perf_counter()
        with urllib.request.urlopen(health, timeout=600):
            pass
        if time.perf_counter() - started < 0.5:
            time.sleep(quiet_s)
            return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="fixtures")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--concurrency", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--max-retries", type=int, default=5)
    return parser


if __name__ == "__main__":
    sys.exit(main())
