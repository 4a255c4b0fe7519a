"""The reader's fast paths against a plain sequential decode, bit for bit: timelines read from an MP4/MOV file's
own index (`IndexedSamples`, `mp4_tables.py`) and seeking that leaves unreferenced H.264 pictures undecoded.

Files FFmpeg reads differently from the simple model (an edit list it rearranges, a fragmented file, a truncated
one) must fall back to the packets and still give the sequential decode's frames and times; a timeline the packets
contradict must be refused.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from llava.errors import VideoError
from llava.video.decode import open_video
from llava.video.mp4_tables import sample_tables
from llava.video.pyav_file import indexed_samples, scan_packets, skips_unreferenced
from tests.media_corpus import read_marker, render

WIDTH, HEIGHT, FPS, FRAMES = 160, 96, 10, 72


def encode(path: Path, options: dict[str, str] | None = None, container_options: dict[str, str] | None = None) -> Path:
    """FRAMES frames of marked, moving content in H.264 with B-frames (3, pyramid) and 12-frame GOPs."""
    codec = {"bf": "3", "b-pyramid": "normal", "g": "12", "keyint_min": "12", "sc_threshold": "0", "threads": "1"}
    codec |= options or {}  # one thread: the same bitstream on every machine, whatever its load
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream("libx264", rate=FPS, options=codec)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(FRAMES):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(render(i, WIDTH, HEIGHT), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def cut_inside_a_packet(folder: Path) -> Path:
    """An H.264 file with B-frames (moov first) cut inside a packet two thirds of the way: its last picture does
    not decode."""
    whole = encode(folder / "whole.mp4", container_options={"movflags": "faststart"})
    with av.open(str(whole)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    pos, size = packets[len(packets) * 2 // 3]
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: pos + size // 2])
    return truncated


def sequential(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every frame a plain decode shows (packets the decoder rejects are passed over), and its time since the start
    of the file."""
    decoded = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                decoded += [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in stream.decode(packet)]
            except av.InvalidDataError:
                continue
        origin = container.start_time / 1e6 if container.start_time is not None else 0.0
        base = float(stream.time_base)
    return np.asarray([p * base - origin for p, _ in decoded]), np.stack([f for _, f in decoded])


def assert_served_like_sequential_decode(path: Path) -> None:
    """Times, every frame alone, every third frame and all frames at once equal the sequential decode exactly."""
    times, frames = sequential(path)
    with open_video(path) as video:
        np.testing.assert_allclose(video.times, times, atol=1e-9, err_msg=f"{path.name}: times")
        for i in range(len(frames)):
            got = video.get_frames([i])[0]
            assert np.array_equal(got, frames[i]), (
                f"{path.name}: frame {i} asked alone differs (marker {read_marker(got)})"
            )
        assert np.array_equal(video.get_frames(np.arange(0, len(frames), 3)), frames[::3]), path.name
        assert np.array_equal(video.get_frames(np.arange(len(frames))), frames), path.name


def _boxes(data: bytes | bytearray, start: int, end: int):
    pos = start
    while pos < end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, pos, size
        pos += size


def with_edit_list(src: Path, dst: Path, edits: list[tuple[int, int]]) -> Path:
    """`src` (moov after mdat, as PyAV writes it, so no sample moves) with its track's edit list replaced by `edits`:
    (duration in the movie's time scale, start in the track's)."""
    data = bytearray(src.read_bytes())
    parents, start, end = [], 0, len(data)
    for name in (b"moov", b"trak", b"edts", b"elst"):
        pos, size = next((p, s) for kind, p, s in _boxes(data, start, end) if kind == name)
        parents.append(pos)
        start, end = pos + 8, pos + size
    elst = parents.pop()
    old = struct.unpack(">I", data[elst : elst + 4])[0]
    body = struct.pack(">II", 0, len(edits)) + b"".join(struct.pack(">IiI", d, m, 1 << 16) for d, m in edits)
    data[elst : elst + old] = struct.pack(">I4s", 8 + len(body), b"elst") + body
    for pos in parents:
        data[pos : pos + 4] = struct.pack(">I", struct.unpack(">I", data[pos : pos + 4])[0] + 8 + len(body) - old)
    dst.write_bytes(bytes(data))
    return dst


