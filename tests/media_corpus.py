"""A corpus of real-world video formats, rendered and encoded here, plus a plain reference decoder.

Every file is rendered from the same synthetic scene (`render`): a moving colour gradient, a fine moving
texture (so lossy codecs spend real bits), two moving shapes and, in the top-left corner, a 10-bit marker
that spells the frame's id, so a wrong frame is detected even after lossy compression (`read_marker`).

    >>> corpus = Corpus(tmp_folder)          # nothing is written yet
    >>> entry = corpus["h264_720p_bframes"]  # encoded on first access (cached for the session)
    >>> entry.path, entry.notes, entry.ids[:3]

`CORPUS_NAMES` lists the entries; `python -m tests.media_corpus OUT` writes them all and prints what FFmpeg
reads back (streams, timestamps, rotation, discard flags). The reference decoder (`reference_frames`,
`reference_times`, `iter_reference`) is "a plain sequential decode": PyAV, `container.streams.best("video")`,
every frame in order, `to_ndarray("rgb24")`, the frame's display rotation applied, time = frame.time minus the
container's start time (or minus the first frame's time when the container has none). A folder of frames is
read with PIL at times i / 1.0.

Plain functions only (no pytest): the `corpus` fixture in tests/conftest.py wraps `Corpus`.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

MARKER_BITS = 10  # ids 0..1023
FOLDER_FPS = 1.0  # the rate a frame folder is played at (open_video's default frames_fps)


# ----------------------------------------------------------------------------------------------------------------
# Rendering


def marker_cell(width: int, height: int) -> int:
    """Side in pixels of one marker cell for a frame of this size (even, at least 6)."""
    return max(6, (min(width, height) // 24) // 2 * 2)


def render(fid: int, width: int, height: int) -> np.ndarray:
    """The upright source frame with id `fid`: (height, width, 3) uint8 RGB.

    Content moves with `fid` (gradient drift, texture phase, a disk and a bar), and the top-left corner holds
    the marker: MARKER_BITS cells (white 1, black 0, most significant first) on a gray band.
    """
    x = np.arange(width, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)
    t = float(fid)
    # smooth gradients drifting with time
    red = (x * (180.0 / width) + 5.0 * t) % 200.0 + 20.0
    green = y * (170.0 / height) + 40.0
    blue = 230.0 - (x * (90.0 / width))[None, :] - (y * (90.0 / height))[:, None] + 25.0 * np.sin(0.15 * t)
    # fine texture (period ~5-9 px) moving diagonally: realistic work for the encoder's motion search
    tex = np.sin((x + 2.0 * t) * 0.9)[None, :] * np.sin((y + t) * 0.7)[:, None] * 22.0
    img = np.empty((height, width, 3), dtype=np.float32)
    img[..., 0] = red[None, :] + tex
    img[..., 1] = green[:, None] - tex
    img[..., 2] = blue + 0.5 * tex
    # a disk moving right and a bar moving down
    radius = max(4, height // 8)
    cx = (width * 0.2 + t * width / 97.0) % width
    cy = height * 0.6
    xs0, xs1 = int(max(0, cx - radius)), int(min(width, cx + radius + 1))
    ys0, ys1 = int(max(0, cy - radius)), int(min(height, cy + radius + 1))
    if xs1 > xs0 and ys1 > ys0:
        inside = (x[None, xs0:xs1] - cx) ** 2 + (y[ys0:ys1, None] - cy) ** 2 <= radius**2
        img[ys0:ys1, xs0:xs1][inside] = (250.0, 200.0, 30.0)
    bar_y = int((height * 0.3 + t * height / 61.0) % height)
    bar_h = max(2, height // 30)
    img[bar_y : bar_y + bar_h, width // 2 : width // 2 + width // 4] = (20.0, 40.0, 160.0)
    out = np.clip(img, 0.0, 255.0).astype(np.uint8)
    _draw_marker(out, fid)
    return out


def _draw_marker(img: np.ndarray, fid: int) -> None:
    height, width = img.shape[:2]
    b = marker_cell(width, height)
    img[b // 2 : b // 2 + 2 * b, b // 2 : b // 2 + (MARKER_BITS + 1) * b] = 128
    for k in range(MARKER_BITS):
        bit = (fid >> (MARKER_BITS - 1 - k)) & 1
        img[b : 2 * b, b + k * b : b + (k + 1) * b] = 255 if bit else 0


def read_marker(img: np.ndarray) -> int:
    """The id spelled by the marker of an upright (H, W, 3) RGB frame (garbage when the frame is not upright)."""
    height, width = img.shape[:2]
    b = marker_cell(width, height)
    luma = img[: 2 * b, : (MARKER_BITS + 2) * b, :3].astype(np.float32).mean(axis=2)
    q = b // 4
    fid = 0
    for k in range(MARKER_BITS):
        cell = luma[b + q : 2 * b - q, b + k * b + q : b + (k + 1) * b - q]
        fid = (fid << 1) | int(cell.mean() > 128.0)
    return fid


def to_gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB frame, (H, W) uint8."""
    f = img.astype(np.float32)
    return np.clip(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2] + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# The corpus entries


