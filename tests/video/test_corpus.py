"""The video reader on a corpus of real-world formats (tests/media_corpus.py): every file gives the frames a
plain sequential decode shows, at the presentation times it shows them.

For every corpus file: the metadata (frame count, upright size, every frame's time), uniform sampling
(`load_video`, 24 frames), sampling by time (`load_video_fps` at 1 and 4 fps, the expected frames derived here
from the reference times), streaming (`iter_frames`) and random access (`get_frames` out of order) are checked
against the reference decode, and every returned frame's marker must spell the id written at that index. Then
a few property checks: rotated files come out upright, variable frame rate and timestamp gaps are sampled by
real time, edit lists hide their discarded frames, open-GOP leading frames are decoded whole.

Tests are grouped by file (one module-scoped case per file) so a file's reference frames are held only
while its tests run.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import av
import numpy as np
import pytest
import torch

from llava.video.decode import load_video, load_video_fps, open_video
from llava.video.pyav_file import indexed_samples, scan_packets
from tests.media_corpus import (
    CORPUS_NAMES,
    FOLDER_FPS,
    CorpusFile,
    h264_nal_types,
    iter_reference,
    read_marker,
    reference,
)

NUM_FRAMES = 24  # the default model input: 24 frames sampled uniformly
TIME_TOL = 1e-6  # seconds
MEAN_TOL = 1.0  # mean absolute pixel difference to the reference
MAX_TOL = 6  # largest pixel difference to the reference (identical decoders give 0)
ITER_BUDGET = 60 * 1280 * 720  # pixels of reference frames converted while checking iter_frames


# ----------------------------------------------------------------------------------------------------------------
# Expected values, computed from the reference only


def uniform(n: int, count: int = NUM_FRAMES) -> np.ndarray:
    return np.linspace(0, n - 1, count).astype(int)


def fps_expected(times: np.ndarray, fps: float, nominal: float) -> list[int]:
    """For each target k / fps (k = 0, 1, ... while the target is not after the last frame), the first frame
    (in display order) whose time is at least k / fps - 0.5 / nominal; a frame is taken at most once."""
    chosen: list[int] = []
    k = 0
    while k / fps <= times[-1] + 1e-9:
        hits = np.flatnonzero(times >= k / fps - 0.5 / nominal - 1e-9)
        if len(hits) and hits[0] not in chosen:
            chosen.append(int(hits[0]))
        k += 1
    return chosen


def pyav_rate(entry: CorpusFile) -> float:
    """The nominal rate PyAV reports (only used to guess which reference frames to keep up front)."""
    if entry.kind == "frames":
        return FOLDER_FPS
    with av.open(str(entry.path)) as c:
        rate = c.streams.best("video").guessed_rate
    return float(rate) if rate else 25.0


@dataclass
class Case:
    """One corpus file with its reference: times, upright size, and the reference frames asked for so far."""

    entry: CorpusFile
    times: np.ndarray
    size: tuple[int, int]
    held: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def n(self) -> int:
        return len(self.times)

    def frames(self, indices) -> list[np.ndarray]:
        """Reference frames at `indices` (decoded once more when some are not held yet)."""
        indices = [int(i) for i in indices]
        missing = set(indices) - set(self.held)
        if missing:
            self.held.update(reference(self.entry.path, missing).frames)
        return [self.held[i] for i in indices]


@pytest.fixture(scope="module", params=CORPUS_NAMES)
def case(request, corpus) -> Case:
    entry = corpus[request.param]
    ref = reference(entry.path)
    c = Case(entry, ref.times, ref.size, dict(ref.frames))
    nominal = pyav_rate(entry)
    keep = set(uniform(c.n)) | set(fps_expected(c.times, 1.0, nominal)) | set(fps_expected(c.times, 4.0, nominal))
    c.frames(sorted(keep))
    return c


# ----------------------------------------------------------------------------------------------------------------
# Comparison helpers (messages name the file and the index)


def check_frame(case: Case, index: int, got: np.ndarray, expected: np.ndarray, what: str) -> None:
    where = f"{case.name}: {what}: frame at display index {index}"
    assert got.dtype == np.uint8, f"{where}: dtype {got.dtype}, expected uint8"
    assert got.shape == expected.shape, f"{where}: shape {got.shape}, the reference's is {expected.shape}"
    want_id = case.entry.ids[index]
    got_id = read_marker(got)
    if got_id != want_id:
        shown = f" (display index {case.entry.ids.index(got_id)}'s)" if got_id in case.entry.ids else ""
        pytest.fail(f"{where}: shows the frame with marker {got_id}{shown}, expected marker {want_id}")
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.mean() < MEAN_TOL and diff.max() <= MAX_TOL, (
        f"{where}: differs from the reference decode (mean abs diff {diff.mean():.3f}, max {diff.max()}, "
        f"{(diff > MAX_TOL).sum()} values over {MAX_TOL})"
    )


def check_frames(case: Case, indices, got: np.ndarray, what: str) -> None:
    indices = [int(i) for i in indices]
    assert isinstance(got, np.ndarray), f"{case.name}: {what}: frames are a {type(got).__name__}, not an ndarray"
    assert len(got) == len(indices), f"{case.name}: {what}: {len(got)} frames, expected {len(indices)}"
    for i, frame, ref in zip(indices, got, case.frames(indices), strict=True):
        check_frame(case, i, frame, ref, what)


def check_times(case: Case, indices, got, what: str) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = case.times[np.asarray(indices, dtype=int)]
    assert got.shape == want.shape, f"{case.name}: {what}: {got.shape[0]} times, expected {want.shape[0]}"
    bad = np.flatnonzero(np.abs(got - want) > TIME_TOL)
    assert not len(bad), (
        f"{case.name}: {what}: wrong presentation times at {len(bad)} positions; first: position {bad[0]} "
        f"(display index {int(np.asarray(indices)[bad[0]])}) got {got[bad[0]]:.6f} s, expected {want[bad[0]]:.6f} s"
    )


# ----------------------------------------------------------------------------------------------------------------
# The corpus itself (no reader involved): the reference shows what was written


def test_reference_shows_the_written_frames(case: Case) -> None:
    entry = case.entry
    assert case.n == entry.num_frames, f"{case.name}: reference decodes {case.n} frames, {entry.num_frames} written"
    assert case.size == (entry.width, entry.height), f"{case.name}: reference size {case.size}"
    for i, frame in sorted(case.held.items()):
        assert read_marker(frame) == entry.ids[i], f"{case.name}: reference frame {i} marker {read_marker(frame)}"
    assert np.all(np.diff(case.times) > 0), f"{case.name}: reference times are not increasing"
    drift = np.abs(case.times - np.asarray(entry.intended_times)).max()
    assert drift < 0.02, f"{case.name}: reference times are {drift:.4f} s away from the intended ones"


def test_corpus_files_have_their_properties(corpus) -> None:
    """What FFmpeg reads back from the files whose point is a container or bitstream property."""
    with av.open(str(corpus["editlist_mp4"].path)) as c:
        packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        assert [p.is_discard for p in packets].count(True) == 3 and packets[0].is_discard and packets[0].is_keyframe
    nals = h264_nal_types(corpus["open_gop_mp4"].path)
    keys = [k for k, (_, key, _) in enumerate(nals) if key]
    assert len(keys) == 4 and 5 in nals[0][2], f"open_gop_mp4: key packets at {keys}"
    for k in keys[1:]:  # non-IDR I frames, followed in decode order by B-frames shown before them
        assert 5 not in nals[k][2] and 1 in nals[k][2], f"open_gop_mp4: key packet {k} has NAL types {nals[k][2]}"
        assert nals[k + 1][0] < nals[k][0], f"open_gop_mp4: no leading frame after key packet {k}"
    with av.open(str(corpus["long_gop_480p"].path)) as c:
        keys = [k for k, p in enumerate(p for p in c.demux(c.streams.video[0]) if p.size) if p.is_keyframe]
    assert keys == [0, 250], f"long_gop_480p: keyframes at packets {keys}"
    with av.open(str(corpus["mpegts_start_1_4s"].path)) as c:
        assert abs(c.start_time / 1e6 - 1.39) < 0.02, f"mpegts_start_1_4s: start_time {c.start_time}"
    with av.open(str(corpus["two_video_streams_mkv"].path)) as c:
        assert c.streams.best("video").index == 1 and len(c.streams.video) == 2
    for name, rotation in (("rotate90_mp4", 90), ("rotate180_mov", 180), ("rotate270_mkv", 270)):
        with av.open(str(corpus[name].path)) as c:
            frame = next(c.decode(video=0))
        assert frame.rotation % 360 == rotation, f"{name}: the decoded frame says rotation {frame.rotation}"


def test_mp4_and_mov_files_are_timed_from_their_index_as_their_packets_announce(corpus) -> None:
    """Every MP4/MOV file of the corpus (B-frames, HEVC 10-bit, an edit list, timestamp gaps, open GOPs, audio
    first, rotation, one frame) is timed from its container index, and that is the timeline its packets announce."""
    checked = []
    for name in CORPUS_NAMES:
        entry = corpus[name]
        if entry.kind != "video" or entry.path.suffix not in (".mp4", ".mov"):
            continue
        with av.open(str(entry.path)) as c:
            stream = c.streams.best("video")
            indexed = indexed_samples(c, stream, str(entry.path))
            assert indexed is not None, f"{name}: not read from its container index"
            timeline = indexed.checked_timeline(c, stream)
        with av.open(str(entry.path)) as c:
            scanned = scan_packets(c, c.streams.best("video"))
        assert timeline is not None and scanned is not None, f"{name}: no timeline from the index or the packets"
        assert np.array_equal(timeline.pts, scanned.pts), f"{name}: the index's presentation times differ"
        assert np.array_equal(timeline.key_pts, scanned.key_pts), f"{name}: the index's keyframes differ"
        checked.append(name)
    assert len(checked) >= 10, f"only {checked} are MP4/MOV files"


# ----------------------------------------------------------------------------------------------------------------
# The reader against the reference, on every file


def test_metadata(case: Case) -> None:
    with open_video(case.entry.path) as reader:
        assert reader.num_frames == case.n, f"{case.name}: num_frames {reader.num_frames}, reference {case.n}"
        assert tuple(reader.size) == case.size, f"{case.name}: size {tuple(reader.size)}, reference {case.size}"
        assert reader.fps > 0, f"{case.name}: fps {reader.fps}"
        times = np.asarray(reader.times)
    assert times.dtype == np.float64, f"{case.name}: times dtype {times.dtype}"
    check_times(case, range(case.n), times, "reader.times")


def test_load_video_uniform(case: Case) -> None:
    idx = uniform(case.n)
    frames, times = load_video(case.entry.path, num_frames=NUM_FRAMES)
    check_frames(case, idx, frames, f"load_video(num_frames={NUM_FRAMES})")
    check_times(case, idx, times, f"load_video(num_frames={NUM_FRAMES})")


@pytest.mark.parametrize("fps", [1.0, 4.0])
def test_load_video_fps(case: Case, fps: float) -> None:
    with open_video(case.entry.path) as reader:
        nominal = reader.fps
    idx = fps_expected(case.times, fps, nominal)
    frames, times = load_video_fps(case.entry.path, fps=fps)
    what = f"load_video_fps(fps={fps})"
    got_times = np.asarray(times, dtype=np.float64)
    if len(got_times) != len(idx) or np.abs(got_times - case.times[idx]).max() > TIME_TOL:
        pytest.fail(
            f"{case.name}: {what}: expected the frames at display indices {idx} (times "
            f"{np.round(case.times[idx], 4).tolist()}), got {len(got_times)} frames at times "
            f"{np.round(got_times, 4).tolist()}"
        )
    check_frames(case, idx, frames, what)


def test_iter_frames(case: Case) -> None:
    """Streaming gives every frame the sequential decode gives, with its time (pixels of a subset on big files)."""
    w, h = case.size
    stride = max(1, -(-case.n * w * h // ITER_BUDGET))
    what = "iter_frames()"
    count = 0
    with open_video(case.entry.path) as reader:
        pairs = itertools.zip_longest(reader.iter_frames(), iter_reference(case.entry.path, lambda i: i % stride == 0))
        for i, (got, ref) in enumerate(pairs):
            assert got is not None, f"{case.name}: {what} stopped after {i} frames, the reference has {case.n}"
            assert ref is not None, f"{case.name}: {what} yields more than the reference's {case.n} frames"
            (t, frame), (rt, rframe) = got, ref
            assert abs(float(t) - rt) <= TIME_TOL, (
                f"{case.name}: {what}: frame {i} at {float(t):.6f} s, expected {rt:.6f} s"
            )
            if rframe is not None:
                check_frame(case, i, np.asarray(frame), rframe, what)
            count += 1
    assert count == case.n


def test_get_frames_out_of_order(case: Case) -> None:
    """Random access in a scrambled order (backward seeks and a repeat included) returns each frame asked for, in
    that order; with a transform, the transform of those frames."""
    rng = np.random.default_rng(0)
    picks = sorted({0, case.n - 1, case.n // 2, *rng.integers(0, case.n, size=5).tolist()})
    order = [picks[-1], *picks[:-1][::-1], picks[len(picks) // 2]]  # last first, then backwards, then a repeat
    seen: list[tuple[int, ...]] = []

    def thumbnails(batch: np.ndarray) -> torch.Tensor:
        seen.append(batch.shape)
        assert batch.dtype == np.uint8
        return torch.from_numpy(np.ascontiguousarray(batch[:, ::16, ::16]))

    with open_video(case.entry.path) as reader:
        frames = reader.get_frames(np.asarray(order))
        check_frames(case, order, frames, f"get_frames({order})")
        small = reader.get_frames(np.asarray(order), transform=thumbnails)
    w, h = case.size
    assert seen and all(s[1:] == (h, w, 3) for s in seen), f"{case.name}: the transform saw batches {seen}"
    assert isinstance(small, torch.Tensor) and tuple(small.shape[:1]) == (len(order),), (
        f"{case.name}: get_frames(transform=...) returned {type(small).__name__} {getattr(small, 'shape', None)}"
    )
    for pos, (i, ref) in enumerate(zip(order, case.frames(order), strict=True)):
        diff = np.abs(small[pos].numpy().astype(np.int16) - ref[::16, ::16].astype(np.int16))
        assert diff.max() <= MAX_TOL, f"{case.name}: get_frames(transform=...): output {pos} is not frame {i}'s"


def test_iter_frames_at_rate(case: Case) -> None:
    """iter_frames(fps=1.0) yields the frames and times of the rate rule."""
    with open_video(case.entry.path) as reader:
        idx = fps_expected(case.times, 1.0, reader.fps)
        got = [(t, read_marker(frame)) for t, frame in reader.iter_frames(fps=1.0)]
    want = [(float(case.times[i]), case.entry.ids[i]) for i in idx]
    assert len(got) == len(want) and all(
        abs(t - wt) <= TIME_TOL and m == wm for (t, m), (wt, wm) in zip(got, want, strict=True)
    ), f"{case.name}: iter_frames(fps=1.0) gave (time, marker) {got}, expected {want}"


# ----------------------------------------------------------------------------------------------------------------
# Properties of particular files


@pytest.mark.parametrize("name", ["rotate90_mp4", "rotate180_mov", "rotate270_mkv"])
def test_rotated_files_come_out_upright(corpus, name: str) -> None:
    entry = corpus[name]
    with open_video(entry.path) as reader:
        assert tuple(reader.size) == (entry.width, entry.height), f"{name}: size {reader.size} is not upright"
        idx = [0, entry.num_frames // 2, entry.num_frames - 1]
        frames = reader.get_frames(np.asarray(idx))
    for i, frame in zip(idx, frames, strict=True):
        source = entry.source_frame(i)
        assert frame.shape == source.shape, f"{name}: frame {i} shape {frame.shape}, upright is {source.shape}"
        diff = np.abs(frame.astype(np.int16) - source.astype(np.int16)).mean()
        assert diff < 15, f"{name}: frame {i} is not the upright source frame (mean abs diff {diff:.1f})"
        assert read_marker(frame) == entry.ids[i], f"{name}: frame {i}: the marker is not where upright has it"


def test_vfr_is_sampled_by_real_time(corpus) -> None:
    """25 fps for 2 s then 4 fps for 2 s: one frame per second of presentation time, not 9 of 10 from the first
    half; uniform sampling reports the real times of the frames it picks."""
    entry = corpus["vfr_mkv"]
    frames, times = load_video_fps(entry.path, fps=1.0)
    ids = [read_marker(f) for f in frames]
    assert len(times) == 4 and np.allclose(times, [0.0, 1.0, 2.0, 3.0], atol=1e-3), (
        f"vfr_mkv: 1-fps sampling took frames at times {np.round(times, 3).tolist()}, expected 0, 1, 2, 3 s"
    )
    assert ids == [0, 25, 50, 54], f"vfr_mkv: 1-fps sampling took the frames with markers {ids}"
    frames, times = load_video(entry.path, num_frames=NUM_FRAMES)
    assert abs(times[-1] - 3.75) < 1e-3, f"vfr_mkv: the last frame is shown at 3.75 s, load_video says {times[-1]}"
    assert read_marker(frames[-1]) == 57


def test_concatenated_segments_keep_their_gaps(corpus) -> None:
    entry = corpus["concat_gaps_mp4"]
    with open_video(entry.path) as reader:
        times = np.asarray(reader.times)
    steps = np.diff(times)
    assert abs(steps[24] - (0.04 + 0.28)) < 1e-3 and abs(steps[49] - (0.04 + 0.52)) < 1e-3, (
        f"concat_gaps_mp4: the joins are {steps[24]:.4f} s and {steps[49]:.4f} s apart, expected 0.32 and 0.56"
    )
    frames, times = load_video_fps(entry.path, fps=1.0)
    ids = [read_marker(f) for f in frames]
    # targets 0, 1, 2, 3 s: frame 0 (0 s), frame 25 (first of segment 2, 1.28 s), frame 43 (2.0 s), frame 55 (3.0 s)
    assert ids == [0, 25, 43, 55], f"concat_gaps_mp4: 1-fps sampling took markers {ids} at times {times}"


def test_edit_list_hides_discarded_frames(corpus) -> None:
    entry = corpus["editlist_mp4"]
    with open_video(entry.path) as reader:
        assert reader.num_frames == 37, f"editlist_mp4: {reader.num_frames} frames, 3 of 40 are discarded"
        first = reader.get_frames(np.asarray([0]))[0]
        assert abs(reader.times[0]) < 1e-6, f"editlist_mp4: first frame at {reader.times[0]} s"
    assert read_marker(first) == 3, f"editlist_mp4: frame 0 shows marker {read_marker(first)}, expected 3"


def test_open_gop_leading_frames(corpus) -> None:
    """The B-frames shown just before each open-GOP I frame reference the previous GOP: a fresh reader asked for
    one of them alone must decode it whole."""
    entry = corpus["open_gop_mp4"]
    for i in (23, 24, 48, 49, 73, 74):
        with open_video(entry.path) as reader:
            frame = reader.get_frames(np.asarray([i]))[0]
        expected = reference(entry.path, [i]).frames[i]
        diff = np.abs(frame.astype(np.int16) - expected.astype(np.int16))
        assert read_marker(frame) == i, f"open_gop_mp4: frame {i} alone shows marker {read_marker(frame)}"
        assert diff.mean() < MEAN_TOL and diff.max() <= MAX_TOL, (
            f"open_gop_mp4: frame {i} asked alone differs from the sequential decode (mean {diff.mean():.2f}, "
            f"max {diff.max()}): a leading frame decoded without its previous GOP"
        )


def test_start_times_are_subtracted(corpus) -> None:
    ts, late = corpus["mpegts_start_1_4s"], corpus["audio_before_video_mp4"]
    with open_video(ts.path) as reader:
        first = reader.times[0]
        assert 0.0 <= first < 0.05, f"mpegts_start_1_4s: first frame at {first} s (the clock starts at 1.4 s)"
    with open_video(late.path) as reader:
        assert abs(reader.times[0] - 0.5) < 1e-3, (
            f"audio_before_video_mp4: the video starts 0.5 s after the audio; first frame at {reader.times[0]} s"
        )


def test_two_streams_read_the_best_one(corpus) -> None:
    entry = corpus["two_video_streams_mkv"]
    with open_video(entry.path) as reader:
        assert tuple(reader.size) == (640, 360), f"two_video_streams_mkv: size {reader.size} (the preview is 320x180)"
        frame = reader.get_frames(np.asarray([5]))[0]
    assert read_marker(frame) == 5, f"two_video_streams_mkv: frame 5 shows marker {read_marker(frame)}"


def test_gray_and_one_frame(corpus) -> None:
    gray = corpus["ffv1_gray_mkv"]
    frames, _ = load_video(gray.path, num_frames=4)
    assert np.array_equal(frames[..., 0], frames[..., 1]) and np.array_equal(frames[..., 1], frames[..., 2])
    assert np.array_equal(frames[0], gray.source_frame(0)), "ffv1_gray_mkv: lossless gray is not exact"
    one = corpus["one_frame_mp4"]
    frames, times = load_video(one.path, num_frames=NUM_FRAMES)
    assert frames.shape == (NUM_FRAMES, 360, 640, 3) and np.all(times == 0.0)
    frames, times = load_video_fps(one.path, fps=1.0)
    assert len(frames) == 1 and times[0] == 0.0
