"""The file reader lets go of every picture it has served (and of the keyframe a run is decoded from) before the
decoder makes the next: each picture still referenced keeps one more in FFmpeg's pool (12 MB at 4K)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from llava.video.pyav_file import PyAVFileReader

GOP = 10


def live_pictures() -> set[int]:
    """Presentation times of the decoded pictures (not RGB conversions) that Python still references."""
    pictures = (o for o in gc.get_objects() if type(o) is av.VideoFrame)  # type(): no lookups on lazy modules
    return {p.pts for p in pictures if p.format is not None and p.format.name == "yuv420p"}


class WatchedReader(PyAVFileReader):
    """The reader, noting which decoded pictures are alive each time it serves one."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.alive_at_serving: list[tuple[int, set[int]]] = []

    def _seek_decode(self, targets: np.ndarray) -> Iterator[av.VideoFrame]:
        for frame in super()._seek_decode(targets):
            self.alive_at_serving.append((frame.pts, live_pictures() - {frame.pts}))
            yield frame
            del frame


def short_gop_clip(path: Path, frames: int = 60) -> Path:
    """64x48 H.264 (B-frames) with a keyframe every GOP frames; frame i is flat gray 4 * i."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=10, options={"g": str(GOP), "keyint_min": str(GOP)})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            picture = np.full((48, 64, 3), 4 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_served_pictures_and_keyframes_are_let_go(tmp_path: Path) -> None:
    path = short_gop_clip(tmp_path / "gop.mp4")
    wanted = [5, 25, 45]  # one in each of three GOPs, none a keyframe: three runs, each from its own keyframe
    with WatchedReader(str(path)) as reader:
        keyframes = set(reader._timeline.key_pts.tolist())
        pixels = reader.get_frames(wanted, transform=lambda batch: torch.from_numpy(batch.mean(axis=(1, 2, 3))))
    assert np.allclose(pixels.numpy(), [4 * i for i in wanted], atol=3)
    served = [pts for pts, _ in reader.alive_at_serving]
    assert len(served) == len(wanted) and not keyframes & set(served)
    for k, (pts, alive) in enumerate(reader.alive_at_serving):
        earlier = set(served[:k])
        assert not alive & earlier, f"pictures served before {pts} are still held: {sorted(alive & earlier)}"
        assert not alive & keyframes, f"the run's keyframe is still held when {pts} is served: {sorted(alive)}"
