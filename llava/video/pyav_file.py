"""Exact random access to a video file (or a seekable URL) through PyAV: the frames a sequential decode shows.

Opening learns the presentation time of every frame and where the keyframes are: for a plain MP4/MOV file from
the container's own index and sample tables, checked against the packets at the start and in the last GOP
(`IndexedSamples`), otherwise by reading every packet's header once (no decoding). A frame is then served by
seeking to the keyframe at or before it and decoding on until the frame with exactly its presentation time comes
out; frames close together share one decode, which stops at the last wanted packet (the decoder is drained, not
fed on) and on progressive H.264 leaves pictures no other picture refers to undecoded. A picture served (or the
keyframe a run starts from) is let go before the decoder makes the next: each one still referenced keeps one more
picture in FFmpeg's pool (12 MB at 4K). Nothing is trusted that was not checked: after a seek, frames count only
from the keyframe aimed at, and if the decoder shows a frame the timeline does not hold (or never shows one it
does), the reader falls back to a full sequential decode, which is the definition of the right frames. That decode
runs without frame threads, which drop the pictures still in flight when a packet fails to decode (a truncated
file's last one); the frames announced that it does not show are lost: the times stay as announced, and asking for
a lost frame raises `FramesLost` (a VideoError) naming it. See DESIGN.md, "Real video".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from llava.errors import VideoError
from llava.video.mp4_tables import sample_tables
from llava.video.pyav_media import nominal_fps, open_container, upright_rgb, upright_size, video_stream
from llava.video.reader import FrameRows, FramesLost, VideoReader, handed_alone
from llava.video.rgb_bands import RGBBands, converts_in_bands

CONTINUE_FRAMES = 8  # decode on through at most this many unwanted frames rather than seek
CHECK_PACKETS = 32  # packets from the start of a file that must agree with the timeline read from its index
INDEX_KEYFRAME, INDEX_DISCARD = 0x1, 0x2  # FFmpeg's AVINDEX_KEYFRAME and AVINDEX_DISCARD_FRAME flags
FIELD_PROGRESSIVE = 1  # FFmpeg's AV_FIELD_PROGRESSIVE: a stream of whole frames, no fields
LOST_NAMED = 5  # lost frames named in an error (then how many more)
T = TypeVar("T")


class _Untrusted(Exception):
    """The decoder disagrees with the packet timeline; the reader must fall back to a sequential decode."""


@dataclass(frozen=True)
class Timeline:
    """Presentation timestamps (stream time base units) of every frame in display order, and the keyframes'."""

    pts: np.ndarray  # (N,) int64, strictly increasing
    key_pts: np.ndarray  # (K,) int64, strictly increasing; frames before key_pts[0] need a decode from the start
    exact: bool  # True: announced by the packets or the index, checked while decoding; False: built by decoding


