"""A dated price table and the arithmetic that turns measured usage into dollars.

Nothing here types a cost in: callers pass seconds and token counts they measured.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.errors import ConfigError, UnknownNameError

DEFAULT_PRICE_FILE = Path(__file__).with_name("prices.toml")


KINDS = ("base", "finetuned")
"""Sections of [openai.*]: a base model's inference prices, a fine-tuned model's training and inference prices."""


@dataclass(frozen=True)
class PriceTable:
    """Prices as read from one TOML file."""

    date: str
    """When the list prices were read; recorded next to every cost."""
    hardware: dict[str, float]
    """USD per hour of one device by hardware key ('cpu', 'a40', 'h100', ...)."""
    openai: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    """USD per 1M tokens by kind ('base', 'finetuned') and model family: 'input', 'output' (+ 'training')."""
    source: str = ""

    def hourly_rate(self, hardware_key: str) -> float | None:
        """USD per hour of one device, or None for hardware the table does not price (never a guessed default)."""
        return self.hardware.get(hardware_key)

    def token_prices(self, model: str, *, finetuned: bool) -> dict[str, float]:
        """Prices of a model family (`model` may be a snapshot id such as gpt-4o-mini-2024-07-18, or a fine-tuned
        id 'ft:gpt-4o-mini-2024-07-18:org::id'), from the section of its kind: a fine-tuned model costs more."""
        kind = "finetuned" if finetuned else "base"
        family = self.family_of(model, finetuned=finetuned)
        if family is None:
            raise UnknownNameError(f"priced {kind} model", model, self.openai.get(kind, {}))
        return self.openai[kind][family]

    def family_of(self, model: str, *, finetuned: bool) -> str | None:
        """The [openai.<kind>.<family>] section a model id belongs to: the family itself or the family plus a
        snapshot suffix, so that gpt-4o-mini-search-preview is not silently billed as gpt-4o-mini.

        >>> table = PriceTable("d", {}, {"base": {"gpt-4o-mini": {}, "gpt-3.5-turbo": {}}})
        >>> [table.family_of(m, finetuned=False) for m in ("gpt-4o-mini-2024-07-18", "gpt-3.5-turbo-0125",
        ...                                                "gpt-4o-mini-search-preview", "ft:gpt-4o-mini:o::x")]
        ['gpt-4o-mini', 'gpt-3.5-turbo', None, 'gpt-4o-mini']
        """
        model_id = model.removeprefix("ft:").split(":")[0]  # ft:<base snapshot>:<org>:<suffix>:<id>
        sections = self.openai.get("finetuned" if finetuned else "base", {})
        return next((f for f in sections if re.fullmatch(re.escape(f) + r"(-\d{4}(-\d\d-\d\d)?)?", model_id)), None)

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
        raise ConfigError(f"price table {path}: " + "; ".join(problems) + ". Prices are USD numbers >= 0; see "
                          f"{DEFAULT_PRICE_FILE} for the layout.")
    openai = {kind: {name: {k: float(v) for k, v in prices.items() if k != "note"} for name, prices in families.items()}
              for kind, families in raw.get("openai", {}).items()}
    return PriceTable(str(raw["date"]), {k: float(v) for k, v in raw["hardware"].items()}, openai, str(path))


def price_problems(raw: dict[str, Any]) -> list[str]:
    """Every price that is not a finite number >= 0, and every section out of place, by its TOML path.

    >>> price_problems({"hardware": {"a40": "cheap", "cpu": 0.1},
    ...                 "openai": {"base": {"gpt": {"input": -1, "note": "x"}}, "gpt-4o": {"input": 1}}})[:2]
    ["hardware.a40 = 'cheap'", 'openai.base.gpt.input = -1']
    >>> price_problems({"hardware": {}, "openai": {"gpt-4o": {"input": 1}}})[0][:66]
    'openai.gpt-4o: expected [openai.base.<model>] or [openai.finetuned'
    """
    sections = [("hardware", raw.get("hardware"))]
    openai = raw.get("openai", {})
    if not isinstance(openai, dict):
        return [f"openai = {openai!r} should be a table of [openai.base.<model>] and [openai.finetuned.<model>] sections"]
    problems = [f"openai.{kind}: expected [openai.base.<model>] or [openai.finetuned.<model>] (a base and a "
                f"fine-tuned model have different prices)" for kind in openai if kind not in KINDS]
    for kind in KINDS:
        families = openai.get(kind, {})
        if not isinstance(families, dict):
            problems.append(f"openai.{kind} = {families!r} should be a table")
            continue
        sections += [(f"openai.{kind}.{name}", prices) for name, prices in families.items()]
    found = []
    for where, table in sections:
        if not isinstance(table, dict):
            found.append(f"{where} = {table!r} should be a table")
            continue
        found += [f"{where}.{key} = {value!r}" for key, value in table.items() if key != "note" and not _is_price(value)]
    return found + problems


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


GPU_KEYS = ("a40", "a100", "h100", "h200", "l4", "l40s", "a10", "t4")
"""GPU families ftbench prices (prices.toml [hardware]); an A100 is keyed by its memory, a100-40gb or a100-80gb."""


@dataclass(frozen=True)
class Hardware:
    """The machine a job ran on, as recorded and priced."""

    key: str
    """Price table key: 'cpu', a GPU family such as 'a40', 'a100-80gb', 'h100', or 'unknown' (no price)."""
    description: str
    """Human-readable: CPU model and core count, or GPU name and count."""
    devices: int = 1
    """Devices this process runs on, each billed at the hourly rate: the GPUs it uses (one per process under a
    multi-process launch, else every visible GPU: device_map="auto" spreads the model over them); 1 for a CPU
    machine."""

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "description": self.description, "devices": self.devices}


def gpu_key(name: str, memory_gib: float) -> str:
    """The price key of a GPU: a word of its name equal to a known family (so an L40S is never an L4 and an
    A10G never an A10), else 'unknown'.

    >>> [gpu_key(n, 80) for n in ("NVIDIA L40S", "NVIDIA L4", "NVIDIA H100 80GB HBM3", "NVIDIA H200", "Tesla T4")]
    ['l40s', 'l4', 'h100', 'h200', 't4']
    >>> gpu_key("NVIDIA A100-SXM4-80GB", 79.2), gpu_key("NVIDIA A100-PCIE-40GB", 39.4)
    ('a100-80gb', 'a100-40gb')
    >>> gpu_key("NVIDIA A10G", 22), gpu_key("NVIDIA L40", 44), gpu_key("NVIDIA GeForce RTX 4090", 24)
    ('unknown', 'unknown', 'unknown')
    """
    for word in re.split(r"[\s_-]+", name.lower()):
        if word == "a100":  # two memory sizes, two prices; the 40 GB card reports ~39.4 GiB
            return "a100-80gb" if memory_gib > 48 else "a100-40gb"
        if word in GPU_KEYS:
            return word
    return "unknown"


@functools.cache
def detect_hardware() -> Hardware:
    """The GPU if torch sees one, else the CPU model and the cores this process may use. An unpriceable GPU is
    warned about once, on stderr: its costs are recorded as null, never at a guessed rate."""
    import torch

    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        key = gpu_key(name, torch.cuda.get_device_properties(0).total_memory / 2**30)
        if key == "unknown":
            print(f"ftbench: WARNING: no price key for GPU {name!r} (priced: {', '.join(GPU_KEYS)}); its costs are "
                  f"recorded as null with hardware key 'unknown'.", file=sys.stderr)
        visible = torch.cuda.device_count()
        per_process = 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else visible  # DDP: one GPU per process
        return Hardware(key, f"{visible} x {name}", per_process)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return Hardware("cpu", f"{_cpu_model()} ({cores} cores)")


def devices_billed(hardware: dict[str, Any], processes: int = 1) -> int:
    """How many devices a recorded run rented: GPUs = processes x GPUs per process; a CPU run is one machine
    however many processes share it. Records without 'devices' (older adapters) count one GPU per process.

    >>> devices_billed({"key": "a40", "devices": 1}, processes=2), devices_billed({"key": "cpu"}, processes=2)
    (2, 1)
    >>> devices_billed({"key": "h100", "devices": 4})
    4
    """
    if hardware.get("key") == "cpu":
        return 1
    return max(1, int(processes)) * int(hardware.get("devices", 1))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