@dataclass(frozen=True)
class CorpusFile:
    """One corpus file and what was put into it.

    path: the file (or folder of frames). kind: "video", "gif" or "frames". notes: what it is and why it is here.
    tags: short property names ("bframes", "rotation", "vfr", "10bit", ...). width, height: the upright
    (displayed) size. ids: the marker id of every frame in display order, as written (before any edit list
    removes frames: `ids` lists the frames a correct reader shows). intended_times: the presentation time of
    each of those frames relative to the file's origin, as intended when writing (containers round them: the
    reference decode is the exact truth). rotation: the display rotation written (degrees counter-clockwise).
    """

    name: str
    path: Path
    kind: str
    notes: str
    tags: frozenset[str]
    width: int
    height: int
    ids: tuple[int, ...]
    intended_times: tuple[float, ...]
    rotation: int = 0
    gray: bool = False

    @property
    def num_frames(self) -> int:
        return len(self.ids)

    def source_frame(self, index: int) -> np.ndarray:
        """The rendered upright frame shown at display index `index` (RGB, before encoding)."""
        img = render(self.ids[index], self.width, self.height)
        if self.gray:
            return np.repeat(to_gray(img)[..., None], 3, axis=2)
        return img


def _frame(img: np.ndarray, fmt: str = "rgb24") -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(img, format=fmt)


def _video_stream(
    container: av.container.OutputContainer,
    codec: str,
    width: int,
    height: int,
    pix_fmt: str,
    rate: int | Fraction,
    options: dict[str, str] | None = None,
    time_base: Fraction | None = None,
) -> av.video.stream.VideoStream:
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    stream.codec_context.time_base = time_base if time_base is not None else 1 / Fraction(rate)
    if options:
        stream.options = dict(options)
    return stream


def _encode(
    container: av.container.OutputContainer,
    stream: av.video.stream.VideoStream,
    frames: Iterable[tuple[int, np.ndarray]],
    fmt: str = "rgb24",
    shift: int = 0,
) -> None:
    """Encode (pts, image) pairs (pts in the encoder's time base) and mux the packets, adding `shift` to every
    packet's pts and dts first."""
    tb = stream.codec_context.time_base

    def put(packets: list[av.Packet]) -> None:
        for p in packets:
            if shift:
                p.pts = None if p.pts is None else p.pts + shift
                p.dts = None if p.dts is None else p.dts + shift
            container.mux(p)

    for pts, img in frames:
        fr = _frame(img, fmt)
        fr.pts = pts
        fr.time_base = tb
        put(stream.encode(fr))
    put(stream.encode(None))


def _uniform(n: int, fps: float, start: float = 0.0) -> tuple[float, ...]:
    return tuple(start + i / fps for i in range(n))


