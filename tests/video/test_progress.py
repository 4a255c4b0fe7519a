"""The decode progress bar: drawn on a terminal once a decode outlasts `progress_delay`, never on a pipe, and the
frames are the same with or without it."""

from __future__ import annotations

import io
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from llava.video.decode import open_video
from llava.video.reader import VideoReader
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


class FourKFrames(VideoReader):
    """Four 4K frames, each noting as it is made whether anything still holds the one before it."""

    def __init__(self) -> None:
        super().__init__("4k", np.arange(4) / 25.0, 25.0, (3840, 2160))
        self.previous_held: list[bool] = []

    def _decode(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        previous: weakref.ref[np.ndarray] | None = None
        for _ in indices:
            self.previous_held.append(previous is not None and previous() is not None)
            frame = np.zeros((2160, 3840, 3), np.uint8)
            previous = weakref.ref(frame)
            yield frame
            del frame


@pytest.mark.parametrize("stderr", [io.StringIO, Terminal])
def test_a_frame_is_let_go_of_before_the_next_is_decoded_with_or_without_a_bar(
    stderr: type[io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a transform, at most one full-size frame is alive at a time, the bar drawn or not."""
    monkeypatch.setattr(sys, "stderr", stderr())
    video = FourKFrames()
    video.progress_delay = 0.0
    means = video.get_frames(np.arange(4), lambda batch: torch.zeros(len(batch)))
    assert means.shape == (4,) and video.previous_held == [False] * 4
