"""A decoded picture turned into RGB a band of rows at a time, so that a 4K frame is never whole in RGB (24 MB).

FFmpeg's converter (swscale) takes plain 8-bit 4:2:0 pictures of even height to RGB without a filter across rows or
columns: each 2 x 2 block of pixels shares one sample of each chroma plane. A picture is then converted in bands of
up to MAX_BAND_ROWS upright rows (an even number, `band_rows_for`): the part of the stored picture each band shows
(rows, or columns of a picture shown turned by a quarter) is copied into a small picture of its own and converted
alone. That this gives the whole picture's pixels is not assumed: `converts_in_bands` checks it once for each
picture size, format, colour setting and turn on seeded random pixels, with the bands that will be used, and a
reader converts whole pictures wherever it does not hold.
"""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava.video.pyav_media import quarter_turns

MAX_BAND_ROWS = 72  # upright rows converted at once, at most: 0.8 MB of RGB at 4K (even: whole chroma samples)
BANDED_FORMATS = ("yuv420p", "yuvj420p")  # 8-bit 4:2:0, which swscale converts to RGB sample by sample


def band_rows_for(height: int) -> int:
    """Rows per band for an upright picture `height` rows high: the most, even and at most MAX_BAND_ROWS, that cut
    it into equal bands (a band of another height makes swscale set itself up again: about 4 ms a 4K frame), or
    MAX_BAND_ROWS where the best such number is under a quarter of it (a last, shorter band)."""
    best = max((rows for rows in range(2, MAX_BAND_ROWS + 1, 2) if height % rows == 0), default=0)
    return best if best >= MAX_BAND_ROWS // 4 else MAX_BAND_ROWS


class RGBBands:
    """An upright picture whose RGB rows are made a band at a time: `band(top)` is rows top .. top + band_rows
    of the picture as a player shows it (turned by `turns` quarters counter-clockwise; default: its rotation)."""

    def __init__(self, frame: av.VideoFrame, reformatter: VideoReformatter, turns: int | None = None) -> None:
        self._frame = frame
        self._reformatter = reformatter
        self._turns = quarter_turns(frame) if turns is None else turns
        upright = (frame.width, frame.height) if self._turns % 2 else (frame.height, frame.width)
        self.shape = (*upright, 3)  # as an RGB array of the whole upright picture would be
        self.band_rows = band_rows_for(upright[0])

    def band(self, top: int) -> np.ndarray:
        """uint8 (rows, W, 3) RGB of upright rows top .. top + band_rows (fewer at the bottom); `top` a multiple of
        band_rows."""
        rows = min(self.band_rows, self.shape[0] - top)
        height, width = self._frame.height, self._frame.width
        y0, y1, x0, x1 = {  # the part of the stored picture these upright rows show
            0: (top, top + rows, 0, width),
            1: (0, height, width - top - rows, width - top),
            2: (height - top - rows, height - top, 0, width),
            3: (0, height, top, top + rows),
        }[self._turns]
        rgb = self._converted(y0, y1, x0, x1)
        return np.ascontiguousarray(np.rot90(rgb, self._turns)) if self._turns else rgb

    def _converted(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """RGB of rows y0 .. y1 and columns x0 .. x1 (even offsets) of the stored picture, converted alone."""
        frame = self._frame
        piece = av.VideoFrame(x1 - x0, y1 - y0, frame.format.name)
        for source, target in zip(frame.planes, piece.planes, strict=True):
            sub = frame.height // source.height  # 1 for luma, 2 for chroma
            lines = np.frombuffer(memoryview(source), np.uint8).reshape(source.height, source.line_size)
            out = np.frombuffer(memoryview(target), np.uint8).reshape(target.height, target.line_size)
            out[:, : target.width] = lines[y0 // sub : y0 // sub + target.height, x0 // sub : x0 // sub + target.width]
        piece.colorspace, piece.color_range = frame.colorspace, frame.color_range
        return self._reformatter.reformat(piece, format="rgb24").to_ndarray()


def may_convert_in_bands(frame: av.VideoFrame) -> bool:
    """Whether `frame` is of a kind whose conversion in bands `converts_in_bands` can confirm: 8-bit 4:2:0 whose
    bands start on whole chroma samples (an even height; an even width too where it is shown turned a quarter)."""
    even = frame.height % 2 == 0 and (frame.width % 2 == 0 or quarter_turns(frame) % 2 == 0)
    return frame.format.name in BANDED_FORMATS and even


def converts_in_bands(frame: av.VideoFrame, reformatter: VideoReformatter) -> bool:
    """Whether pictures of `frame`'s size, format, colour settings and turn convert to exactly the same RGB in
    bands as whole, tried on a picture of seeded random pixels (a real one could hide a difference in flat areas)."""
    if not may_convert_in_bands(frame):
        return False
    probe = av.VideoFrame(frame.width, frame.height, frame.format.name)
    rng = np.random.default_rng(0)
    for plane in probe.planes:
        np.frombuffer(memoryview(plane), np.uint8)[:] = rng.integers(0, 256, plane.buffer_size, dtype=np.uint8)
    probe.colorspace, probe.color_range = frame.colorspace, frame.color_range
    turns = quarter_turns(frame)
    whole = np.rot90(reformatter.reformat(probe, format="rgb24").to_ndarray(), turns)
    bands = RGBBands(probe, reformatter, turns)
    rows = bands.band_rows
    return all(np.array_equal(bands.band(top), whole[top : top + rows]) for top in range(0, len(whole), rows))
