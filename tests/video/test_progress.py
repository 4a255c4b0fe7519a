"""The decode progress bar: drawn on a terminal once a decode outlasts `progress_delay`, never on a pipe, and the
frames are the same with or without it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from llava.video.decode import open_video
from tests.video.conftest import NUM_FRAMES, TOL, level


class Terminal(io.StringIO):
    """A stderr that says it is a terminal and keeps what is written to it."""

    def isatty(self) -> bool:
        return True


def decode_all(clip: Path, stderr: io.StringIO, monkeypatch: pytest.MonkeyPatch, delay: float) -> np.ndarray:
    monkeypatch.setattr(sys, "stderr", stderr)
    with open_video(clip) as video:
        video.progress_delay = delay
        return video.get_frames(np.arange(NUM_FRAMES))


def test_a_bar_on_a_terminal_none_on_a_pipe_and_the_same_frames(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe, terminal = io.StringIO(), Terminal()
    quiet = decode_all(clip, pipe, monkeypatch, delay=0.0)
    shown = decode_all(clip, terminal, monkeypatch, delay=0.0)
    assert pipe.getvalue() == "", "nothing is written where stderr is not a terminal"
    assert "decoding" in terminal.getvalue() and f"/{NUM_FRAMES} " in terminal.getvalue(), "a bar over the frames"
    assert np.array_equal(shown, quiet)
    assert all(abs(int(frame.mean()) - level(i)) <= TOL for i, frame in enumerate(quiet))


def test_a_short_decode_prints_nothing_on_a_terminal(clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    frames = decode_all(clip, terminal, monkeypatch, delay=60.0)
    assert terminal.getvalue() == "" and len(frames) == NUM_FRAMES
