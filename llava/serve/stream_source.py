"""Reading a video source into a `StreamingSession`: its frames with stream times (a resumed stream skips or
continues), and in batches that keep the frames read before a failing source's error.

    with open_video("clip.mp4") as reader:
        for batch in in_batches(timed_frames(reader, 1.0, session), FILE_BATCH_FRAMES):
            for event in session.push_timed_frames(batch):
                print(event)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from llava.errors import LlavaError
from llava.serve.streaming_session import StreamingSession
from llava.video.decode import VideoReader

FILE_BATCH_FRAMES = 32  # frames of a file pushed together when it is read as fast as possible
BATCH_BYTES = 96 * 2**20  # and at most this much of decoded frames: 32 frames of 720p, 3 of 4K


def timed_frames(reader: VideoReader, fps: float, session: StreamingSession) -> Iterator[tuple[float, np.ndarray]]:
    """The reader's frames at `fps`; after a resume a file skips what was seen, a live clock continues."""
    frames = reader.iter_frames(fps)
    if not session.frames_seen:
        yield from frames
    elif reader.num_frames is None:
        offset = session.state.last_time + 1.0 / fps
        yield from ((t + offset, frame) for t, frame in frames)
    else:
        clock = session.state.last_time + 1e-6
        yield from ((t, frame) for t, frame in frames if t > clock)


def in_batches(
    frames: Iterator[tuple[float, np.ndarray]], size: int, max_bytes: int = BATCH_BYTES
) -> Iterator[list[tuple[float, np.ndarray]]]:
    """Consecutive frames, `size` at a time, or fewer when they would hold more than `max_bytes` (the last batch
    may be shorter; a batch has at least one frame). When the source fails midway, the frames read before the
    failure come out as a last batch first, then the error is raised."""
    batch: list[tuple[float, np.ndarray]] = []
    held = 0
    try:
        for item in frames:
            batch.append(item)
            held += item[1].nbytes
            if len(batch) == size or held + item[1].nbytes > max_bytes:  # the next frame would not fit
                yield batch
                batch, held = [], 0
    except (LlavaError, OSError):
        if batch:
            yield batch
        raise
    if batch:
        yield batch
