"""pytest plugin for tests/test_serving_benchmark.py: the model server dies (SIGKILL) after the first measured level
of the concurrency sweep, as a crashed or OOM-killed server would. Writes the server's pid to $FTBENCH_TEST_SERVER_PID."""

from __future__ import annotations

import os
import signal

import models.loadtest
import models.serving

_servers: list = []
_start = models.serving.LocalServer.start
_sweep = models.loadtest.sweep


def _starting(self):
    _start(self)
    _servers.append(self)
    with open(os.environ["FTBENCH_TEST_SERVER_PID"], "w") as f:
        f.write(str(self.pid))


def _sweep_then_kill(*args, on_level=None, **kwargs):
    """The concurrency sweep (not the one-level answer check before it) loses its server after its first level."""
    def killing(level):
        if on_level is not None:
            on_level(level)
        os.killpg(_servers[-1].pid, signal.SIGKILL)

    rising = len(kwargs.get("levels", ())) > 1
    return _sweep(*args, on_level=killing if rising else on_level, **kwargs)


models.serving.LocalServer.start = _starting
models.loadtest.sweep = _sweep_then_kill
