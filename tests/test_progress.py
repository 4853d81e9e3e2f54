"""Progress: one updating line on a terminal, a line per phase start and end elsewhere, only warnings when quiet."""

from __future__ import annotations

import io

import pytest

from models import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def display():
    def use(stream, **kwargs):
        previous = progress.install(progress.Display(stream=stream, **kwargs))
        restore.append(previous)
        return stream
    restore: list[progress.Display] = []
    yield use
    for previous in restore:
        progress.install(previous)


def test_not_a_tty_prints_one_line_at_start_and_one_at_the_end(display):
    out = display(io.StringIO())
    with progress.labelled("spider-smollm2-135m-lora"), progress.Phase("LoRA training (fp32)", 3, "step") as phase:
        for _ in range(3):
            phase.update(1, loss="1.234")
    lines = out.getvalue().splitlines()
    assert lines[0] == "ftbench: spider-smollm2-135m-lora: LoRA training (fp32): 3 steps..."
    assert lines[1].startswith("ftbench: spider-smollm2-135m-lora: LoRA training (fp32): done, 3/3 steps in ")
    assert lines[1].endswith(", loss 1.234") and " step/s" in lines[1] and len(lines) == 2


def test_a_tty_gets_an_updating_bar_with_rate_and_eta(display):
    out = display(_Tty())
    with progress.labelled("viggo-smollm2-135m"), progress.Phase("generating", 16, "item") as phase:
        for _ in range(16):
            phase.update(1)
    text = out.getvalue()
    assert "\r" in text and "ftbench: viggo-smollm2-135m: generating" in text and "16/16" in text
    assert "item/s" in text and "<" in text  # tqdm's "elapsed<remaining" ETA


def test_quiet_keeps_only_warnings(display):
    out = display(io.StringIO(), quiet=True)
    progress.announce("converting the GGUF")
    with progress.Phase("LoRA training", 2, "step") as phase:
        phase.update(2)
    progress.warn("bf16 is emulated here")
    assert out.getvalue() == "ftbench: warning: bf16 is emulated here\n"


def test_a_disabled_phase_prints_nothing(display):
    out = display(_Tty())
    with progress.Phase("generating", 4, "item", enabled=False) as phase:
        phase.update(4)
    assert out.getvalue() == ""