def unreferenced_pictures(path: Path) -> int:
    """Packets whose first NAL unit (4-byte length prefixed) has nal_ref_idc 0: pictures nothing refers to."""
    with av.open(str(path)) as container:
        return sum(bytes(p)[4] >> 5 == 0 for p in container.demux(container.streams.video[0]) if p.size)


@pytest.fixture
def bframes(tmp_path: Path) -> Path:
    return encode(tmp_path / "bframes.mp4")


def test_the_index_gives_the_packets_timeline_and_skipping_is_exact(bframes: Path) -> None:
    with av.open(str(bframes)) as container:
        stream = container.streams.video[0]
        indexed = indexed_samples(container, stream, str(bframes))
        assert indexed is not None, "a plain MP4 is read from its index"
        timeline = indexed.checked_timeline(container, stream)
        assert skips_unreferenced(stream)
    with av.open(str(bframes)) as container:
        scanned = scan_packets(container, container.streams.video[0])
    assert timeline is not None and scanned is not None
    assert np.array_equal(timeline.pts, scanned.pts) and np.array_equal(timeline.key_pts, scanned.key_pts)
    assert len(timeline.key_pts) == FRAMES // 12
    assert unreferenced_pictures(bframes) >= FRAMES // 4, "the clip must hold pictures the reader may skip"
    assert_served_like_sequential_decode(bframes)


def test_packets_that_contradict_the_index_are_refused(bframes: Path) -> None:
    """A timeline from the index is kept only if the first packets and the last GOP's carry its times and flags."""
    with av.open(str(bframes)) as container:
        indexed = indexed_samples(container, container.streams.video[0], str(bframes))
    assert indexed is not None
    last_key = int(np.flatnonzero(indexed.key)[-1])

    def changed(field: str, at: int, value: object) -> object:
        array = getattr(indexed, field).copy()
        array[at] = value
        return dataclasses.replace(indexed, **{field: array})

    wrong = {
        "first pts": changed("pts", 0, indexed.pts[0] + 1),
        "a pts in the first packets": changed("pts", 5, indexed.pts[5] + 1),
        "last pts": changed("pts", -1, indexed.pts[-1] + 1),
        "last keyframe flag": changed("key", last_key, False),
        "a discard flag": changed("discard", FRAMES - 3, True),
    }
    for what, announced in wrong.items():
        with av.open(str(bframes)) as container:
            assert announced.checked_timeline(container, container.streams.video[0]) is None, what
    with av.open(str(bframes)) as container:
        assert indexed.checked_timeline(container, container.streams.video[0]) is not None


