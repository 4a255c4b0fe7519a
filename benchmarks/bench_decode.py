"""Frame sampling speed on long files: the project's reader against decord, PyAV and torchcodec.

    python benchmarks/bench_decode.py --quick                          # 0.5-minute 240p files: the benchmark runs
    python benchmarks/bench_decode.py --minutes 30 --counts 24,96 --fps 0 --repeats 3    # sparse rows, 30 minutes
    python benchmarks/bench_decode.py                                  # the whole matrix: hours on 2 cores
    python benchmarks/bench_decode.py --table-from benchmarks/results/decode.json        # a run's rows as markdown

Files: 720p H.264 (libx264 veryfast, crf 23, 2 B-frames, closed GOPs of --gops seconds, 25 fps) of rendered content
(a scrolling texture, moving gradients and shapes, and a 12-bit marker of the frame's number in its clip in the
top-left corner). A one-minute clip is encoded once per GOP length and the long file is built by remuxing its packets
(stream copy) again and again with pts/dts shifted by the clip's duration, so timestamps run on without gaps; files
are kept in --work-dir. Rows: --counts frames spread uniformly (int(linspace(0, n - 1, N))) and one frame per second
(--fps: the frame shown at 0 s, 1 s, ...). Methods, each timed in a fresh process with the file in the page cache:
- ours: llava.video.decode.load_video / load_video_fps; ours+transform: the same with the model's preprocessing
  applied while decoding (transform=VisualProcessor().video, frames come back at 224 px, float32);
- decord: VideoReader.get_batch; pyav_seq: PyAV decodes the whole file and keeps the wanted frames (every row
  reaches the last frame, so it costs the same on every row: timed on a file's first row only, --seq-every-row);
  pyav_seek: PyAV seeks (backward, to the keyframe) for every frame, its timestamp from the nominal rate, and
  decodes up to it (skipped where that would decode more than twice the file);
- tc_exact / tc_approx: torchcodec VideoDecoder, seek_mode exact / approximate (get_frames_at for uniform rows,
  get_frames_played_at for the fps row, all cores); tc_cuda: the same on the GPU, where one exists.
Correctness: every method's frames are compared with the reference, a sequential PyAV decode of the clip (frame i of
the long file is frame i mod clip length of the clip: the same packets from an IDR frame on; pyav_seq on the long
file checks that on every file), as max abs pixel difference and frames that differ, and each frame's marker is read
back (frames not from the right place in the clip); only exact methods count for the aims.
floor: the time PyAV takes to decode only the GOPs that hold the sampled frames (seek once per run of consecutive
GOPs, no colour conversion). Aims (reported, not asserted): ours at most the fastest exact method's time on every
row (wall time; the same in CPU seconds of all the process's threads, which a loaded machine changes less), and at
most 1.5x the floor. --repeats runs every method that many rounds, interleaved, and keeps the fastest. Memory:
--mem-frames frames of a 4K file through ours with the transform (--mem-full-frames without), peak RSS (VmHWM) against
the size of those frames at model size (N x 3 x 224 x 224 float32). Writes --out (JSON), prints a table per row.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

METHODS = ("ours", "ours+transform", "decord", "pyav_seq", "pyav_seek", "tc_exact", "tc_approx", "tc_cuda")
EXACT_AIM, FLOOR_AIM, MEMORY_AIM = 1.0, 1.5, 1.5
FPS, MARKER_BITS, MODEL_SIZE = 25, 12, 224


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="30,60", help="file lengths in minutes, comma-separated")
    parser.add_argument("--gops", default="2,10", help="seconds between keyframes, comma-separated")
    parser.add_argument("--counts", default="24,96,512", help="uniform sample sizes, comma-separated")
    parser.add_argument("--fps", type=float, default=1.0, help="rate of the fixed-rate row (0: no such row)")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"any of {', '.join(METHODS)}")
    parser.add_argument("--size", default="1280x720", help="frame size of the long files")
    parser.add_argument("--clip-seconds", type=int, default=60, help="length of the encoded clip that is remuxed")
    parser.add_argument("--mem-size", default="3840x2160", help="frame size of the memory row's file ('' skips it)")
    parser.add_argument("--mem-frames", type=int, default=512)
    parser.add_argument("--mem-full-frames", type=int, default=128,
                        help="frames of the memory row read at full size (512 4K frames are 12.7 GB, twice that in ours)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every method per row; the fastest counts")
    parser.add_argument("--seq-every-row", action="store_true", help="time pyav_seq on every row, not the first")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one method may take on one row")
    parser.add_argument("--quick", action="store_true", help="0.5-minute 240p files, 24 frames + fps row: a smoke run")
    parser.add_argument("--work-dir", type=Path, default=_ROOT / "benchmarks/results/decode_media")
    parser.add_argument("--out", type=Path, default=_ROOT / "benchmarks/results/decode.json")
    parser.add_argument("--table-from", type=Path, default=None, help="print a recorded JSON's rows as markdown")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.counts, args.size, args.clip_seconds = "0.5", "24", "416x240", 10
        args.mem_size, args.mem_frames, args.mem_full_frames = ("640x360" if args.mem_size else ""), 64, 64
        args.gops = "2" if args.gops == parser.get_default("gops") else args.gops
    args.minutes_list = [float(m) for m in args.minutes.split(",") if m.strip()]
    args.gop_list = [int(g) for g in args.gops.split(",") if g.strip()]
    args.count_list = [int(c) for c in args.counts.split(",") if c.strip()]
    args.method_list = [m for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.method_list if m not in METHODS]
    if bad or any(args.clip_seconds % g for g in args.gop_list) or not args.minutes_list:
        parser.error(f"unknown methods {bad} (valid: {', '.join(METHODS)}), or --clip-seconds not a multiple of "
                     "every GOP length, or no --minutes")
    return args


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


# ----------------------------------------------------------------------------------------------- media generation
def render_clip(width: int, height: int, frames: int, seed: int = 0):
    """Yield `frames` uint8 (H, W, 3) frames: scrolling texture, moving gradients and shapes, a frame marker."""
    rng = np.random.default_rng(seed)
    cell = max(4, width // 160)
    tex = rng.integers(0, 256, (height // cell + 2, 2 * width // cell + 2, 3), dtype=np.uint8)
    tex = np.repeat(np.repeat(tex, cell, 0), cell, 1)[:height, : 2 * width].astype(np.float32) * 0.5
    xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)[:, None]
    tint = np.array([0.5, 0.3, 0.2], np.float32)
    for i in range(frames):
        off = (i * 3) % width
        grad = (np.sin(xs / (width / 13) + i / 20) * 60 + np.cos(ys / (height / 13) - i / 31) * 60 + 128)
        frame = np.clip(tex[:, off : off + width] + grad[..., None] * tint, 0, 255).astype(np.uint8)
        for k in range(4):
            cx = int(width / 2 + width / 3 * np.sin(i / (17 + 5 * k) + k))
            cy = int(height / 2 + height / 3 * np.cos(i / (23 + 3 * k) + 2 * k))
            r = height // 10
            frame[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = (60 * k, 255 - 50 * k, 40 + 50 * k)
        bw, bh = width // 16, max(8, height // 18)
        for b in range(MARKER_BITS):
            frame[:bh, b * bw : (b + 1) * bw] = 255 if (i >> b) & 1 else 0
        yield frame


def read_markers(frames: np.ndarray) -> np.ndarray:
    """The clip frame numbers written by render_clip, read back from (N, H, W, 3) frames."""
    n, height, width = frames.shape[:3]
    bw, bh = width // 16, max(8, height // 18)
    value = np.zeros(n, np.int64)
    for b in range(MARKER_BITS):
        block = frames[:, bh // 4 : 3 * bh // 4, b * bw + bw // 4 : b * bw + 3 * bw // 4]
        value |= (block.reshape(n, -1).mean(axis=1) > 127).astype(np.int64) << b
    return value


def encode_clip(path: Path, size: tuple[int, int], seconds: int, gop_s: int, preset: str = "veryfast") -> None:
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        g = str(gop_s * FPS)
        stream = out.add_stream("libx264", rate=FPS, options={"preset": preset, "crf": "23", "bf": "2", "g": g,
                                                              "keyint_min": g, "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for frame in render_clip(size[0], size[1], seconds * FPS):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)


def remux_loop(clip: Path, path: Path, repeats: int) -> None:
    """Write `clip`'s packets `repeats` times into `path`, each copy shifted by the clip's duration."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(clip)) as src, av.open(str(tmp), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        span = round(Fraction(vin.frames, FPS) / vin.time_base)  # the clip's duration in time_base units
        for k in range(repeats):
            src.seek(0, backward=True, stream=vin)
            for packet in src.demux(vin):
                if packet.dts is None:
                    continue  # the demuxer's end-of-stream marker
                packet.pts, packet.dts = packet.pts + k * span, packet.dts + k * span
                packet.stream = vout
                out.mux(packet)
    tmp.replace(path)


