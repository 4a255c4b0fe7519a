"""Reading a source into a stream: stream times after a resume, and batches that survive a failing source."""

import numpy as np
import pytest

from llava.errors import VideoError
from llava.model.builder import load_pretrained_model
from llava.serve.stream_source import in_batches, timed_frames
from llava.serve.streaming_session import StreamingSession


class FakeReader:
    """Four frames (their index stands for the pixels); num_frames None = a live source."""

    def __init__(self, num_frames):
        self.num_frames = num_frames

    def iter_frames(self, fps):
        return ((i / fps, i) for i in range(4))


def test_resume_skips_seen_frames_of_a_file_and_continues_a_live_clock(tiny_checkpoint):
    tokenizer, model, processor, _ = load_pretrained_model(tiny_checkpoint, device="cpu")
    session = StreamingSession(model, tokenizer, processor)
    assert list(timed_frames(FakeReader(4), 2.0, session)) == [(0.0, 0), (0.5, 1), (1.0, 2), (1.5, 3)]
    session.state.open_seen, session.state.last_time = 3, 1.0  # as restored from a state saved at 1 s
    assert list(timed_frames(FakeReader(4), 2.0, session)) == [(1.5, 3)]
    assert [t for t, _ in timed_frames(FakeReader(None), 2.0, session)] == [1.5, 2.0, 2.5, 3.0]


def tiny_frames(count: int):
    """(time, frame) pairs of 1-pixel frames whose value is their index."""
    return ((float(i), np.full((1, 1, 3), i, np.uint8)) for i in range(count))


def failing_after(count: int):
    yield from tiny_frames(count)
    raise VideoError("decoding failed (corrupt packet)")


def test_batches_keep_the_frames_read_before_a_failure():
    assert [len(b) for b in in_batches(tiny_frames(7), 3)] == [3, 3, 1]
    batches = []
    with pytest.raises(VideoError, match="corrupt packet"):
        for batch in in_batches(failing_after(5), 3):
            batches.append([int(frame[0, 0, 0]) for _, frame in batch])
    assert batches == [[0, 1, 2], [3, 4]]


def test_batches_hold_at_most_max_bytes_of_frames():
    frames = [(float(i), np.zeros((100, 100, 3), np.uint8)) for i in range(10)]  # 30 000 bytes each
    assert [len(b) for b in in_batches(iter(frames), 8, max_bytes=100_000)] == [3, 3, 3, 1]
    assert [len(b) for b in in_batches(iter(frames), 8, max_bytes=1)] == [1] * 10  # one frame at least

