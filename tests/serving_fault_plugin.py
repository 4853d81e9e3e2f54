"""pytest plugin for tests/test_serving_benchmark.py: the model server dies (SIGKILL) after the first measured level
of the concurrency sweep, as a crashed or OOM-killed server would. Writes the server's pid to $FTBENCH_TEST_SERVER_PID."""

from __future__ import annotations

import os
import signal

import models.loadtest
import models.serving

_servers: list = []
_enter = models.serving.LocalServer.__enter__
_sweep = models.loadtest.sweep


def _entering(self):
    server = _enter(self)
    _servers.append(server)
    with open(os.environ["FTBENCH_TEST_SERVER_PID"], "w") as f:
        f.write(str(server.pid))
    return server


def _sweep_then_kill(*args, on_level=None, **kwargs):
    """The concurrency sweep (not the one-level answer check before it) loses its server after its first level."""
    def killing(level):
        if on_level is not None:
            on_level(level)
        os.killpg(_servers[-1].pid, signal.SIGKILL)

    rising = len(kwargs.get("levels", ())) > 1
    return _sweep(*args, on_level=killing if rising else on_level, **kwargs)


models.serving.LocalServer.__enter__ = _entering
models.loadtest.sweep = _sweep_then_kill