def media(work: Path, size: tuple[int, int], minutes: float, gop_s: int, clip_s: int, preset: str = "veryfast"
          ) -> tuple[Path, Path]:
    """The long file and the clip it repeats (generated once, kept in `work`)."""
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{size[0]}x{size[1]}_g{gop_s}"
    clip = work / f"clip_{tag}_{clip_s}s.mp4"
    if not clip.exists():
        t0 = time.perf_counter()
        encode_clip(clip, size, clip_s, gop_s, preset)
        print(f"encoded {clip.name} in {time.perf_counter() - t0:.1f} s", flush=True)
    path = work / f"long_{tag}_{minutes:g}min.mp4"
    if not path.exists():
        remux_loop(clip, path, max(1, round(minutes * 60 / clip_s)))
    return path, clip


def index(path: Path) -> dict:
    """Presentation times of every frame (display order) and of the keyframes, from the packets (cached)."""
    cache = path.with_suffix(".index.json")
    if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
        return json.loads(cache.read_text())
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.pts is not None]
        tb = stream.time_base
        info = {"pts": sorted(p for p, _ in packets), "key_pts": sorted(p for p, k in packets if k),
                "time_base": [tb.numerator, tb.denominator], "width": stream.width, "height": stream.height}
    cache.write_text(json.dumps(info))
    return info


