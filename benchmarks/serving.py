"""The serving benchmark of one task x model: the evaluated model behind a real OpenAI-compatible server, proven to
be the same model, driven at rising concurrency, and priced per 1K requests at the latency SLO.

The walk: start the server the entry's backend describes (`transformers serve` on CPU with the adapter merged,
`vllm serve` on a GPU with the adapter applied), send the first CHECKED_ITEMS eval prompts one at a time without
streaming and compare the answers with the in-process ones (greedy, same prompt text through /v1/completions), then
sweep concurrency 1, 2, 4, ... over the eval prompts (models.loadtest). The server is stopped whatever happens.

Deploy cost (self-hosted): the hardware's hourly price (the price table) / the requests per hour sustained within the
SLO x 1000. The record keeps every level measured, also when the server died mid-sweep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import record as rec
from benchmarks.runner import Settings, eval_examples, generation_config
from benchmarks.tasks import Task
from models.backends import PreparedModel, backend_for
from models import progress
from models.errors import FtbenchError
from models.pricing import detect_hardware

CHECKED_ITEMS = 8
"""Eval items whose served answers must equal the in-process ones."""
KIND = "serving"


@dataclass(frozen=True)
class ServingOptions:
    latency_slo_s: float = 10.0
    """p95 end-to-end latency a level must stay within to count as sustainable (--latency-slo)."""
    levels: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    requests_per_level: int = 4
    """Each level sends max(this x concurrency, eval prompts) requests."""
    timeout_s: float = 120.0
    """Bound on each request, so a dead or stuck server never hangs the sweep."""


class ServingFailed(AssertionError):
    """The server died, answered differently from the evaluated model, or met the SLO at no level."""


def run_serving(entry, task: Task, prepared: PreparedModel, settings: Settings, options: ServingOptions,
                save: Callable[[dict[str, Any]], None], device: str = "cpu") -> dict[str, Any]:
    """Serve, prove, sweep and price. `save` receives the record as it grows, so whatever stops the run, what was
    measured is recorded. A run that cannot stand for the deployment (the server died, answered differently from
    the evaluated model, or met the SLO at no level) returns a record whose `failure` says why and carries the
    server's last log lines: `check` turns it into the test's failure."""
    from models.loadtest import sweep

    server = backend_for(entry).server(entry, prepared, device)
    if server is None:
        raise ServingFailed(f"{entry.name} is served by its provider: there is no server to benchmark here")
    examples = eval_examples(task, settings)
    config = generation_config(task, settings)
    prompts = [task.prompt(e) for e in examples]
    checked = prompts[:CHECKED_ITEMS]
    expected = [c.text if c.error is None else None for c in prepared.model.generate(checked, config)]
    record = _record(entry, task, prepared, settings, options, server)
    progress.announce(f"starting {server.engine} serve on 127.0.0.1 ({device})...")
    try:
        server.start()
    except FtbenchError as err:  # it never answered: the record says why, with the log the error carries
        record["failure"] = f"{task.name} x {entry.name}: the server did not start: {err}"
        save(record)
        return record
    try:  # stopped whatever happens below (its process group, children included)
        record["server"] |= {"command": " ".join(server.command()), "model_id": server.model_id}
        started = time.perf_counter()
        proof = sweep(server.base_url, server.model_id, [p.text for p in checked], latency_slo_s=1e9,
                      max_tokens=config.max_new_tokens, stop=config.stop, levels=(1,), requests_per_level=1,
                      min_gain=None, timeout_s=options.timeout_s, stream=False, warmup=0)
        record["equal_answers"] = _equal_answers(proof, expected)
        record["failure"] = _proof_failure(record, proof, server, entry)
        progress.announce(f"answer check: {record['equal_answers']['mismatches']} of {len(checked)} served answers "
                          f"differ from the evaluated model's")
        save(record)
        if record["failure"]:
            return record
        progress.announce(f"sweeping concurrency {', '.join(map(str, options.levels[:3]))}, ... over {len(prompts)} "
                          f"prompts until p95 passes {options.latency_slo_s:g} s or throughput stops rising")
        result = sweep(server.base_url, server.model_id, [p.text for p in prompts],
                       latency_slo_s=options.latency_slo_s, max_tokens=config.max_new_tokens, stop=config.stop,
                       levels=options.levels, requests_per_level=options.requests_per_level,
                       timeout_s=options.timeout_s,
                       on_level=lambda level: _measured(level, record, save))
        record = _with_sweep(record, result, settings, time.perf_counter() - started)
        record["cost_usd"] |= _training_cost(entry, prepared, settings)
        if result.server_failed or not server.alive():
            record["failure"] = (f"{task.name} x {entry.name}: {result.stopped_by}; the record keeps "
                                 f"{len(result.levels)} level(s). Server: {server.failure() or 'stopped'}\n"
                                 f"--- last server log lines ---\n{server.log_tail(20)}")
    finally:
        server.stop()
    if record["failure"] is None and record["sustainable"] is None:
        record["failure"] = (f"{task.name} x {entry.name}: no concurrency level kept p95 latency within the SLO "
                             f"{options.latency_slo_s:g} s without errors ({result.stopped_by}); raise "
                             f"--latency-slo or serve on faster hardware")
    save(record)
    return record


def check(record: dict[str, Any]) -> None:
    """Fail (ServingFailed) when the serving run cannot stand for the deployment; its record is kept either way."""
    if record.get("failure"):
        raise ServingFailed(record["failure"])


def _record(entry, task: Task, prepared: PreparedModel, settings: Settings, options: ServingOptions,
            server) -> dict[str, Any]:
    hardware = detect_hardware()
    return {"schema": rec.SCHEMA, "kind": KIND, "task": task.name, "model": entry.name,
            "model_fingerprint": prepared.model.fingerprint(),
            "server": {"engine": server.engine, "command": None, "device": server.device},
            "data": settings.data.to_json() | {"split": task.eval_split, "n": len(eval_examples(task, settings))},
            "latency_slo_s": options.latency_slo_s, "failure": None, "equal_answers": None, "levels": [],
            "stopped_by": None,
            "sustainable": None, "cost_usd": None, "machine": rec.machine_info(hardware.description, hardware.key)}


def _equal_answers(proof, expected: Sequence[str | None]) -> dict[str, Any]:
    level = proof.levels[0] if proof.levels else None
    served = list(level.answers) if level else []
    differ = [{"item": i, "served": s, "in_process": e} for i, (s, e) in enumerate(zip(served, expected))
              if s is not None and e is not None and s != e]
    return {"checked": len(expected), "answered": sum(s is not None for s in served), "mismatches": len(differ),
            "first_mismatches": differ[:3]}


def _proof_failure(record: dict[str, Any], proof, server, entry) -> str | None:
    equal = record["equal_answers"]
    if proof.server_failed or equal["answered"] < equal["checked"]:
        return (f"{entry.name}: the server did not answer every check request ({proof.stopped_by}). "
                f"Server: {server.failure() or 'running'}\n--- last server log lines ---\n{server.log_tail(20)}")
    if equal["mismatches"]:
        return (f"{entry.name}: the served model answered {equal['mismatches']} of {equal['checked']} items "
                f"differently from the evaluated model, so its deploy figures would belong to another model; "
                f"first: {equal['first_mismatches'][0]}")
    return None


def _measured(level, record: dict[str, Any], save: Callable[[dict[str, Any]], None]) -> None:
    """Each level is shown and recorded as it ends (a crash mid-sweep keeps it)."""
    p95 = "-" if level.latency_p95_s is None else f"{level.latency_p95_s:.2f} s"
    progress.announce(f"concurrency {level.concurrency}: {level.requests_per_s:.3g} requests/s, "
                      f"{level.output_tokens_per_s:.3g} tokens/s, p95 {p95}, {level.errors} errors")
    record["levels"] = [*record["levels"], level.to_json()]
    save(record)


def _with_sweep(record: dict[str, Any], result, settings: Settings, wall_s: float) -> dict[str, Any]:
    data = result.to_json()
    best = result.sustainable
    record.update(levels=data["levels"], stopped_by=result.stopped_by, server_failed=result.server_failed,
                  wall_s=wall_s, sustainable=None if best is None else {
                      "concurrency": best.concurrency, "requests_per_s": best.requests_per_s,
                      "output_tokens_per_s": best.output_tokens_per_s, "latency_p95_s": best.latency_p95_s})
    record["cost_usd"] = deploy_cost(best.requests_per_s if best else None, record["machine"]["hardware_key"],
                                     settings)
    return record


def _training_cost(entry, prepared: PreparedModel, settings: Settings) -> dict[str, Any]:
    """The training cost beside the deploy cost, as the benchmark record computes it (0 for a base model)."""
    if not prepared.training:
        return {"train": 0.0, "train_basis": None}
    usd, basis = backend_for(entry).training_cost(prepared.training, settings.prices)
    return {"train": usd, "train_basis": basis}


def deploy_cost(requests_per_s: float | None, hardware_key: str, settings: Settings) -> dict[str, Any]:
    """USD per 1K requests of one instance of this hardware at its sustainable throughput."""
    prices = settings.prices
    rate = prices.hourly_rate(hardware_key)
    per_hour = requests_per_s * 3600 if requests_per_s else None
    usd = rate / per_hour * 1000 if rate is not None and per_hour else None
    basis = (f"${rate}/h ({hardware_key}) / {per_hour:,.0f} requests/h sustained within the SLO x 1000"
             if usd is not None else
             f"unknown: {'no level met the SLO' if not per_hour else f'no hourly price for {hardware_key!r}'}")
    return {"deploy_per_1k_requests": usd, "hourly": rate, "requests_per_hour": per_hour, "basis": basis,
            "prices_date": prices.date, "price_file": prices.source}