def test_an_edit_list_ffmpeg_rearranges_falls_back_to_the_packets(bframes: Path, tmp_path: Path) -> None:
    """Two edits (the first second, then 2.5-3.5 s): FFmpeg's index no longer holds the samples one for one."""
    with av.open(str(bframes)) as container:
        scale = container.streams.video[0].time_base.denominator
        delay = -container.streams.video[0].index_entries[0].timestamp  # the B-frame delay the muxer's edit skips
    edited = with_edit_list(bframes, tmp_path / "edited.mp4", [(1000, delay), (1000, delay + 25 * scale // 10)])
    with av.open(str(edited)) as container:
        stream = container.streams.video[0]
        assert sample_tables(str(edited), stream.id) is not None and len(stream.index_entries) != FRAMES
        assert indexed_samples(container, stream, str(edited)) is None
    times, frames = sequential(edited)
    assert len(frames) == 2 * FPS and [read_marker(f) for f in frames[FPS - 1 : FPS + 1]] == [FPS - 1, 25]
    assert_served_like_sequential_decode(edited)


def test_fragmented_and_truncated_files_are_read_from_their_packets(tmp_path: Path) -> None:
    fragmented = encode(tmp_path / "fragmented.mp4", container_options={"movflags": "frag_keyframe+empty_moov"})
    faststart = encode(tmp_path / "faststart.mp4", container_options={"movflags": "faststart"})
    truncated = tmp_path / "truncated.mp4"
    data = faststart.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])  # the header is whole, the last samples are gone
    with av.open(str(fragmented)) as container:
        assert sample_tables(str(fragmented), container.streams.video[0].id) is None
    with av.open(str(faststart)) as container:
        stream = container.streams.video[0]
        assert indexed_samples(container, stream, str(faststart)) is not None, "the header first: still indexed"
    with av.open(str(truncated)) as container:
        stream = container.streams.video[0]
        assert (
            sample_tables(str(truncated), stream.id) is None
            and indexed_samples(container, stream, str(truncated)) is None
        )
    assert_served_like_sequential_decode(fragmented)
    assert_served_like_sequential_decode(faststart)
    times, frames = sequential(truncated)
    with open_video(truncated) as video:  # the packets that remain are announced; those that decode are served
        assert len(frames) <= video.num_frames < FRAMES
        # a damaged tail may lose frames before the last one that decodes: match the frames by presentation time
        where = np.searchsorted(video.times, times)
        assert (where < len(video.times)).all()
        np.testing.assert_allclose(video.times[where], times, atol=1e-9)
        for i, frame in zip(where, frames, strict=True):
            assert np.array_equal(video.get_frames([i])[0], frame), f"truncated.mp4: frame {i}"


def test_a_frame_cut_off_is_named_lost_and_every_frame_a_plain_decode_shows_is_served(tmp_path: Path) -> None:
    """A file cut inside one of its packets: that picture is lost. A decoder with frame threads, failing on it, also
    drops the pictures still in flight, which a plain decode shows; the reader must name the lost picture alone,
    keep the times it announced, and serve every frame the plain decode shows at its time."""
    truncated = cut_inside_a_packet(tmp_path)
    times, frames = sequential(truncated)
    with open_video(truncated) as video:
        announced = video.times.copy()
        lost = np.flatnonzero(~np.isclose(announced[:, None], times[None, :], atol=1e-9).any(axis=1))
        assert len(lost) == 1 and len(times) == len(announced) - 1, "the cut picture, and it alone, is lost"
        with pytest.raises(VideoError) as raised:
            video.get_frames(np.arange(video.num_frames))
        named = re.findall(r"\d+\.\d{3} s", str(raised.value).removeprefix(str(truncated)))
        assert named == [f"{announced[lost[0]]:.3f} s"], f"the error names the lost frame alone: {raised.value}"
        np.testing.assert_array_equal(video.times, announced)
        where = np.searchsorted(video.times, times)
        np.testing.assert_allclose(video.times[where], times, atol=1e-9)
        assert np.array_equal(video.get_frames(where), frames), "every frame a plain decode shows, at its time"
        with pytest.raises(VideoError, match=f"{announced[lost[0]]:.3f} s"):
            video.get_frames([lost[0] - 1, lost[0]])


def test_a_stream_without_timestamps_is_timed_and_served_by_a_plain_decode(bframes: Path, tmp_path: Path) -> None:
    """A raw H.264 stream: no packet carries a time, so the frames are counted by a plain decode, timed at the
    nominal rate, and served by their place in that decode."""
    raw = tmp_path / "raw.h264"
    with av.open(str(bframes)) as source, av.open(str(raw), "w", format="h264") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    with av.open(str(raw)) as container:
        assert scan_packets(container, container.streams.video[0]) is None, "the packets announce no times"
    with av.open(str(raw)) as container:  # a plain decode (its frames carry no times either)
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    with open_video(raw) as video:
        assert video.num_frames == len(frames) == FRAMES
        np.testing.assert_allclose(np.diff(video.times), 1 / video.fps)
        assert np.array_equal(video.get_frames(np.arange(FRAMES)), frames)
        assert np.array_equal(video.get_frames([FRAMES - 1, 5, 40]), frames[[FRAMES - 1, 5, 40]])