def scan_packets(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Timeline | None:
    """The timeline announced by the packets, or None when they cannot announce it (a packet without a
    timestamp, two frames at one time): then only a sequential decode can tell. A corrupt packet is not looked
    for here: a frame that does not decode is found missing while decoding, which falls back the same way."""
    cuts = "mov" in container.format.name and any(entry.is_discard for entry in stream.index_entries)  # edit list
    pts: list[int] = []
    keys: list[int] = []
    # a damaged tail ends the demux with an FFmpegError: the packets read so far are checked while decoding, as any
    with suppress(av.FFmpegError):
        for packet in container.demux(stream):  # the hot loop of opening a file: one pass, few attributes
            stamp = packet.pts
            if stamp is None:
                if packet.size:
                    return None
                continue  # the flush packet at the end
            if cuts and packet.is_discard:
                continue
            pts.append(stamp)
            if packet.is_keyframe:
                keys.append(stamp)
    order = np.sort(np.asarray(pts, dtype=np.int64))
    if order.size == 0 or np.any(np.diff(order) == 0):
        return None
    return Timeline(order, np.unique(np.asarray(keys, dtype=np.int64)), exact=True)


@dataclass(frozen=True)
class IndexedSamples:
    """Every sample of an MP4/MOV video track in decode order, as FFmpeg's index and the track's tables give them.
    The packets carry presentation times `pts` plus one constant (FFmpeg's shift for negative offsets)."""

    dts: np.ndarray  # (N,) int64, strictly increasing: FFmpeg's index timestamps
    pts: np.ndarray  # (N,) int64: dts plus the composition offsets
    key: np.ndarray  # (N,) bool
    discard: np.ndarray  # (N,) bool: before the start of an edit list, decoded but not shown

    def checked_timeline(
        self, container: av.container.InputContainer, stream: av.video.stream.VideoStream
    ) -> Timeline | None:
        """The timeline, if the first CHECK_PACKETS packets and the packets from the last keyframe to the end carry
        exactly these samples' decode and presentation times and flags (one constant apart); else None. Reads
        those packets: the container is left anywhere."""
        last_key = int(np.flatnonzero(self.key)[-1]) if self.key.any() else 0
        try:
            head = [(p.dts, p.pts, p.is_keyframe, p.is_discard) for p in _packets(container, stream, CHECK_PACKETS)]
            container.seek(int(self.dts[last_key]), stream=stream, backward=True)
            tail = [(p.dts, p.pts, p.is_keyframe, p.is_discard) for p in _packets(container, stream)]
        except av.FFmpegError:
            return None
        if not head or not tail or head[0][1] is None:
            return None
        shift = head[0][1] - int(self.pts[0])
        if not (self._agree(head, 0, shift) and self._agree(tail, len(self.dts) - len(tail), shift)):
            return None
        shown = np.sort(self.pts[~self.discard] + shift)
        if shown.size == 0 or np.any(np.diff(shown) == 0):
            return None
        return Timeline(shown, np.unique(self.pts[self.key & ~self.discard] + shift), exact=True)

    def _agree(self, packets: list[tuple], first: int, shift: int) -> bool:
        """Whether `packets` are samples `first`, `first` + 1, ... as announced."""
        if first < 0:
            return False
        for n, (dts, pts, key, discard) in enumerate(packets, start=first):
            expected = (int(self.dts[n]), int(self.pts[n]) + shift, bool(self.key[n]), bool(self.discard[n]))
            if (dts, pts, key, discard) != expected:
                return False
        return True


def _packets(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, limit: int | None = None
) -> Iterator[av.Packet]:
    """The stream's packets from the container's position (at most `limit`), without the end-of-stream marker."""
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue
        yield packet
        count += 1
        if count == limit:
            return


def indexed_samples(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, source: str
) -> IndexedSamples | None:
    """The samples of an MP4/MOV file's video track from FFmpeg's index and the track's sample tables (no packet
    read), or None: not such a file, or the index does not hold the tables' samples one for one in order (an edit
    list FFmpeg rearranged, a damaged table) or points past the end of the file."""
    if "mov" not in container.format.name or not os.path.isfile(source):
        return None
    tables = sample_tables(source, stream.id)
    entries = stream.index_entries
    if tables is None or len(entries) != len(tables.durations) or len(entries) == 0:
        return None
    dts, flags, ends = np.array([(e.timestamp, e.flags, e.pos + e.size) for e in entries], np.int64).T
    decode_times = np.concatenate(([0], np.cumsum(tables.durations[:-1])))
    if np.any(dts - decode_times != dts[0]) or ends.max() > os.path.getsize(source):
        return None
    return IndexedSamples(dts, dts + tables.offsets, (flags & INDEX_KEYFRAME) > 0, (flags & INDEX_DISCARD) > 0)


def _decoded(stream: av.video.stream.VideoStream, packet: av.Packet | None) -> list[av.VideoFrame]:
    """The frames the decoder gives after `packet` (None: all it still holds); none where the data is corrupt,
    as a player skips it."""
    try:
        return stream.decode(packet)
    except av.InvalidDataError:
        return []


def skips_unreferenced(stream: av.video.stream.VideoStream) -> bool:
    """Whether pictures no other picture refers to can be left undecoded on the way to a wanted one: H.264 of
    whole frames (its nal_ref_idc marks them; FFmpeg's skip_frame=NONREF drops exactly those), where nothing else
    decoded depends on them. Not HEVC, whose 'non-reference' pictures may still serve higher temporal layers."""
    return stream.codec_context.name == "h264" and stream.codec_context.field_order == FIELD_PROGRESSIVE


class PyAVFileReader(VideoReader):
    """Frames by index and presentation time from a local file or a seekable URL, exactly."""

    def __init__(self, source: str, timeout: float | None = None) -> None:
        self._timeout = timeout
        self._lost = np.zeros(0, dtype=np.int64)  # pts of announced frames a plain decode does not show
        self._rgb = VideoReformatter()  # one converter to RGB for every frame served
        self._in_bands: dict[tuple, bool] = {}  # kinds of picture checked for conversion in bands (`_rgb_rows`)
        self._container = open_container(source, timeout=timeout)
        try:
            self._stream = stream = video_stream(self._container, source)
            self._skip_unreferenced = skips_unreferenced(stream)
            fps = nominal_fps(stream)
            # seconds per pts unit (a stream without one is timed by frame number at the nominal rate)
            self._time_base: Fraction = stream.time_base or 1 / Fraction(fps)
            timeline = self._indexed_timeline(source)
            if timeline is None:
                timeline = scan_packets(self._container, self._stream)
            self._timeline = timeline if timeline is not None else self._decode_timeline(source)
            first = self._probe(source)
            if first is None:
                raise VideoError(f"{source}: no decodable video frames")
        except BaseException:
            self._container.close()
            raise
        start = self._container.start_time
        self._origin = start / 1_000_000 if start is not None else float(self._timeline.pts[0] * self._time_base)
        super().__init__(source, self._seconds(self._timeline.pts), fps, upright_size(first))

    def _indexed_timeline(self, source: str) -> Timeline | None:
        """The timeline from the container's index, checked against packets; None (and the container back at
        the start of the file) where there is none or the packets disagree with it."""
        indexed = indexed_samples(self._container, self._stream, source)
        if indexed is None:
            return None
        timeline = indexed.checked_timeline(self._container, self._stream)
        if timeline is None:
            self._restart(source)
        return timeline

    def _probe(self, source: str) -> av.VideoFrame | None:
        """The first keyframe (its size and rotation are the video's), found by a seek rather than by opening the
        file again; from the start of the file when the packets announce no keyframe or cannot be trusted."""
        if self._timeline.exact and len(self._timeline.key_pts):
            try:
                frame = next(self._frames_from(0, source), None)
            except _Untrusted:
                frame = None
            if frame is not None:
                return frame
        return next(self._frames_from(-1, source), None)

    def _seconds(self, pts: np.ndarray) -> np.ndarray:
        """Presentation times in seconds since the start of the file."""
        return pts.astype(np.float64) * float(self._time_base) - self._origin

    # ------------------------------------------------------------------ decoding

    def _restart(self, source: str) -> av.video.stream.VideoStream:
        """A fresh container positioned at the start of the file."""
        self._container.close()
        self._container = open_container(source, timeout=self._timeout)
        self._stream = video_stream(self._container, source)
        return self._stream

    def _raw_frames(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        source: str,
        wanted: frozenset[int] = frozenset(),
    ) -> Iterator[av.VideoFrame]:
        """Decode `stream` on from `container`'s position; corrupt packets are skipped like a player skips them.

        With `wanted` (presentation times), decoding stops at the packets of the last of them: the decoder is
        drained of the frames it holds for reordering rather than fed more packets; and where the stream allows it
        (`skips_unreferenced`), pictures that no other picture refers to are not decoded unless wanted."""
        codec = stream.codec_context
        codec.skip_frame = "DEFAULT"
        pending = set(wanted)
        skip = self._skip_unreferenced and bool(pending)
        try:
            for packet in container.demux(stream):
                if skip:
                    codec.skip_frame = "DEFAULT" if packet.pts in pending else "NONREF"
                yield from _decoded(stream, packet)
                if pending:
                    pending.discard(packet.pts)
                    if not pending:
                        yield from _decoded(stream, None)
                        return
        except av.FFmpegError as err:
            raise VideoError(f"{source}: decoding failed ({err})") from err

    def _frames_from(self, key: int, source: str, wanted: frozenset[int] = frozenset()) -> Iterator[av.VideoFrame]:
        """Trusted frames from keyframe number `key` on (-1: from the start of the file), up to the last of
        `wanted` (presentation times) if any are given (see `_raw_frames`).

        After a seek, output before the aimed keyframe is dropped and the keyframe itself must come first;
        a seek that lands after it is retried one keyframe earlier, down to a decode from the start."""
        if key < 0:
            stream = self._restart(source)
            yield from self._raw_frames(self._container, stream, source, wanted)
            return
        aim = int(self._timeline.key_pts[key])
        stream = self._stream
        try:
            self._container.seek(aim, stream=stream, backward=True)
        except av.FFmpegError:
            yield from self._frames_from(-1, source, wanted)
            return
        frames = self._raw_frames(self._container, stream, source, wanted | {aim})
        for frame in frames:
            if frame.pts is None:
                raise _Untrusted
            if frame.pts < aim:
                continue  # before the aimed keyframe: an earlier landing, or leading pictures of an open GOP
            if frame.pts > aim:  # the seek landed after the keyframe
                yield from self._frames_from(key - 1, source, wanted)
                return
            yield frame
            del frame  # the keyframe is not held while the rest of the run decodes
            break
        yield from frames

    def _decode(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        return self._converted(indices, self._rgb_array)

    def _decode_in_bands(self, indices: np.ndarray) -> Iterator[np.ndarray | FrameRows]:
        return self._converted(indices, self._rgb_rows)

    def _rgb_array(self, frame: av.VideoFrame) -> np.ndarray:
        return upright_rgb(frame, self._rgb)

    def _rgb_rows(self, frame: av.VideoFrame) -> np.ndarray | FrameRows:
        """`frame` as bands of RGB rows where it goes to a transform alone and converts in bands exactly (checked
        once per picture size, format and colour setting), else as one RGB array."""
        if handed_alone(frame.width * frame.height * 3):
            kind = (frame.width, frame.height, frame.format.name, frame.colorspace, frame.color_range, frame.rotation)
            if kind not in self._in_bands:
                self._in_bands[kind] = converts_in_bands(frame, self._rgb)
            if self._in_bands[kind]:
                return RGBBands(frame, self._rgb)
        return self._rgb_array(frame)

    def _converted(self, indices: np.ndarray, convert: Callable[[av.VideoFrame], T]) -> Iterator[T]:
        """`convert` of the pictures at `indices`: neither a picture nor what it became is held here while the
        next one decodes."""
        for frame in self._pictures(indices):
            item = convert(frame)
            del frame
            yield item
            del item

    def _pictures(self, indices: np.ndarray) -> Iterator[av.VideoFrame]:
        """The decoded pictures at `indices` (sorted, unique, valid)."""
        targets = self._timeline.pts[indices]
        self._refuse_lost(targets[np.isin(targets, self._lost)])
        done = 0
        try:
            for frame in self._seek_decode(targets):
                done += 1
                yield frame
                del frame
        except _Untrusted:
            yield from self._fall_back(targets[done:])

    def _runs(self, targets: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """`targets` (sorted pts) cut into runs that one seek serves, each with the number of the keyframe it is
        decoded from (-1: the start of the file): a run goes on to the next target unless that target's keyframe
        lies more than CONTINUE_FRAMES frames past the run's last target."""
        pts, key_pts = self._timeline.pts, self._timeline.key_pts
        keys = np.searchsorted(key_pts, targets, side="right") - 1
        start = np.concatenate(([0], np.searchsorted(pts, key_pts)))[keys + 1]  # display index of each one's keyframe
        cuts = np.flatnonzero(start[1:] - np.searchsorted(pts, targets[:-1]) > CONTINUE_FRAMES) + 1
        return [(int(keys[first]), run) for first, run in zip([0, *cuts], np.split(targets, cuts), strict=True)]

    def _seek_decode(self, targets: np.ndarray) -> Iterator[av.VideoFrame]:
        """The frames presented at `targets` (sorted pts), checked against the timeline as they come."""
        timeline, source = self._timeline, self.source
        for key, run in self._runs(targets):
            frames = self._frames_from(key, source, frozenset(run.tolist()))
            for target in run:
                for frame in frames:
                    if frame.pts is None or frame.pts > target:
                        raise _Untrusted
                    if self._skip_unreferenced and frame.interlaced_frame:
                        raise _Untrusted  # pictures were left undecoded where that is only known safe on whole frames
                    shown = int(np.searchsorted(timeline.pts, frame.pts))
                    if shown >= len(timeline.pts) or timeline.pts[shown] != frame.pts:
                        raise _Untrusted  # a frame the packets did not announce
                    if frame.pts == target:
                        yield frame
                        del frame  # let go of before the decoder makes the next picture
                        break
                else:
                    raise _Untrusted  # the file ended before the frame the packets announced

    # ------------------------------------------------------------------ the exact path

    def _plain_frames(self, source: str) -> Generator[av.VideoFrame, None, None]:
        """Every frame from the start of the file, decoded on a container of its own by a decoder without frame
        threads: where a packet fails to decode, frame threads also drop the pictures still in flight, which a
        plain decode shows (a truncated file's last packet, a damaged one)."""
        with open_container(source, timeout=self._timeout) as container:
            stream = video_stream(container, source)
            stream.thread_type = "SLICE"
            yield from self._raw_frames(container, stream, source)

    def _decode_timeline(self, source: str) -> Timeline:
        """The timeline a plain sequential decode shows (every frame decoded once, none kept)."""
        with closing(self._plain_frames(source)) as frames:
            with self._progress(frames, self._stream.frames or None, "reading the frames' times") as bar:
                pts = [frame.pts for frame in bar]
        if not pts:
            raise VideoError(f"{source}: no decodable video frames")
        if any(p is None for p in pts) or np.any(np.diff(np.asarray(pts, dtype=np.float64)) <= 0):
            pts = list(range(len(pts)))  # no usable timestamps: frames in decode order at the nominal rate
            self._time_base = 1 / Fraction(nominal_fps(self._stream))
        return Timeline(np.asarray(pts, dtype=np.int64), np.zeros(0, dtype=np.int64), exact=False)

    def _check_announced(self, targets: np.ndarray) -> np.ndarray:
        """Hold the announced timeline against a plain decode (once; `targets` are announced pts, returned as pts
        of the timeline kept). Where the decode only lacks announced frames, those are lost and the times stay as
        announced; where it shows frames the packets did not announce, its timeline replaces theirs."""
        announced, announced_base = self._timeline, self._time_base
        decoded = self._decode_timeline(self.source)
        if self._time_base == announced_base and np.isin(decoded.pts, announced.pts).all():
            self._lost = np.setdiff1d(announced.pts, decoded.pts)
            return targets
        self._lost = np.zeros(0, dtype=np.int64)
        self._timeline = decoded
        self.times = self._seconds(decoded.pts)
        if self._time_base != announced_base and len(decoded.pts) == len(announced.pts):
            return np.searchsorted(announced.pts, targets)  # frames without timestamps: matched by position
        return targets

    def _refuse_lost(self, lost: np.ndarray) -> None:
        """`FramesLost` naming the frames (pts) asked for that do not decode, if there are any, and carrying the
        indices of every lost frame."""
        if lost.size:
            named = ", ".join(f"{t:.3f} s" for t in self._seconds(lost[:LOST_NAMED]))
            more = f" and {lost.size - LOST_NAMED} more" if lost.size > LOST_NAMED else ""
            message = f"{self.source}: frames lost, they do not decode (damaged file?): {named}{more}"
            raise FramesLost(message, np.searchsorted(self._timeline.pts, self._lost))

    def _fall_back(self, targets: np.ndarray) -> Iterator[av.VideoFrame]:
        """Serve the remaining `targets` from a plain sequential decode, the definition of the right frames."""
        if self._timeline.exact:
            targets = self._check_announced(targets)
        shown = np.setdiff1d(self._timeline.pts, self._lost)  # the plain decode's frames, in order
        where = np.searchsorted(shown, targets)
        missing = (where >= len(shown)) | (shown[np.minimum(where, len(shown) - 1)] != targets)
        self._refuse_lost(targets[missing])
        wanted = iter(where.tolist())
        want = next(wanted, None)
        with closing(self._plain_frames(self.source)) as frames:
            for position, frame in enumerate(frames):
                while want == position:
                    yield frame
                    want = next(wanted, None)
                del frame  # not held while the next one decodes
                if want is None:
                    return

    def close(self) -> None:
        self._container.close()
