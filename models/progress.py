"""Progress on long work (training, generation, one-time conversions), wherever the user is looking.

One `Display` says where progress goes. On a terminal, each phase is one updating line (tqdm: done / total, rate,
ETA); elsewhere (CI logs, pipes) a phase prints one line when it starts and one when it ends; `quiet` keeps only
warnings. The pytest plugin in benchmarks/conftest.py installs a display that writes around pytest's output
capture, so a benchmark shows its training and generation without `-s`.

A phase's line starts with the current label (e.g. the pair 'spider-smollm2-135m-lora'), set with `labelled()` by
whoever knows it, so the code that trains or generates need not.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass
class Display:
    """Where progress goes and how."""

    stream: TextIO | None = None
    """None: sys.stderr at the time of writing."""
    live: bool | None = None
    """Updating bars; None: when the stream is a TTY."""
    quiet: bool = False
    """Only warnings."""

    def out(self) -> TextIO:
        return self.stream or sys.stderr

    def is_live(self) -> bool:
        if self.live is not None:
            return self.live
        isatty = getattr(self.out(), "isatty", None)
        return bool(isatty and isatty())


_display = Display()
_label: ContextVar[str] = ContextVar("ftbench_progress_label", default="")


def install(display: Display) -> Display:
    """Make `display` the destination of all progress; returns the previous one (to restore it)."""
    global _display
    previous, _display = _display, display
    return previous


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Prefix every phase line inside the block with `label`."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


def _prefixed(text: str) -> str:
    label = _label.get()
    return f"ftbench: {label}: {text}" if label else f"ftbench: {text}"


def _write_line(text: str) -> None:
    stream = _display.out()
    stream.write(text + "\n")
    stream.flush()


def announce(text: str) -> None:
    """One line about a phase (e.g. 'converting the GGUF (about 15 s, once)'), unless quiet."""
    if not _display.quiet:
        _write_line(_prefixed(text))


def warn(text: str) -> None:
    """One line the user must see, even when quiet."""
    _write_line(_prefixed(f"warning: {text}"))


class Phase:
    """A counted phase: `update()` as work gets done; an updating bar when live, start and end lines otherwise."""

    def __init__(self, name: str, total: int | None, unit: str, *, enabled: bool = True, initial: int = 0):
        self.name, self.total, self.unit, self.n = name, total, unit, initial
        self._initial, self._started, self._postfix = initial, time.perf_counter(), {}
        self._enabled = enabled and not _display.quiet
        self._bar = None
        if not self._enabled:
            return
        if _display.is_live():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=_prefixed(name), unit=unit, file=_display.out(),
                             ncols=110, mininterval=0.5, leave=True)
        else:
            size = f"{total} {unit}s" if total is not None else f"counting {unit}s"
            since = f", resuming at {initial}" if initial else ""
            _write_line(_prefixed(f"{name}: {size}{since}..."))

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        self._postfix = postfix or self._postfix
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._enabled:
            seconds = time.perf_counter() - self._started
            done = self.n - self._initial
            rate = f", {done / seconds:.2f} {self.unit}/s" if seconds > 0 and done else ""
            last = "".join(f", {k} {v}" for k, v in self._postfix.items())
            _write_line(_prefixed(f"{self.name}: done, {self.n}{'/' + str(self.total) if self.total else ''} "
                                  f"{self.unit}s in {seconds:.1f} s{rate}{last}"))
            self._enabled = False

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
