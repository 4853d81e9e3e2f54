"""Backends: what prepares, prices and guards each kind of catalog entry, behind one interface (`base.Backend`).

The runner asks `backend_for(entry)` and never names a backend. Adding one (another priced API, a serving engine) is
one module implementing `Backend`, plus one line in BACKENDS keyed by the entries' `backend` attribute.
"""

from __future__ import annotations

from models.backends.base import Backend, PreparedModel, TrainingData, Workload
from models.backends.local import LocalBackend
from models.backends.openai import OpenAIBackend

BACKENDS: dict[str, Backend] = {
    "hf": LocalBackend(),
    "openai": OpenAIBackend(),
}


def backend_for(entry) -> Backend:
    """The backend of a catalog entry (its `backend` attribute names it)."""
    try:
        return BACKENDS[entry.backend]
    except KeyError:
        raise KeyError(f"catalog entry {entry.name!r} names backend {entry.backend!r}, which is not registered; "
                       f"known: {sorted(BACKENDS)} (add it to models.backends.BACKENDS)") from None


__all__ = ["BACKENDS", "Backend", "PreparedModel", "TrainingData", "Workload", "backend_for"]