def _simple(
    folder: Path,
    name: str,
    filename: str,
    *,
    notes: str,
    tags: Iterable[str],
    codec: str,
    width: int,
    height: int,
    n: int,
    fps: int,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rotation: int = 0,
    gray: bool = False,
    alpha: bool = False,
    first_id: int = 0,
    fmt: str | None = None,
) -> CorpusFile:
    """One stream, constant rate, frames 0..n-1 (ids first_id..): the common case."""
    path = folder / filename
    # stored frames are the upright ones turned clockwise by `rotation`: the display matrix turns them back
    sw, sh = (height, width) if rotation % 180 else (width, height)
    with av.open(str(path), "w", format=fmt) as c:
        s = _video_stream(c, codec, sw, sh, pix_fmt, fps, options)
        if rotation:
            s.set_display_rotation(rotation)

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            for i in range(n):
                img = render(first_id + i, width, height)
                if rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=-(rotation // 90)))
                if gray:
                    img = to_gray(img)
                elif alpha:
                    a = np.empty(img.shape[:2] + (4,), np.uint8)
                    a[..., :3] = img
                    a[..., 3] = np.linspace(255, 64, img.shape[1], dtype=np.float32).astype(np.uint8)[None, :]
                    img = a
                yield i, img

        _encode(c, s, frames(), "gray" if gray else ("rgba" if alpha else "rgb24"))
    return CorpusFile(
        name, path, "video", notes, frozenset(tags), width, height,
        tuple(range(first_id, first_id + n)), _uniform(n, fps), rotation, gray,
    )  # fmt: skip


X264_FAST = {"preset": "veryfast", "crf": "26"}


def make_h264_720p_bframes(folder: Path) -> CorpusFile:
    return _simple(
        folder, "h264_720p_bframes", "h264_720p_bframes.mp4",
        notes="1280x720 H.264 High, 3 B-frames (pyramid), 30 fps, 60 frames (2 s), mp4; first dts negative "
        "(-2 frames), presentation starts at 0",
        tags={"h264", "bframes", "720p", "mp4"},
        codec="libx264", width=1280, height=720, n=60, fps=30,
        options={**X264_FAST, "profile": "high", "bf": "3"},
    )  # fmt: skip


def make_h264_720p_22s(folder: Path) -> CorpusFile:
    return _simple(
        folder, "h264_720p_22s", "h264_720p_22s.mp4",
        notes="1280x720 H.264 High, 3 B-frames (pyramid), 10 fps, 220 frames (22 s), mp4: long enough that a model "
        "sampling 1 frame per second (the demo model) takes 22 frames of it",
        tags={"h264", "bframes", "720p", "mp4", "long"},
        codec="libx264", width=1280, height=720, n=220, fps=10,
        options={**X264_FAST, "profile": "high", "bf": "3"},
    )  # fmt: skip


def make_hevc_1080p_10bit(folder: Path) -> CorpusFile:
    return _simple(
        folder, "hevc_1080p_10bit", "hevc_1080p_10bit.mp4",
        notes="1920x1080 HEVC Main 10 (yuv420p10le), B-frames, 24 fps, 30 frames (1.25 s), mp4 (hvc1)",
        tags={"hevc", "10bit", "1080p", "bframes", "mp4"},
        codec="libx265", width=1920, height=1080, n=30, fps=24, pix_fmt="yuv420p10le",
        options={"preset": "ultrafast", "crf": "30", "x265-params": "log-level=none:bframes=3"},
    )  # fmt: skip


def make_h264_4k(folder: Path) -> CorpusFile:
    return _simple(
        folder, "h264_4k", "h264_4k.mp4",
        notes="3840x2160 H.264 (ultrafast, no B-frames), 30 fps, 5 frames, mp4",
        tags={"h264", "4k", "mp4"},
        codec="libx264", width=3840, height=2160, n=5, fps=30,
        options={"preset": "ultrafast", "crf": "30"},
    )  # fmt: skip


def make_vp9(folder: Path) -> CorpusFile:
    # this libvpx is built without high bit depth (yuv420p10le is refused), so VP9 is 8-bit here; the
    # 10-bit coverage is HEVC and AV1
    return _simple(
        folder, "vp9_webm", "vp9.webm",
        notes="640x360 VP9 profile 0 (yuv420p), 25 fps, 40 frames (1.6 s), webm",
        tags={"vp9", "webm"},
        codec="libvpx-vp9", width=640, height=360, n=40, fps=25,
        options={"deadline": "good", "cpu-used": "8", "crf": "40", "b": "0", "row-mt": "1"},
    )  # fmt: skip


def make_av1_10bit(folder: Path) -> CorpusFile:
    return _simple(
        folder, "av1_10bit_mkv", "av1_10bit.mkv",
        notes="640x360 AV1 Main 10-bit (SVT-AV1 preset 12, yuv420p10le), 25 fps, 40 frames (1.6 s), mkv",
        tags={"av1", "10bit", "mkv"},
        codec="libsvtav1", width=640, height=360, n=40, fps=25, pix_fmt="yuv420p10le",
        options={"preset": "12", "crf": "45", "svtav1-params": "lp=2"},
    )  # fmt: skip


def make_mjpeg_avi(folder: Path) -> CorpusFile:
    return _simple(
        folder, "mjpeg_avi", "mjpeg.avi",
        notes="640x480 Motion JPEG, full-range yuvj422p, 15 fps, 24 frames (1.6 s), avi",
        tags={"mjpeg", "avi", "full_range"},
        codec="mjpeg", width=640, height=480, n=24, fps=15, pix_fmt="yuvj422p",
        options={"qscale": "4"},
    )  # fmt: skip


def make_prores_alpha(folder: Path) -> CorpusFile:
    return _simple(
        folder, "prores4444_alpha_mov", "prores4444_alpha.mov",
        notes="640x360 ProRes 4444 with an alpha channel (yuva444p10le, alpha ramp), 24 fps, 12 frames, mov",
        tags={"prores", "alpha", "10bit", "444", "mov"},
        codec="prores_ks", width=640, height=360, n=12, fps=24, pix_fmt="yuva444p10le",
        options={"profile": "4444"}, alpha=True,
    )  # fmt: skip


def make_gray_ffv1(folder: Path) -> CorpusFile:
    return _simple(
        folder, "ffv1_gray_mkv", "ffv1_gray.mkv",
        notes="320x240 FFV1 lossless, gray (8-bit luma only), 10 fps, 20 frames, mkv",
        tags={"ffv1", "gray", "lossless", "mkv"},
        codec="ffv1", width=320, height=240, n=20, fps=10, pix_fmt="gray", gray=True,
    )  # fmt: skip


def _rotated(rotation: int, filename: str, container_tag: str) -> Callable[[Path], CorpusFile]:
    def make(folder: Path) -> CorpusFile:
        return _simple(
            folder, f"rotate{rotation}_{container_tag}", filename,
            notes=f"H.264 with B-frames stored 640x360 with display rotation {rotation} (counter-clockwise); "
            f"upright it is {'360x640' if rotation % 180 else '640x360'}; 30 fps, 36 frames, {container_tag}",
            tags={"h264", "bframes", "rotation", container_tag},
            codec="libx264", width=360 if rotation % 180 else 640, height=640 if rotation % 180 else 360,
            n=36, fps=30, options={**X264_FAST, "bf": "2"}, rotation=rotation,
        )  # fmt: skip

    return make


def make_vfr(folder: Path) -> CorpusFile:
    """25 fps for 2 s, then 4 fps for 2 s, written with millisecond timestamps."""
    path = folder / "vfr_25_then_4fps.mkv"
    times_ms = [40 * i for i in range(50)] + [2000 + 250 * i for i in range(8)]
    w, h = 640, 360
    with av.open(str(path), "w") as c:
        s = _video_stream(c, "libx264", w, h, "yuv420p", 25, {**X264_FAST, "bf": "2"}, Fraction(1, 1000))
        _encode(c, s, ((t, render(i, w, h)) for i, t in enumerate(times_ms)))
    return CorpusFile(
        "vfr_mkv", path, "video",
        "640x360 H.264 (B-frames) variable frame rate: 50 frames at 25 fps (0-1.96 s) then 8 frames at 4 fps "
        "(2.0-3.75 s); millisecond timestamps; mkv",
        frozenset({"h264", "bframes", "vfr", "mkv"}), w, h, tuple(range(58)), tuple(t / 1000 for t in times_ms),
    )  # fmt: skip


def make_mpegts(folder: Path) -> CorpusFile:
    """MPEG-TS whose clock starts at 1.4 s (as FFmpeg's command line writes it; a broadcast capture starts
    anywhere): a non-zero container start time. Video and MP2 audio, both shifted."""
    path = folder / "h264_start1.4s.ts"
    w, h, n, fps = 640, 360, 50, 25
    with av.open(str(path), "w", format="mpegts") as c:
        s = _video_stream(c, "libx264", w, h, "yuv420p", fps, {**X264_FAST, "bf": "3"})
        a = c.add_stream("mp2", rate=48000, layout="stereo")
        _mux_audio(c, a, seconds=n / fps, start=int(1.4 * 48000))
        _encode(c, s, ((i, render(i, w, h)) for i in range(n)), shift=int(1.4 * fps))
    return CorpusFile(
        "mpegts_start_1_4s", path, "video",
        "640x360 H.264 (3 B-frames) + MP2 audio in MPEG-TS, 25 fps, 50 frames; timestamps start at 1.4 s "
        "(non-zero container start time); the audio starts ~10 ms before the video, so the first frame is at ~0.01 s",
        frozenset({"h264", "bframes", "mpegts", "start_time", "audio"}), w, h, tuple(range(n)), _uniform(n, fps),
    )  # fmt: skip


def _mux_audio(
    container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float, start: int = 0
) -> None:
    """A quiet sine, `seconds` long, muxed up front (the muxer interleaves by timestamp)."""
    rate = stream.codec_context.sample_rate
    size = stream.codec_context.frame_size or 1024
    total = int(seconds * rate)
    fmt = stream.codec_context.format.name
    for pos in range(0, total, size):
        t = (np.arange(pos, pos + size) / rate).astype(np.float32)
        wave = 0.1 * np.sin(2 * np.pi * 440.0 * t)
        if fmt == "fltp":
            data = np.stack([wave, wave])
        else:  # s16 interleaved (mp2)
            data = np.repeat((wave * 32767).astype(np.int16), 2)[None, :]
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate = rate
        frame.pts = start + pos
        frame.time_base = Fraction(1, rate)
        for p in stream.encode(frame):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


def make_edit_list(folder: Path) -> CorpusFile:
    """mp4 whose first 3 frames (the keyframe included) have negative pts: the muxer writes an edit list that
    starts at pts 0, so FFmpeg flags those 3 packets discard and shows 37 frames starting at 0."""
    path = folder / "h264_editlist.mp4"
    w, h, n, fps, cut = 640, 360, 40, 25, 3
    with av.open(str(path), "w") as c:
        s = _video_stream(c, "libx264", w, h, "yuv420p", fps, {**X264_FAST, "bf": "2"})
        _encode(c, s, ((i, render(i, w, h)) for i in range(n)), shift=-cut)
    return CorpusFile(
        "editlist_mp4", path, "video",
        "640x360 H.264 (B-frames) mp4 with an edit list: frames 0-2 (keyframe included) have negative pts and "
        "are flagged discard; 37 frames (ids 3-39) shown from 0 s; 25 fps",
        frozenset({"h264", "bframes", "edit_list", "discard", "mp4"}), w, h, tuple(range(cut, n)),
        _uniform(n - cut, fps),
    )  # fmt: skip


def make_concat_gaps(folder: Path) -> CorpusFile:
    """Three 1-s segments cut at keyframes and stream-copied one after the other with pts gaps at the joins."""
    path = folder / "concat_gaps.mp4"
    w, h, fps, seg = 640, 360, 25, 25
    gaps = (0.28, 0.52)  # seconds added at the first and second join
    tmp = folder / "_concat_source.mp4"
    with av.open(str(tmp), "w") as c:
        s = _video_stream(
            c, "libx264", w, h, "yuv420p", fps, {**X264_FAST, "bf": "2", "g": "25", "keyint_min": "25",
                                                  "sc_threshold": "0"},
        )  # fmt: skip
        _encode(c, s, ((i, render(i, w, h)) for i in range(3 * seg)))
    times = []
    with av.open(str(tmp)) as src, av.open(str(path), "w") as dst:
        ist = src.streams.video[0]
        ost = dst.add_stream_from_template(ist)
        offsets = [0.0, gaps[0], gaps[0] + gaps[1]]
        count = 0
        for p in src.demux(ist):
            if p.size == 0 or p.pts is None:
                continue
            # closed GOPs of `seg` frames: the k-th packet in decode order belongs to segment k // seg
            segment = count // seg
            count += 1
            shift = int(round(offsets[segment] / ist.time_base))
            p.pts += shift
            p.dts += shift
            p.stream = ost
            dst.mux(p)
    for i in range(3 * seg):
        times.append(i / fps + offsets[i // seg])
    tmp.unlink()
    return CorpusFile(
        "concat_gaps_mp4", path, "video",
        "640x360 H.264 (B-frames), three 1-s segments (25 frames each, closed GOPs) stream-copied end to end "
        f"with timestamp gaps of {gaps[0]} s and {gaps[1]} s at the joins; mp4",
        frozenset({"h264", "bframes", "gaps", "concat", "mp4"}), w, h, tuple(range(3 * seg)), tuple(times),
    )  # fmt: skip


def make_long_gop(folder: Path) -> CorpusFile:
    return _simple(
        folder, "long_gop_480p", "long_gop_480p.mp4",
        notes="854x480 H.264 (B-frames), 25 fps, 300 frames (12 s), keyframes only every 250 frames (10 s): "
        "keyframes at 0 and 10 s; mp4",
        tags={"h264", "bframes", "long_gop", "480p", "mp4", "long"},
        codec="libx264", width=854, height=480, n=300, fps=25,
        options={"preset": "veryfast", "crf": "32", "bf": "3", "g": "250", "keyint_min": "250",
                 "sc_threshold": "0"},
    )  # fmt: skip


def make_open_gop(folder: Path) -> CorpusFile:
    return _simple(
        folder, "open_gop_mp4", "open_gop.mp4",
        notes="640x360 H.264 open GOP (x264 open-gop=1, keyint 25, 3 B-frames): keyframes after the first are "
        "non-IDR I frames whose leading B-frames (shown before them) reference the previous GOP; 25 fps, "
        "100 frames (4 s); mp4",
        tags={"h264", "bframes", "open_gop", "mp4"},
        codec="libx264", width=640, height=360, n=100, fps=25,
        options={**X264_FAST, "bf": "3", "x264-params": "open-gop=1:keyint=25:min-keyint=25:scenecut=0"},
    )  # fmt: skip


def make_one_frame(folder: Path) -> CorpusFile:
    return _simple(
        folder, "one_frame_mp4", "one_frame.mp4",
        notes="640x360 H.264, a single frame, mp4",
        tags={"h264", "one_frame", "mp4"},
        codec="libx264", width=640, height=360, n=1, fps=30, options=X264_FAST,
    )  # fmt: skip


def make_audio_first(folder: Path) -> CorpusFile:
    """AAC audio from 0 s, video from 0.5 s: the container starts at 0, the first frame is shown at 0.5 s."""
    path = folder / "audio_before_video.mp4"
    w, h, n, fps, delay = 640, 360, 45, 30, 15  # video starts 15 frames = 0.5 s after the audio
    with av.open(str(path), "w") as c:
        s = _video_stream(c, "libx264", w, h, "yuv420p", fps, {**X264_FAST, "bf": "2"})
        a = c.add_stream("aac", rate=48000, layout="stereo")
        _mux_audio(c, a, seconds=(n + delay) / fps)
        _encode(c, s, ((delay + i, render(i, w, h)) for i in range(n)))
    return CorpusFile(
        "audio_before_video_mp4", path, "video",
        "640x360 H.264 (B-frames) + AAC audio in mp4; the audio starts at 0 s and the video at 0.5 s (an empty "
        "edit delays it), 30 fps, 45 frames",
        frozenset({"h264", "bframes", "audio", "audio_first", "mp4"}), w, h, tuple(range(n)),
        _uniform(n, fps, start=delay / fps),
    )  # fmt: skip


def make_two_streams(folder: Path) -> CorpusFile:
    """Two video streams in mkv: stream 0 is a 320x180 preview (not default), stream 1 the 640x360 main video
    flagged default, which av_find_best_stream picks. The preview's ids are 500+ so a wrong stream shows."""
    path = folder / "two_video_streams.mkv"
    n, fps = 30, 25
    with av.open(str(path), "w") as c:
        s0 = _video_stream(c, "libx264", 320, 180, "yuv420p", fps, {**X264_FAST, "bf": "2"})
        s1 = _video_stream(c, "libx264", 640, 360, "yuv420p", fps, {**X264_FAST, "bf": "2"})
        s0.disposition = av.stream.Disposition(0)
        s1.disposition = av.stream.Disposition.default
        tb = Fraction(1, fps)
        for i in range(n):
            for s, img in ((s0, render(500 + i, 320, 180)), (s1, render(i, 640, 360))):
                fr = _frame(img)
                fr.pts, fr.time_base = i, tb
                for p in s.encode(fr):
                    c.mux(p)
        for s in (s0, s1):
            for p in s.encode(None):
                c.mux(p)
    return CorpusFile(
        "two_video_streams_mkv", path, "video",
        "mkv with two H.264 video streams: #0 a 320x180 preview (ids 500+, no default flag), #1 the 640x360 main "
        "video flagged default (the best stream); 25 fps, 30 frames each",
        frozenset({"h264", "bframes", "two_streams", "mkv"}), 640, 360, tuple(range(n)), _uniform(n, fps),
    )  # fmt: skip


def make_gif(folder: Path) -> CorpusFile:
    return _simple(
        folder, "gif", "anim.gif",
        notes="240x160 animated gif (FFmpeg gif encoder, rgb8 palette, changed-rectangle frames), 10 fps, "
        "20 frames",
        tags={"gif", "palette"},
        codec="gif", width=240, height=160, n=20, fps=10, pix_fmt="rgb8",
    )  # fmt: skip


def make_frame_folder(folder: Path) -> CorpusFile:
    path = folder / "frames_png"
    path.mkdir(exist_ok=True)
    w, h, n = 320, 240, 12
    for i in range(n):
        Image.fromarray(render(i, w, h)).save(path / f"frame_{i + 1}.png", compress_level=1)
    (path / "README.txt").write_text("not a frame")
    return CorpusFile(
        "frame_folder_png", path, "frames",
        "folder of 12 PNG frames 320x240 named frame_1.png .. frame_12.png (natural order differs from string "
        "order) plus a README.txt that is not a frame; played at 1 fps",
        frozenset({"frames", "png"}), w, h, tuple(range(n)), _uniform(n, FOLDER_FPS),
    )  # fmt: skip


_BUILDERS: dict[str, Callable[[Path], CorpusFile]] = {
    "h264_720p_bframes": make_h264_720p_bframes,
    "hevc_1080p_10bit": make_hevc_1080p_10bit,
    "h264_4k": make_h264_4k,
    "vp9_webm": make_vp9,
    "av1_10bit_mkv": make_av1_10bit,
    "mjpeg_avi": make_mjpeg_avi,
    "prores4444_alpha_mov": make_prores_alpha,
    "ffv1_gray_mkv": make_gray_ffv1,
    "rotate90_mp4": _rotated(90, "rotate90.mp4", "mp4"),
    "rotate180_mov": _rotated(180, "rotate180.mov", "mov"),
    "rotate270_mkv": _rotated(270, "rotate270.mkv", "mkv"),
    "vfr_mkv": make_vfr,
    "mpegts_start_1_4s": make_mpegts,
    "editlist_mp4": make_edit_list,
    "concat_gaps_mp4": make_concat_gaps,
    "long_gop_480p": make_long_gop,
    "open_gop_mp4": make_open_gop,
    "one_frame_mp4": make_one_frame,
    "audio_before_video_mp4": make_audio_first,
    "two_video_streams_mkv": make_two_streams,
    "gif": make_gif,
    "frame_folder_png": make_frame_folder,
}

CORPUS_NAMES: tuple[str, ...] = tuple(_BUILDERS)
# Built on request only, not in CORPUS_NAMES (the tests of every file would decode them too): a file long enough for
# the front ends' tests at their defaults, where the demo model samples 1 frame per second.
_AT_DEFAULTS_BUILDERS: dict[str, Callable[[Path], CorpusFile]] = {"h264_720p_22s": make_h264_720p_22s}


@dataclass
class Corpus(Mapping[str, CorpusFile]):
    """name -> CorpusFile; each file is written into `folder` the first time it is asked for."""

    folder: Path
    built: dict[str, CorpusFile] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def __getitem__(self, name: str) -> CorpusFile:
        if name not in self.built:
            builder = _BUILDERS.get(name) or _AT_DEFAULTS_BUILDERS.get(name)
            if builder is None:
                raise KeyError(name)
            start = time.perf_counter()
            entry = builder(Path(self.folder))
            self.seconds[name] = time.perf_counter() - start
            assert entry.name == name, (entry.name, name)
            self.built[name] = entry
        return self.built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(CORPUS_NAMES)

    def __len__(self) -> int:
        return len(CORPUS_NAMES)


# ----------------------------------------------------------------------------------------------------------------
# The reference: a plain sequential decode


def natural_key(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def folder_images(path: Path) -> list[Path]:
    return sorted((p for p in Path(path).iterdir() if p.suffix.lower() == ".png"), key=lambda p: natural_key(p.name))


def _rotate(img: np.ndarray, rotation: float) -> np.ndarray:
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=k)) if k else img


def iter_reference(
    path: Path | str, convert: Callable[[int], bool] | None = None
) -> Iterator[tuple[float, np.ndarray | None]]:
    """(time, frame) for every frame in display order. `convert(i)` says whether frame i is converted to RGB
    (None: all); frames not converted come back as None (their time is still exact)."""
    path = Path(path)
    if path.is_dir():
        for i, p in enumerate(folder_images(path)):
            img = None
            if convert is None or convert(i):
                with Image.open(p) as im:
                    img = np.asarray(im.convert("RGB"))
            yield i / FOLDER_FPS, img
        return
    with av.open(str(path)) as container:
        stream = container.streams.best("video")
        stream.thread_type = "AUTO"
        origin = None if container.start_time is None else container.start_time / 1e6
        for i, frame in enumerate(container.decode(stream)):
            if origin is None:
                origin = frame.time
            img = None
            if convert is None or convert(i):
                img = _rotate(frame.to_ndarray(format="rgb24"), frame.rotation)
            yield frame.time - origin, img


@dataclass
class Reference:
    """The reference decode of one file: times, upright size and the frames at the indices asked for."""

    times: np.ndarray
    size: tuple[int, int]  # (width, height), upright
    frames: dict[int, np.ndarray]

    @property
    def num_frames(self) -> int:
        return len(self.times)


def reference(path: Path | str, keep: Iterable[int] = ()) -> Reference:
    """Decode the whole file once; keep the RGB frames at `keep` (and always frame 0, for the size)."""
    wanted = set(int(i) for i in keep) | {0}
    times, frames = [], {}
    for i, (t, img) in enumerate(iter_reference(path, convert=lambda i: i in wanted)):
        times.append(t)
        if img is not None:
            frames[i] = img
    if not times:
        raise ValueError(f"{path}: the reference decode found no frames")
    h, w = frames[0].shape[:2]
    return Reference(np.asarray(times, dtype=np.float64), (w, h), frames)


def reference_frames(path: Path | str, indices: Iterable[int]) -> dict[int, np.ndarray]:
    return reference(path, indices).frames


def reference_times(path: Path | str) -> np.ndarray:
    return reference(path).times


# ----------------------------------------------------------------------------------------------------------------
# Inspection (python -m tests.media_corpus OUT)


def probe(path: Path | str) -> str:
    """What FFmpeg reads back: container start/duration, streams, the first packets of the best video stream
    (pts, dts, key, discard) and the first decoded frames' times and rotation."""
    path = Path(path)
    if path.is_dir():
        return f"{path.name}: folder of {len(folder_images(path))} images"
    lines = []
    with av.open(str(path)) as c:
        best = c.streams.best("video")
        lines.append(
            f"{path.name}: format={c.format.name} start_time={c.start_time} duration={c.duration} "
            f"best_video=#{best.index}"
        )
        for s in c.streams:
            cc = s.codec_context
            extra = ""
            if s.type == "video":
                extra = (
                    f" {cc.width}x{cc.height} {cc.pix_fmt} profile={s.profile} avg_rate={s.average_rate} "
                    f"guessed_rate={s.guessed_rate} frames={s.frames} disposition={s.disposition}"
                )
            lines.append(f"  #{s.index} {s.type} {cc.name} tb={s.time_base} start={s.start_time}{extra}")
        pk = [
            (p.pts, p.dts, "K" if p.is_keyframe else "", "DISCARD" if p.is_discard else "")
            for p in c.demux(best)
            if p.size
        ]
    lines.append(f"  packets={len(pk)} first={pk[:6]}")
    lines.append(f"  keyframes at packet (decode) positions {[i for i, p in enumerate(pk) if p[2]]}")
    lines.append(f"  discarded packets: {sum(1 for p in pk if p[3])}")
    with av.open(str(path)) as c:
        s = c.streams.best("video")
        fr = [(round(f.time, 4), f.rotation) for f in c.decode(s)]
    lines.append(f"  decoded frames={len(fr)} first (time, rotation)={fr[:4]} last={fr[-2:]}")
    return "\n".join(lines)


def h264_nal_types(path: Path | str, limit: int = 400) -> list[tuple[int | None, bool, list[int]]]:
    """(pts, keyframe, NAL unit types) of the first `limit` packets of an mp4/mkv H.264 stream (4-byte length
    prefixed NAL units). Type 5 is an IDR slice, type 1 a non-IDR slice (an open-GOP I frame is a key packet
    made of type-1 slices)."""
    out = []
    with av.open(str(path)) as c:
        s = c.streams.best("video")
        for p in c.demux(s):
            if not p.size:
                continue
            data = bytes(p)
            pos, types = 0, []
            while pos + 4 <= len(data):
                size = int.from_bytes(data[pos : pos + 4], "big")
                if pos + 4 < len(data):
                    types.append(data[pos + 4] & 0x1F)
                pos += 4 + size
            out.append((p.pts, p.is_keyframe, types))
            if len(out) >= limit:
                break
    return out


def build_all(folder: Path | str) -> Corpus:
    corpus = Corpus(Path(folder))
    for name in CORPUS_NAMES:
        corpus[name]
    return corpus


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "corpus_out")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    corpus = build_all(out)
    total = time.perf_counter() - start
    for name, entry in corpus.items():
        print(f"== {name} ({corpus.seconds[name]:.2f} s, {_size(entry.path)}): {entry.notes}")
        print(probe(entry.path))
    print(f"corpus written in {total:.1f} s")
    return 0


def _size(path: Path) -> str:
    total = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
    return f"{total / 1024:.0f} KiB"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
