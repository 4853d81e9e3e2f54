"""A dated price table and the arithmetic that turns measured usage into dollars.

Nothing here types a cost in: callers pass seconds and token counts they measured.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ConfigError, UnknownNameError

DEFAULT_PRICE_FILE = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True)
class PriceTable:
    """Prices as read from one TOML file."""

    date: str
    """When the list prices were read; recorded next to every cost."""
    hardware: dict[str, float]
    """USD per hour by hardware key ('cpu', 'a40', ...)."""
    openai: dict[str, dict[str, float]] = field(default_factory=dict)
    """USD per 1M tokens by base model: 'training', 'input', 'output'."""
    source: str = ""

    def hourly_rate(self, hardware_key: str) -> float:
        """USD per hour for a hardware key; unknown GPUs fall back to 'gpu'."""
        if hardware_key in self.hardware:
            return self.hardware[hardware_key]
        if hardware_key != "cpu" and "gpu" in self.hardware:
            return self.hardware["gpu"]
        raise UnknownNameError("hardware", hardware_key, self.hardware)

    def token_prices(self, model: str) -> dict[str, float]:
        if model not in self.openai:
            raise UnknownNameError("priced model", model, self.openai)
        return self.openai[model]

    def to_json(self) -> dict[str, Any]:
        return {"date": self.date, "source": self.source}


@functools.cache
def load_prices(path: str | Path | None = None) -> PriceTable:
    """Read a price table: `path`, else $FTBENCH_PRICES, else the packaged prices.toml."""
    path = Path(path or os.environ.get("FTBENCH_PRICES") or DEFAULT_PRICE_FILE)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read price table {path}: {err}. Fix the file or pass another with --prices.") from err
    missing = [key for key in ("date", "hardware") if key not in raw]
    if missing:
        raise ConfigError(f"price table {path} lacks {missing}; see {DEFAULT_PRICE_FILE} for the layout.")
    problems = price_problems(raw)
    if problems:
        raise ConfigError(f"price table {path}: " + "; ".join(problems) + ". Prices are USD numbers >= 0.")
    openai = {name: {k: float(v) for k, v in prices.items() if k != "note"} for name, prices in raw.get("openai", {}).items()}
    return PriceTable(str(raw["date"]), {k: float(v) for k, v in raw["hardware"].items()}, openai, str(path))


def price_problems(raw: dict[str, Any]) -> list[str]:
    """Every price that is not a finite number >= 0, by its TOML path.

    >>> price_problems({"hardware": {"a40": "cheap", "cpu": 0.1}, "openai": {"gpt": {"input": -1, "note": "x"}}})
    ["hardware.a40 = 'cheap'", 'openai.gpt.input = -1']
    """
    sections = [("hardware", raw.get("hardware"))]
    openai = raw.get("openai", {})
    if not isinstance(openai, dict):
        return [f"openai = {openai!r} should be a table of [openai.<model>] sections"]
    sections += [(f"openai.{name}", prices) for name, prices in openai.items()]
    problems = []
    for where, table in sections:
        if not isinstance(table, dict):
            problems.append(f"{where} = {table!r} should be a table")
            continue
        problems += [f"{where}.{key} = {value!r}" for key, value in table.items()
                     if key != "note" and not _is_price(value)]
    return problems


def _is_price(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


def hardware_cost(seconds: float, usd_per_hour: float) -> float:
    """Rental cost of `seconds` of wall time.

    >>> round(hardware_cost(7 * 3600, 0.475), 2)   # the seed's SQL LoRA job on an A40
    3.32
    """
    if seconds < 0 or usd_per_hour < 0:
        raise ValueError(f"seconds and rate must be >= 0, got seconds={seconds}, usd_per_hour={usd_per_hour}")
    return seconds / 3600 * usd_per_hour


def token_cost(tokens: int, usd_per_million: float) -> float:
    """Cost of `tokens` at a per-1M-token price.

    >>> round(token_cost(2_150_968, 8.00), 2)   # the seed's ViGGO job: trained_tokens at $0.008/1K
    17.21
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    return tokens / 1e6 * usd_per_million


@dataclass(frozen=True)
class Hardware:
    """The machine a job ran on, as recorded and priced."""

    key: str
    """Price table key: 'cpu', or a GPU family such as 'a40', 'h100', else 'gpu'."""
    description: str
    """Human-readable: CPU model and core count, or GPU name and count."""


@functools.cache
def detect_hardware() -> Hardware:
    """The GPU if torch sees one, else the CPU model and the cores this process may use."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        key = next((k for k in ("a40", "a100", "h100", "h200", "l4", "a10", "t4") if k in name.lower()), "gpu")
        return Hardware(key, f"{torch.cuda.device_count()} x {name}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Hardware("cpu", f"{_cpu_model()} ({cores} cores)")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
