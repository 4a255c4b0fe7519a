"""The sample tables of one track of a plain MP4/MOV file, read from its header without reading any sample.

FFmpeg keeps every sample's decode timestamp and flags in its index (PyAV: `stream.index_entries`) but not the
composition offsets that turn decode times into presentation times (the `ctts` box); this reads them, with the
decode durations (`stts`) that let a caller check that FFmpeg's index holds the same samples in the same order.

Only the simplest layout is read: well-formed top-level boxes that end within the file, one `moov` that is not
compressed, no fragments (`mvex` or `moof`), one track with the asked-for id, tables whose counts agree.
Anything else gives None: the caller then learns the timestamps from the packets, as FFmpeg reads them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

_OFFSET_LIMIT = 1 << 28  # FFmpeg drops a ctts table holding an offset this large: leave such files to the packets


class _Malformed(Exception):
    """The header is not the simple layout this module reads."""


@dataclass(frozen=True)
class SampleTables:
    """Per sample, in decode order: how long it lasts and how far its presentation follows its decode time."""

    durations: np.ndarray  # (N,) int64, stream time base units (stts)
    offsets: np.ndarray  # (N,) int64, signed (ctts; zeros when the track has none)


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes laid one after another between `start` and `end`."""
    pos = start
    while pos < end:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            raise _Malformed
        size, kind = struct.unpack(">I4s", head[:8])
        body = pos + 8
        if size == 1:
            if len(head) < 16:
                raise _Malformed
            size, body = struct.unpack(">Q", head[8:16])[0], pos + 16
        elif size == 0:
            size = end - pos
        if size < body - pos or pos + size > end:
            raise _Malformed  # a box running past its parent: a truncated or damaged file
        yield kind, body, pos + size
        pos += size


def _only(f: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int]:
    """(payload start, end) of the one box of `kind` among the children of a box."""
    found = [(body, stop) for name, body, stop in _boxes(f, start, end) if name == kind]
    if len(found) != 1:
        raise _Malformed
    return found[0]


def _table(f: BinaryIO, body: int, end: int, dtype: str) -> np.ndarray:
    """The (count, value) pairs of a full box's table: version/flags, entry count, then the entries."""
    f.seek(body)
    head = f.read(8)
    if len(head) < 8:
        raise _Malformed
    entries = struct.unpack(">I", head[4:8])[0]
    if 8 + 8 * entries > end - body:
        raise _Malformed
    data = f.read(8 * entries)
    return np.frombuffer(data, dtype=np.dtype([("count", ">u4"), ("value", dtype)]))


def _sample_count(f: BinaryIO, stbl: tuple[int, int]) -> int:
    """The number of samples the sample-size box (stsz or stz2) declares."""
    sizes = [(name, body) for name, body, _ in _boxes(f, *stbl) if name in (b"stsz", b"stz2")]
    if len(sizes) != 1:
        raise _Malformed
    f.seek(sizes[0][1] + 8)
    raw = f.read(4)
    if len(raw) < 4:
        raise _Malformed
    return struct.unpack(">I", raw)[0]


def _track_id(f: BinaryIO, tkhd: tuple[int, int]) -> int:
    f.seek(tkhd[0])
    head = f.read(24)
    if len(head) < 24:
        raise _Malformed
    return struct.unpack(">I", head[20:24] if head[0] == 1 else head[12:16])[0]


def _stbl(f: BinaryIO, track_id: int) -> tuple[int, int]:
    """(payload start, end) of the sample table box of the track `track_id`."""
    top = list(_boxes(f, 0, os.fstat(f.fileno()).st_size))  # every top-level box must end within the file
    moovs = [(body, end) for name, body, end in top if name == b"moov"]
    if len(moovs) != 1 or any(name == b"moof" for name, _, _ in top):
        raise _Malformed
    children = list(_boxes(f, *moovs[0]))
    if any(name in (b"mvex", b"cmov") for name, _, _ in children):
        raise _Malformed  # fragmented or compressed header
    tracks = [(body, end) for name, body, end in children if name == b"trak"]
    matching = [trak for trak in tracks if _track_id(f, _only(f, *trak, b"tkhd")) == track_id]
    if len(matching) != 1:
        raise _Malformed
    minf = _only(f, *_only(f, *matching[0], b"mdia"), b"minf")
    return _only(f, *minf, b"stbl")


def sample_tables(path: str, track_id: int) -> SampleTables | None:
    """The decode durations and composition offsets of every sample of track `track_id` of the MP4/MOV file at
    `path`, or None when the file is not laid out simply enough to read them here (see the module's doc)."""
    try:
        with open(path, "rb") as f:
            stbl = _stbl(f, track_id)
            total = _sample_count(f, stbl)
            tables = {name: (body, end) for name, body, end in _boxes(f, *stbl) if name in (b"stts", b"ctts")}
            if b"stts" not in tables:
                return None
            stts = _table(f, *tables[b"stts"], ">u4")
            ctts = _table(f, *tables[b"ctts"], ">i4") if b"ctts" in tables else None
    except (OSError, _Malformed):
        return None
    counts = [int(stts["count"].sum(dtype=np.uint64))] + ([] if ctts is None else [int(ctts["count"].sum())])
    if any(count != total for count in counts) or np.any(stts["value"][stts["count"] > 0] == 0):
        return None  # tables that disagree, or frames sharing a decode time: FFmpeg repairs these its own way
    if ctts is not None and np.any(np.abs(ctts["value"].astype(np.int64)) >= _OFFSET_LIMIT):
        return None
    durations = np.repeat(stts["value"].astype(np.int64), stts["count"])
    offsets = np.zeros(total, np.int64) if ctts is None else np.repeat(ctts["value"].astype(np.int64), ctts["count"])
    return SampleTables(durations, offsets)
