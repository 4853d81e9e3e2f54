"""Live: two real requests to OpenAI (a fraction of a cent). Runs only with --run-paid and OPENAI_API_KEY set.

The model is $FTBENCH_LIVE_MODEL (default gpt-4o-mini); it goes through the same runner path as a benchmark:
price lookup, cost guard, prediction cache, token-priced record.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = [
    pytest.mark.paid,
    pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY (and --run-paid)"),
]


def test_live_chat_completions_are_token_priced_and_cached(monkeypatch, tmp_path):
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings, build_record, eval_examples, prepare_model, timed_generate
    from benchmarks.tasks import get_task
    from models import catalog
    from models.pricing import load_prices

    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path / "predictions"))
    settings = Settings(data=resolve_data("fixtures"), limit=2, prices=load_prices(), max_new_tokens=40,
                        progress=False, allow_paid=True, max_cost_usd=0.05,
                        openai=OpenAISettings(base_url="https://api.openai.com/v1",
                                              model=os.environ.get("FTBENCH_LIVE_MODEL", "gpt-4o-mini")))
    task, entry = get_task("viggo"), catalog.get("openai-compatible")

    def run():
        prepared = prepare_model(entry, task, settings)
        examples = eval_examples(task, settings)
        completions, wall_s = timed_generate(prepared.model, examples, task, settings)
        scores = task.score(examples, [c.text for c in completions], settings.data)
        record = build_record(task, entry, prepared, examples, completions, scores, wall_s, settings)
        return completions, record.to_json()

    completions, record = run()
    assert all(c.error is None and c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0 for c in completions)
    assert record["cost_usd"]["eval"] > 0 and record["cost_usd"]["pricing"]["eval"].startswith("tokens:")
    cached, again = run()
    assert all(c.cached for c in cached) and again["predictions"] == record["predictions"]
    assert os.environ["OPENAI_API_KEY"] not in json.dumps(record)