# ----------------------------------------------------------------------------------------------------------- rows
def rows_for(info: dict, counts: list[int], fps: float) -> list[dict]:
    """The samples: uniform counts and the fixed-rate row, as display-order indices and seconds."""
    pts = np.asarray(info["pts"], np.int64)
    tb = info["time_base"][0] / info["time_base"][1]
    seconds = (pts - pts[0]) * tb
    rows = [{"sample": str(n), "indices": np.linspace(0, len(pts) - 1, n).astype(np.int64).tolist()} for n in counts]
    if fps > 0:
        targets = np.arange(0.0, seconds[-1] + 1.0 / FPS - 1e-9, 1.0 / fps)
        idx = np.searchsorted(seconds, targets + 1e-6, side="right") - 1  # the frame shown at each target
        rows.append({"sample": f"{fps:g}fps", "indices": idx.tolist(), "fps": fps,
                     "seconds": (targets + pts[0] * tb).tolist()})
    for row in rows:
        row["times"] = seconds[row["indices"]].tolist()
    return rows


def gop_runs(info: dict, indices: list[int]) -> list[tuple[int, int | None]]:
    """(start keyframe pts, end pts or None) of each run of consecutive GOPs that hold sampled frames."""
    pts, keys = np.asarray(info["pts"]), np.asarray(info["key_pts"])
    gops = sorted(set(np.searchsorted(keys, pts[indices], side="right") - 1))
    runs: list[list[int]] = []
    for g in gops:
        if runs and runs[-1][1] == g - 1:
            runs[-1][1] = g
        else:
            runs.append([g, g])
    return [(int(keys[a]), int(keys[b + 1]) if b + 1 < len(keys) else None) for a, b in runs]


# -------------------------------------------------------------------------------------------------------- methods
def _into(out: np.ndarray | None, start: int, chunk: np.ndarray, total: int) -> np.ndarray:
    if out is None:
        out = np.empty((total, *chunk.shape[1:]), chunk.dtype)
    out[start : start + len(chunk)] = chunk
    return out


def m_ours(spec: dict, transform: bool = False):
    from llava.video.decode import load_video, load_video_fps

    kwargs = {}
    if transform:
        from llava.video.transforms import VisualProcessor

        kwargs["transform"] = VisualProcessor().video
    if "fps" in spec:
        frames, times = load_video_fps(spec["path"], fps=spec["fps"], max_frames=len(spec["indices"]), **kwargs)
    else:
        frames, times = load_video(spec["path"], num_frames=len(spec["indices"]), **kwargs)
    return frames, np.asarray(times, np.float64)


def m_decord(spec: dict):
    import decord

    vr = decord.VideoReader(spec["path"], ctx=decord.cpu(0))
    idx, out = spec["indices"], None
    for s in range(0, len(idx), 32):
        out = _into(out, s, vr.get_batch(idx[s : s + 32]).asnumpy(), len(idx))
    return out, None


