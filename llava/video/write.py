"""Write RGB frames to an h264 mp4 file, atomically (temp file in the same folder, then rename).

from llava.video.write import write_mp4
write_mp4(frames, "out/clip.mp4", fps=4)   # frames: iterable of uint8 arrays (H, W, 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from llava.atomic import atomic_path


def write_mp4(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "medium",
    threads: int = 0,
) -> Path:
    """Encode `frames` (uint8 RGB arrays, all of one shape (H, W, 3)) as h264/yuv420p mp4 at `path`.

    Frames are consumed one by one, so long videos never sit in memory. yuv420p needs even sizes: a frame
    with an odd height or width is padded by repeating its last row or column. The video is written to a
    temporary file next to `path` and renamed into place only once it is complete, so a failure (an
    exception from the frame iterator, a bad frame, an encoder error) leaves no partial file behind and an
    existing file at `path` untouched. Raises ValueError for no frames, a bad frame or a bad fps.
    `threads`: encoder threads, 0 lets x264 choose (1 is faster for many tiny clips).
    """
    if not fps or fps <= 0:
        raise ValueError(f"write_mp4: fps must be positive, got {fps!r}")
    path = Path(path)
    with atomic_path(path) as tmp:
        if _encode(frames, tmp, fps, crf, preset, threads) == 0:
            raise ValueError(f"write_mp4: no frames to write to {path}")
    return path


def _encode(frames: Iterable[np.ndarray], tmp: Path, fps: float, crf: int, preset: str, threads: int) -> int:
    """Encode the frames into `tmp`; return how many frames were written."""
    import av  # imported here: nothing heavy at import time

    rate = Fraction(fps).limit_denominator(1001)
    count = 0
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = None
        for frame in frames:
            array = _even_rgb(frame, count)
            if stream is None:
                stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.codec_context.thread_count = threads
            elif array.shape[:2] != (stream.height, stream.width):
                raise ValueError(
                    f"write_mp4: frame {count} has size {frame.shape[:2]}, "
                    f"the first frame had {(stream.height, stream.width)}"
                )
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
            count += 1
        if stream is not None:
            for packet in stream.encode(None):
                container.mux(packet)
    return count


def _even_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    """Check one frame is uint8 (H, W, 3) and pad it to even height and width (edge rows/columns)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"write_mp4: frame {index} must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)