def m_pyav_seq(spec: dict):
    import av

    wanted: dict[int, list[int]] = {}
    for pos, i in enumerate(spec["indices"]):
        wanted.setdefault(i, []).append(pos)
    out, last = None, max(wanted)
    with av.open(spec["path"]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                array = frame.to_ndarray(format="rgb24")
                for pos in wanted[n]:
                    out = _into(out, pos, array[None], len(spec["indices"]))
            if n >= last:
                break
    return out, None


def m_pyav_seek(spec: dict):
    """Seek to the keyframe before each frame and decode up to it; its timestamp from the nominal rate (CFR)."""
    import av

    out = None
    with av.open(spec["path"]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step, start = 1 / (stream.average_rate * stream.time_base), stream.start_time or 0
        for pos, i in enumerate(spec["indices"]):
            target = start + round(i * step)
            container.seek(target, backward=True, any_frame=False, stream=stream)
            for frame in container.decode(stream):
                if frame.pts >= target:
                    if frame.pts != target:
                        raise RuntimeError(f"seek landed after frame {i}")
                    out = _into(out, pos, frame.to_ndarray(format="rgb24")[None], len(spec["indices"]))
                    break
    return out, None


def reference(spec: dict) -> None:
    """Write the reference frames: frame i of the long file is frame i mod clip_frames of the clip it repeats, so
    PyAV decodes the clip from its start (sequentially) and the wanted frames are written in the row's order."""
    import av

    clip_idx = np.asarray(spec["indices"]) % spec["clip_frames"]
    keep: dict[int, np.ndarray] = {}
    wanted = set(clip_idx.tolist())
    with av.open(spec["clip"]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for n, frame in enumerate(container.decode(stream)):
            if n in wanted:
                keep[n] = frame.to_ndarray(format="rgb24")
    with open(spec["ref"], "wb") as f:
        for i in clip_idx.tolist():
            keep[i].tofile(f)


def m_torchcodec(spec: dict, mode: str, device: str = "cpu"):
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(spec["path"], seek_mode=mode, dimension_order="NHWC", num_ffmpeg_threads=0, device=device)
    key = "seconds" if "fps" in spec else "indices"
    items, out = spec[key], None
    for s in range(0, len(items), 32):
        chunk = items[s : s + 32]
        batch = dec.get_frames_played_at(seconds=chunk) if key == "seconds" else dec.get_frames_at(indices=chunk)
        out = _into(out, s, batch.data.cpu().numpy(), len(items))
    return out, None


def available(method: str, path: str) -> str | None:
    """None if `method` can run here, else why not."""
    if method == "decord" and importlib.util.find_spec("decord") is None:
        return "decord is not installed (pip install -e '.[bench]')"
    if method.startswith("ours"):
        from llava.video.decode import load_video

        if method == "ours+transform" and "transform" not in inspect.signature(load_video).parameters:
            return "the reader has no transform= yet"
    elif method.startswith("tc_"):
        try:
            import torch
            from torchcodec.decoders import VideoDecoder

            if method == "tc_cuda" and not torch.cuda.is_available():
                return "no CUDA device"
            VideoDecoder(path, seek_mode="approximate")
        except Exception as err:  # noqa: BLE001: whatever fails, torchcodec cannot run here
            return f"torchcodec: {type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"
    return None


RUNNERS = {
    "ours": lambda s: m_ours(s), "ours+transform": lambda s: m_ours(s, transform=True), "decord": m_decord,
    "pyav_seq": m_pyav_seq, "pyav_seek": m_pyav_seek, "tc_exact": lambda s: m_torchcodec(s, "exact"),
    "tc_approx": lambda s: m_torchcodec(s, "approximate"), "tc_cuda": lambda s: m_torchcodec(s, "exact", "cuda"),
}


def floor(spec: dict) -> int:
    """Decode only the runs of GOPs that hold the sampled frames; return how many frames were decoded."""
    import av

    decoded = 0
    with av.open(spec["path"]) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for start, end in spec["runs"]:
            container.seek(start, backward=True, any_frame=False, stream=stream)
            drained = True
            for packet in container.demux(stream):
                if end is not None and packet.is_keyframe and packet.pts is not None and packet.pts >= end:
                    drained = False
                    break
                decoded += len(stream.decode(packet))  # the last (empty) packet drains the decoder
            if not drained:
                decoded += len(stream.decode(None))
    return decoded


# --------------------------------------------------------------------------------------------------------- worker
def _maxrss_mb() -> float:
    """Peak resident memory of this process since it started (VmHWM: unlike ru_maxrss, which keeps the parent's
    size across fork and exec, it starts afresh at exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024.0
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _prepare(method: str) -> None:
    """Import what the method needs before the clock starts."""
    if method.startswith("ours"):
        import llava.video.decode  # noqa: F401
        if method == "ours+transform":
            import llava.video.transforms  # noqa: F401
    elif method.startswith("tc_"):
        import torchcodec.decoders  # noqa: F401
    elif method == "decord":
        import decord  # noqa: F401
    import av  # noqa: F401


def _reference_chunks(spec: dict, frame_shape: tuple[int, ...], step: int = 64):
    """The reference frames, `step` at a time, read from disk (never all in memory)."""
    frame_bytes = int(np.prod(frame_shape))
    with open(spec["ref"], "rb") as f:
        for s in range(0, len(spec["indices"]), step):
            count = min(step, len(spec["indices"]) - s)
            yield s, np.fromfile(f, np.uint8, count * frame_bytes).reshape(count, *frame_shape)


def check(spec: dict, frames, times: np.ndarray | None) -> dict:
    """Compare frames with the reference and read their markers; the frames' own times with the expected ones."""
    n, (width, height) = len(spec["indices"]), spec["frame_size"]
    result: dict = {"shape": list(frames.shape)}
    if times is not None:
        result["times_max_error_s"] = float(np.abs(times - np.asarray(spec["times"])).max()) if len(times) == n \
            else None
    if spec["method"] == "ours+transform":
        from llava.video.transforms import VisualProcessor

        worst, differing = 0.0, 0
        if tuple(frames.shape) == (n, 3, MODEL_SIZE, MODEL_SIZE) and spec.get("ref"):
            for s, ref in _reference_chunks(spec, (height, width, 3)):
                diff = (frames[s : s + len(ref)].float() - VisualProcessor().video(ref)).abs().flatten(1).amax(1)
                worst, differing = max(worst, float(diff.max())), differing + int((diff > 1e-4).sum())
            result.update(max_abs_diff=worst, frames_differing=differing, exact=differing == 0)
        else:
            result.update(exact=False, error=f"shape {tuple(frames.shape)} or no reference")
        return result
    frames = np.asarray(frames)
    if frames.shape != (n, height, width, 3) or frames.dtype != np.uint8:
        return {**result, "exact": False, "error": f"got {frames.dtype} {frames.shape}"}
    expected = np.asarray(spec["indices"]) % spec["clip_frames"]
    result["marker_errors"] = int((read_markers(frames) != expected).sum())
    worst, differing = 0, 0
    if spec.get("ref"):
        for s, ref in _reference_chunks(spec, (height, width, 3)):
            diff = np.abs(frames[s : s + len(ref)].astype(np.int16) - ref).reshape(len(ref), -1).max(axis=1)
            worst, differing = max(worst, int(diff.max())), differing + int((diff > 0).sum())
        result.update(max_abs_diff=worst, frames_differing=differing, exact=differing == 0)
    else:
        result["exact"] = result["marker_errors"] == 0
    return result


def worker(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    method = spec["method"]
    _prepare(method)
    load_before = os.getloadavg()[0]
    rss_before = _maxrss_mb()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if method == "reference":
        reference(spec)
        print(json.dumps({"written": spec["ref"]}), flush=True)
        return
    if method == "floor":
        decoded, frames = floor(spec), None
    else:
        frames, times = RUNNERS[method](spec)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime  # all threads: the work, whatever the load
    result = {"seconds": seconds, "cpu_s": cpu, "peak_mb": _maxrss_mb(), "rss_before_mb": rss_before,
              "load_avg": [load_before, os.getloadavg()[0]]}  # 1-minute load average before and after
    if frames is None:
        result["frames_decoded"] = decoded
    elif spec.get("nocheck"):
        result["shape"] = list(frames.shape)
    else:
        result.update(check(spec, frames, times))
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------------- parent
def _mem_available() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 23):
            pass


def run_worker(spec: dict, work: Path, timeout: float) -> dict:
    """Run one method in a fresh process; its JSON line, or an error."""
    fd, spec_path = tempfile.mkstemp(suffix=".json", dir=work)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", spec_path],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(spec_path)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"killed by signal {-done.returncode} (out of memory?)"])[-1]
        return {"error": tail[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _seek_cost(info: dict, indices: list[int]) -> int:
    """Frames PyAV decodes when it seeks to the keyframe before every sampled frame (display-order estimate)."""
    pts, keys = np.asarray(info["pts"]), np.asarray(info["key_pts"])
    key_pos = np.searchsorted(pts, keys)
    gop = np.searchsorted(keys, pts[indices], side="right") - 1
    return int((np.asarray(indices) - key_pos[gop] + 1).sum())


def _too_big(method: str, frame_bytes: int) -> str | None:
    """Why `method` would not fit in the free memory with these frames, or None. ours holds its decoded frames
    twice at the end (the list of frames, then np.stack); the others fill one preallocated array."""
    if method == "ours+transform":
        return None
    need = frame_bytes * (2.1 if method == "ours" else 1.2)
    if need > _mem_available():
        return f"would need {need / 2**30:.1f} GiB, more than the {_mem_available() / 2**30:.1f} GiB free here"
    return None


def run_row(args: argparse.Namespace, path: Path, clip: Path, info: dict, row: dict, first: bool) -> dict:
    """Every method on one sample of one file, after the reference frames and the floor. pyav_seq (a decode of the
    whole file whatever the sample: every row reaches the last frame) is timed on the first row of a file only,
    unless --seq-every-row."""
    clip_frames = args.clip_seconds * FPS
    n_total, (w, h) = len(info["pts"]), (info["width"], info["height"])
    ref = args.work_dir / f"{path.stem}_{row['sample']}.ref"
    base = {"path": str(path), "frame_size": [w, h], "clip_frames": clip_frames, "pts": info["pts"], **row}
    out = {"sample": row["sample"], "count": len(row["indices"]), "methods": {}}
    written = run_worker({**base, "method": "reference", "clip": str(clip), "ref": str(ref)}, args.work_dir,
                         args.timeout)
    if "written" not in written:
        raise RuntimeError(f"reference frames for {path.name}, {row['sample']}: {written}")
    _warm(path)
    floor_spec = {**base, "method": "floor", "runs": gop_runs(info, row["indices"])}
    out["floor"] = {**run_worker(floor_spec, args.work_dir, args.timeout), "runs": len(floor_spec["runs"])}
    need = len(row["indices"]) * w * h * 3
    for method in args.method_list:
        why = available(method, str(path)) or _too_big(method, need)
        if why is None and method == "pyav_seq" and not (first or args.seq_every_row):
            why = "timed on the file's first row only (the same whole-file decode)"
        if why is None and method == "pyav_seek" and _seek_cost(info, row["indices"]) > 2 * n_total:
            why = f"would decode {_seek_cost(info, row['indices'])} frames, {_seek_cost(info, row['indices']) / n_total:.1f}x the whole file"
        if why is not None:
            out["methods"][method] = {"skipped": why}
    for _ in range(args.repeats):  # rounds: every method once per round, so load from elsewhere falls on all alike
        for method in [m for m in args.method_list if "skipped" not in out["methods"].get(m, {})]:
            _warm(path)
            run = run_worker({**base, "method": method, "ref": str(ref)}, args.work_dir, args.timeout)
            out["methods"][method] = _best(out["methods"].get(method), run)
    ref.unlink(missing_ok=True)
    out["methods"] = {m: out["methods"][m] for m in args.method_list if m in out["methods"]}
    out["aims"] = aims(out)
    return out


def _best(kept: dict | None, run: dict) -> dict:
    """The fastest of the runs so far, its frames exact only if every run's were; every run's seconds listed."""
    if kept is None or "seconds" not in kept:
        return {**run, "all_seconds": [run["seconds"]]} if "seconds" in run else run
    if "seconds" not in run:
        return {**kept, "error_in_a_repeat": run.get("error")}
    best = run if run["seconds"] < kept["seconds"] else kept
    merged = {**best, "all_seconds": kept["all_seconds"] + [run["seconds"]],
              "exact": bool(kept.get("exact")) and bool(run.get("exact"))}
    for key in ("frames_differing", "max_abs_diff", "marker_errors"):
        if key in kept or key in run:
            merged[key] = max(kept.get(key, 0), run.get(key, 0))
    return merged


def aims(row: dict) -> dict:
    ours, methods = row["methods"].get("ours", {}), row["methods"]
    exact = {m: r["seconds"] for m, r in methods.items() if not m.startswith("ours") and r.get("exact")}
    result: dict = {}
    if "seconds" in ours and exact:
        best = min(exact, key=exact.get)
        result["fastest_exact"] = {"method": best, "seconds": exact[best], "ratio": ours["seconds"] / exact[best],
                                   "pass": bool(ours.get("exact")) and ours["seconds"] <= EXACT_AIM * exact[best]}
    cpu = {m: r["cpu_s"] for m, r in methods.items() if not m.startswith("ours") and r.get("exact") and "cpu_s" in r}
    if "cpu_s" in ours and cpu and len(cpu) == len(exact):  # the same aim on CPU time: what a loaded machine keeps
        best = min(cpu, key=cpu.get)
        result["fastest_exact_cpu"] = {"method": best, "seconds": cpu[best], "ratio": ours["cpu_s"] / cpu[best],
                                       "pass": bool(ours.get("exact")) and ours["cpu_s"] <= EXACT_AIM * cpu[best]}
    if "seconds" in ours and "seconds" in row["floor"]:
        ratio = ours["seconds"] / row["floor"]["seconds"]
        result["floor"] = {"ratio": ratio, "pass": ratio <= FLOOR_AIM}
        if "cpu_s" in ours and "cpu_s" in row["floor"]:
            result["floor"]["cpu_ratio"] = ours["cpu_s"] / row["floor"]["cpu_s"]
    for r in methods.values():
        if "seconds" in r and "seconds" in ours:
            r["ratio_to_ours"] = r["seconds"] / ours["seconds"]
    return result


def print_row(label: str, row: dict) -> None:
    fl = row["floor"]
    floor_text = f"{fl['seconds']:.2f} s ({fl['frames_decoded']} frames in {fl['runs']} runs of GOPs)" \
        if "seconds" in fl else fl.get("error", "?")
    print(f"\n{label}, {row['sample']} ({row['count']} frames): floor {floor_text}")
    print(f"  {'method':<15} {'exact':<22} {'seconds':>9} {'CPU s':>8} {'peak MB':>8} {'vs ours':>8}")
    for m, r in row["methods"].items():
        if "seconds" not in r:
            print(f"  {m:<15} {r.get('skipped') or r.get('error')}")
            continue
        ex = ("yes" if r.get("exact") else "NO") + (f" ({r['frames_differing']} differ, max {r['max_abs_diff']:.3g})"
                                                     if r.get("frames_differing") else "")
        if r.get("marker_errors"):
            ex += f", {r['marker_errors']} markers wrong"
        ratio = f"{r['ratio_to_ours']:.2f}" if "ratio_to_ours" in r else ""
        print(f"  {m:<15} {ex:<22} {r['seconds']:>9.2f} {r.get('cpu_s', float('nan')):>8.2f} {r['peak_mb']:>8.0f}"
              f" {ratio:>8}")
    for name, aim in row["aims"].items():
        what = {"fastest_exact": f"ours <= fastest exact ({aim.get('method')}, {aim.get('seconds', 0):.2f} s)",
                "fastest_exact_cpu": f"in CPU time, ours <= fastest exact ({aim.get('method')}, "
                                     f"{aim.get('seconds', 0):.2f} CPU s)",
                "floor": f"ours <= {FLOOR_AIM} x floor"}[name]
        print(f"  aim: {what}: {'PASS' if aim['pass'] else 'FAIL'} (ours / it = {aim['ratio']:.2f})")


def memory_row(args: argparse.Namespace) -> dict:
    """--mem-frames frames of a 4K file through ours, with and without the transform, against the model-size size."""
    size = _size(args.mem_size)
    clip_s, seconds = (2, 8) if args.quick else (4, 40)
    path, _ = media(args.work_dir, size, seconds / 60, 2, clip_s, preset="ultrafast")
    info = index(path)
    row = rows_for(info, [args.mem_frames], 0)[0]
    base = {"path": str(path), "frame_size": list(size), "clip_frames": clip_s * FPS, "nocheck": True, **row}
    model_mb = args.mem_frames * 3 * MODEL_SIZE * MODEL_SIZE * 4 / 2**20
    full_mb = args.mem_full_frames * size[0] * size[1] * 3 / 2**20
    out: dict = {"file": path.name, "frames": args.mem_frames, "full_frames": args.mem_full_frames, "size": list(size),
                 "model_size_mb": model_mb,
                 "full_size_mb": full_mb, "methods": {}}
    full_row = rows_for(info, [args.mem_full_frames], 0)[0]
    for method, spec in (("ours+transform", base), ("ours", {**base, **full_row})):
        why = available(method, str(path)) or _too_big(method, len(spec["indices"]) * size[0] * size[1] * 3)
        _warm(path)
        out["methods"][method] = {"skipped": why} if why else {
            **run_worker({**spec, "method": method}, args.work_dir, args.timeout), "frames": len(spec["indices"])}
    t = out["methods"]["ours+transform"]
    if "peak_mb" in t:
        grown = t["peak_mb"] - t["rss_before_mb"]
        out["aim"] = {"grown_mb": grown, "ratio": grown / model_mb, "pass": grown <= MEMORY_AIM * model_mb}
    return out


def print_memory(mem: dict) -> None:
    w, h = mem["size"]
    print(f"\nmemory: {mem['frames']} frames of {w}x{h} ({mem['file']}) at model size are {mem['model_size_mb']:.0f}"
          f" MB (float32 3x{MODEL_SIZE}x{MODEL_SIZE}); {mem['full_frames']} at full size {mem['full_size_mb']:.0f} MB")
    for m, r in mem["methods"].items():
        if "peak_mb" in r:
            print(f"  {m:<15} {r['frames']} frames: peak RSS {r['peak_mb']:.0f} MB (before reading {r['rss_before_mb']:.0f} MB, "
                  f"grown {r['peak_mb'] - r['rss_before_mb']:.0f} MB), {r['seconds']:.2f} s, shape {r['shape']}")
        else:
            print(f"  {m:<15} {r.get('skipped') or r.get('error')}")
    if "aim" in mem:
        a = mem["aim"]
        print(f"  aim: with the transform the reader grows by at most {MEMORY_AIM} x the model-size frames: "
              f"{'PASS' if a['pass'] else 'FAIL'} ({a['grown_mb']:.0f} MB = {a['ratio']:.2f} x)")


def _commit() -> str | None:
    """The checkout's commit, with '+changes' when the reader's files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_ROOT), "status", "--porcelain", "--", "llava/video"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def machine() -> dict:
    import av

    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "av": av.__version__, "ffmpeg (PyAV)": av.ffmpeg_version_info, "commit": _commit(),
            "load_avg_at_start": os.getloadavg()}
    try:
        import decord

        info["decord"] = decord.__version__
    except ImportError as err:
        info["decord"] = f"not installed ({err}): pip install -e '.[bench]'"
    try:
        import torch
        import torchcodec

        info.update(torch=torch.__version__, torchcodec=torchcodec.__version__, cuda=torch.cuda.is_available())
    except Exception as err:  # noqa: BLE001
        info["torchcodec"] = f"not available ({err})"
    return info


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)


def summary(result: dict) -> None:
    print("\naims (ours):")
    for r in result["rows"]:
        for name, aim in r["aims"].items():
            what = {"fastest_exact": f"<= fastest exact ({aim.get('method')})",
                    "fastest_exact_cpu": f"CPU <= fastest exact ({aim.get('method')})",
                    "floor": f"<= {FLOOR_AIM} x floor"}[name]
            print(f"  {r['minutes']:g} min, GOP {r['gop_s']} s, {r['sample']:>6}: {what:<32} "
                  f"{'PASS' if aim['pass'] else 'FAIL'} ({aim['ratio']:.2f}x)")
    if result.get("memory") and "aim" in result["memory"]:
        a = result["memory"]["aim"]
        print(f"  4K memory: grown {a['grown_mb']:.0f} MB vs {result['memory']['model_size_mb']:.0f} MB at model size: "
              f"{'PASS' if a['pass'] else 'FAIL'}")


def markdown(result: dict) -> str:
    """The rows as one markdown table: wall seconds (CPU seconds) per method (not exact: marked), the floor and
    the aims in wall time (CPU time)."""
    if not result["rows"]:
        return ""
    methods = [m for m in METHODS if any(m in r["methods"] for r in result["rows"])]
    lines = ["| file | sample | floor | " + " | ".join(methods) + " | ours / fastest exact, wall (CPU) | ours / floor |",
             "|---" * (len(methods) + 5) + "|"]
    for r in result["rows"]:
        cells = [_cell(r["methods"].get(m)) for m in methods]
        aims = r["aims"]
        fe, fc, fl = aims.get("fastest_exact"), aims.get("fastest_exact_cpu"), aims.get("floor")
        fe_text = f"{fe['ratio']:.2f} {fe['method']} {'PASS' if fe['pass'] else 'FAIL'}" if fe else ""
        if fc:
            fe_text += f" ({fc['ratio']:.2f} {fc['method']} {'PASS' if fc['pass'] else 'FAIL'})"
        fl_text = f"{fl['ratio']:.2f} {'PASS' if fl['pass'] else 'FAIL'}" if fl else ""
        lines.append(f"| {r['minutes']:g} min, GOP {r['gop_s']} s | {r['sample']} | {_cell(r['floor'])} | "
                     + " | ".join(cells) + f" | {fe_text} | {fl_text} |")
    return "\n".join(lines)


def _cell(run: dict | None) -> str:
    """'wall (CPU)' seconds of a method's run, marked when its frames were not exact; why it did not run."""
    if run is None:
        return "not run"
    if "seconds" not in run:
        return "n/a" if "skipped" in run else "error"
    cpu = f" ({run['cpu_s']:.2f})" if "cpu_s" in run else ""
    return f"{run['seconds']:.2f}{cpu}" + ("" if run.get("exact", True) else " NOT exact")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args.worker)
        return 0
    if args.table_from is not None:
        print(markdown(json.loads(args.table_from.read_text())))
        return 0
    args.work_dir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "argv": sys.argv[1:] if argv is None else argv, "rows": [], "memory": None}
    print(json.dumps(result["machine"]))
    if args.mem_size:
        result["memory"] = memory_row(args)
        print_memory(result["memory"])
        write_json(args.out, result)
    for minutes in args.minutes_list:
        for gop in args.gop_list:
            path, clip = media(args.work_dir, _size(args.size), minutes, gop, args.clip_seconds)
            info = index(path)
            for n, row in enumerate(rows_for(info, args.count_list, args.fps)):
                r = run_row(args, path, clip, info, row, first=n == 0)
                r.update(minutes=minutes, gop_s=gop, file=path.name, frames_total=len(info["pts"]))
                result["rows"].append(r)
                print_row(f"{minutes:g} min, GOP {gop} s", r)
                write_json(args.out, result)
    summary(result)
    if result["rows"]:
        print("\n" + markdown(result))
    write_json(args.out, result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
