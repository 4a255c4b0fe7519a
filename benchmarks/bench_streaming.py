"""Streaming captions over long streams: the incremental StreamingSession against the original's re-encode-everything.

    python benchmarks/bench_streaming.py                       # the bundled demo model, 1, 10 and 60 minutes
    python benchmarks/bench_streaming.py --tiny --minutes 1    # a random tiny model: checks the benchmark runs

Streams are synthetic (coloured shapes, hard cuts, scenes of --scene-seconds) at --fps 1, rendered one frame at a
time in memory (a 60-minute stream never sits in memory). Three modes caption at the same frames (the online
SceneTilling decisions over each frame's tower features, encoded once per frame in every mode):
- incremental: `StreamingSession.push`: the closed segment alone passes the bridge, the caption reads the state;
- batched: the same engine fed --batch-frames frames per call (`push_timed_frames`), as the streaming CLI reads a
  file: the same captions, with whole tower windows encoded together and the captions of the scenes that end in
  one call generated together (run at the --reencode-minutes lengths);
- reencode (the original, section 4 of reference/videollamb-original.md): every frame seen so far is kept, and at
  each caption point ALL of them (spread over at most 512, a multiple of 8, as the original takes) go through the
  full model again (`encode_videos`: tower, offline SceneTilling, bridge over every segment), then the caption
  is generated. Run for the --reencode-minutes lengths only.
Each (mode, length) runs in a fresh subprocess, so its peak resident memory (getrusage max RSS) is its own.
Measured: peak RSS, the latency of each segment (the time of the frame that closes it, caption included), median
and p99 over the first and the last 10% of the stream, the tokens the LLM reads per question, the total time.
Aims (reported, not asserted): incremental peak memory at the longest stream within 10% of the shortest; p99
segment latency at the end within 20% of the start; the engine >= 20x faster than reencode at 10 minutes, reading
the file as the original does (the batched mode; the one-frame-per-call ratio is printed beside it).
Writes --out (JSON) and --plot (latency of every segment over stream time), prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

MODES = ("incremental", "batched", "reencode")
AIM_MEMORY, AIM_LATENCY, AIM_SPEEDUP = 1.10, 1.20, 20.0
ORIGINAL_MAX_FRAMES, ORIGINAL_MULTIPLE = 512, 8  # the frames the original's streaming captioner re-encodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint (default: the bundled demo model)")
    parser.add_argument("--tiny", action="store_true", help="a random tiny model instead (no checkpoint needed)")
    parser.add_argument("--minutes", default="1,10,60", help="stream lengths, comma-separated")
    parser.add_argument("--reencode-minutes", default="1,10", help="lengths also run in the re-encode mode")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--scene-seconds", default="3,10", help="shortest,longest scene of the synthetic streams")
    parser.add_argument("--size", type=int, default=64, help="frame size in pixels (square)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens per caption")
    parser.add_argument("--batch-frames", type=int, default=None,
                        help="frames per call in the batched mode (default: the streaming CLI's, 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=_ROOT / "benchmarks/results/streaming.json")
    parser.add_argument("--plot", type=Path, default=_ROOT / "benchmarks/results/streaming.png")
    parser.add_argument("--worker", choices=MODES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-minutes", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.minutes_list = [float(m) for m in args.minutes.split(",") if m.strip()]
    args.reencode_list = [float(m) for m in args.reencode_minutes.split(",") if m.strip()]
    args.scene_range = tuple(float(s) for s in args.scene_seconds.split(","))
    if args.batch_frames is None:
        from llava.serve.stream_source import FILE_BATCH_FRAMES

        args.batch_frames = FILE_BATCH_FRAMES
    if not args.minutes_list or min(args.minutes_list) <= 0 or len(args.scene_range) != 2 or args.fps <= 0 \
            or args.batch_frames < 1:
        parser.error("--minutes must list positive lengths, --scene-seconds two numbers, --fps and --batch-frames "
                     "be positive")
    return args


# ----- the streams
def synthetic_stream(minutes: float, fps: float, size: int, scene_seconds: tuple[float, float],
                     seed: int) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, frame) of a synthetic stream, rendered one frame at a time."""
    from llava.data.shapes_world import render_frames, sample_video_spec

    total = int(round(minutes * 60 * fps))
    scenes = math.ceil(total / max(1.0, scene_seconds[0] * fps)) + 1
    spec = sample_video_spec(np.random.default_rng(seed), "bench", scenes, scenes, fps=fps, size=size,
                             min_scene_seconds=scene_seconds[0], max_scene_seconds=scene_seconds[1])
    for index, frame in enumerate(itertools.islice(render_frames(spec), total)):
        yield index / fps, frame


def tiny_checkpoint(folder: Path) -> Path:
    """A random tiny model whose tower sees scene changes (its weights scaled up), with a real tokenizer."""
    import torch

    from llava.data.shapes_dataset import TEMPLATES
    from llava.data.shapes_world import COLOURS, SHAPES
    from llava.model.presets import tiny_config
    from llava.train.sentencepiece_tokenizer import train_tokenizer
    from llava.model.videollamb import VideoLLaMBForCausalLM

    corpus = list(TEMPLATES.values()) + [f"a {c} {s}" for c in COLOURS for s in SHAPES]
    tokenizer = train_tokenizer(corpus * 10, folder / "tokenizer", vocab_size=300)
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer))).eval()
    with torch.no_grad():  # a random tower's CLS barely depends on the frame; larger weights make cuts visible
        for name, param in model.video_tower.named_parameters():
            if param.dim() >= 2 and "position" not in name:
                param.mul_(20)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


# ----- the modes (run inside a worker process). Each push or finish returns (time, visual tokens the LLM read)
# for every segment it closed: the time of the frame that showed the segment had ended (the end of the stream).
Closed = list[tuple[float, int]]


class Incremental:
    def __init__(self, session) -> None:
        self.session = session

    def push(self, frame: np.ndarray, t: float) -> Closed:
        before = len(self.session.state.segments)
        self.session.push(frame, t)
        return [(t, self._read())] if len(self.session.state.segments) > before else []

    def finish(self, end: float) -> Closed:
        before = len(self.session.state.segments)
        self.session.finish()
        return [(end, self._read())] if len(self.session.state.segments) > before else []

    def _read(self) -> int:
        return int(self.session.state.readout.shape[0])


class Batched(Incremental):
    """The same engine fed `batch_frames` frames per call (`push_timed_frames`), as the streaming CLI reads a file.
    A segment's latency is that of the call that closed it; segments closed in one call share its readout size."""

    def __init__(self, session, batch_frames: int) -> None:
        super().__init__(session)
        self.batch_frames = batch_frames
        self.pending: list[tuple[float, np.ndarray]] = []

    def push(self, frame: np.ndarray, t: float) -> Closed:
        self.pending.append((t, frame))
        return self._flush() if len(self.pending) == self.batch_frames else []

    def finish(self, end: float) -> Closed:
        return self._flush() + super().finish(end)

    def _flush(self) -> Closed:
        # the worker's policy captions every closed segment (no gap, repeats kept): one caption, one segment
        closed = [(event.time, self._read()) for event in self.session.push_timed_frames(self.pending)]
        self.pending = []
        return closed


class Reencode:
    """The original: all frames kept; at each caption point they all pass the full model again."""

    def __init__(self, session) -> None:
        from llava.serve.chat_session import ChatSession

        self.stream, self.frames = session, []  # the stream session is used for its tower cache only
        self.chat = ChatSession(session.model, session.tokenizer, session.processor, conv_mode=session.conv_mode)
        self.tiller = session.stream.settings.tiller()  # the stream's own online SceneTilling

    def push(self, frame: np.ndarray, t: float) -> Closed:
        import torch

        s = self.stream
        param = next(s.model.parameters())
        with torch.no_grad():  # the same caption decision as the incremental mode: tower features, online tiller
            pixels = s.processor.video(frame[None])[0].to(device=param.device, dtype=param.dtype)
            features, s.state.tower_cache = s.model.video_tower.encode_stream_frame(pixels, s.state.tower_cache)
            cut = self.tiller.push(s.model.frame_tokens(features[None]).cls[0].float().cpu().numpy())
        closed = [(t, self._caption())] if cut and self.frames else []
        self.frames.append(frame)
        return closed

    def finish(self, end: float) -> Closed:
        return [(end, self._caption())] if self.frames else []

    def _caption(self) -> int:
        from llava.video.decode import frame_count, uniform_indices

        # every frame so far through the whole model, as many as the original takes: a multiple of 8, 8 to 512
        seen = len(self.frames)
        count = frame_count(seen, ORIGINAL_MAX_FRAMES, ORIGINAL_MULTIPLE)
        self.chat.load_frames(np.stack([self.frames[i] for i in uniform_indices(seen, count)]))
        self.chat.ask(self.stream.policy.prompt, self.stream.settings)
        return int(self.chat.media.shape[0])


def prompt_text_tokens(session) -> int:
    """Text tokens of a caption question (the visual tokens come on top)."""
    from llava.conversation import get_template
    from llava.mm_utils import prompt_tensor

    conv = get_template(session.conv_mode)
    conv.append_message(conv.roles[0], f"<video>\n{session.policy.prompt}")
    conv.append_message(conv.roles[1], None)
    return int((prompt_tensor(conv.get_prompt(), session.tokenizer) >= 0).sum())


def worker(args: argparse.Namespace) -> dict:
    """One (mode, length): stream it, time each frame, report the segments and the peak memory."""
    import torch

    from llava.model.builder import load_pretrained_model
    from llava.serve.chat_session import GenerationSettings
    from llava.progress import progress_bar
    from llava.serve.streaming_session import StreamingPolicy, StreamingSession

    tokenizer, model, processor, _ = load_pretrained_model(args.model_path, device=args.device)
    session = StreamingSession(model, tokenizer, processor, StreamingPolicy(skip_repeated=False),
                               settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
    runner = {"incremental": Incremental, "batched": lambda s: Batched(s, args.batch_frames),
              "reencode": Reencode}[args.worker](session)
    text_tokens, segments, frames = prompt_text_tokens(session), [], 0
    stream = synthetic_stream(args.worker_minutes, args.fps, args.size, args.scene_range, args.seed)
    total = int(round(args.worker_minutes * 60 * args.fps))
    started = time.perf_counter()
    with torch.no_grad():
        label = f"{args.worker} {args.worker_minutes:g} min"
        for t, frame in progress_bar(stream, total=total, desc=label, leave=False):
            tick = time.perf_counter()
            closed = runner.push(frame, t)
            latency = time.perf_counter() - tick
            segments += [{"time": at, "latency": latency, "llm_tokens": text_tokens + visual} for at, visual in closed]
            frames += 1
        tick = time.perf_counter()
        closed = runner.finish(frames / args.fps)
        latency = time.perf_counter() - tick
        segments += [{"time": at, "latency": latency, "llm_tokens": text_tokens + visual} for at, visual in closed]
    return {"mode": args.worker, "minutes": args.worker_minutes, "frames": frames, "duration_s": frames / args.fps,
            "total_s": time.perf_counter() - started,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "segments": segments}


# ----- the parent: one subprocess per configuration, then the summary
def run_config(args: argparse.Namespace, mode: str, minutes: float, model_path: Path) -> dict:
    command = [sys.executable, __file__, "--worker", mode, "--worker-minutes", str(minutes), "--model-path",
               str(model_path), "--fps", str(args.fps), "--scene-seconds", args.scene_seconds, "--size",
               str(args.size), "--max-new-tokens", str(args.max_new_tokens), "--seed", str(args.seed),
               "--device", args.device, "--batch-frames", str(args.batch_frames)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def window_stats(segments: list[dict], duration: float) -> dict:
    """Median and p99 segment latency (ms) in the first and the last 10% of the stream."""
    out = {}
    for name, keep in (("first", lambda t: t < 0.1 * duration), ("last", lambda t: t >= 0.9 * duration)):
        lat = [s["latency"] * 1000 for s in segments if keep(s["time"])]
        out[name] = {"n": len(lat), "median_ms": float(np.median(lat)) if lat else None,
                     "p99_ms": float(np.percentile(lat, 99)) if lat else None}
    return out


def summarise(run: dict) -> dict:
    tokens = [s["llm_tokens"] for s in run["segments"]]
    return {**{k: run[k] for k in ("mode", "minutes", "frames", "total_s", "peak_rss_mb")},
            "num_segments": len(run["segments"]),
            "latency": window_stats(run["segments"], run["duration_s"]),
            "llm_tokens_per_question": {"median": float(np.median(tokens)) if tokens else None,
                                        "max": max(tokens, default=None)}}


def aims(summary: list[dict]) -> list[dict]:
    inc = sorted((s for s in summary if s["mode"] == "incremental"), key=lambda s: s["minutes"])
    ree = {s["minutes"]: s for s in summary if s["mode"] == "reencode"}
    results = []
    if len(inc) >= 2:
        ratio = inc[-1]["peak_rss_mb"] / inc[0]["peak_rss_mb"]
        results.append({"aim": f"peak memory at {inc[-1]['minutes']:g} min within 10% of {inc[0]['minutes']:g} min",
                        "value": ratio, "pass": ratio <= AIM_MEMORY})
    else:
        results.append({"aim": "peak memory flat with stream length", "value": None, "pass": None})
    if inc:
        lat = inc[-1]["latency"]
        start, end = lat["first"]["p99_ms"], lat["last"]["p99_ms"]
        ratio = end / start if start and end else None
        results.append({"aim": f"p99 segment latency, last 10% vs first 10% ({inc[-1]['minutes']:g} min): within 20%",
                        "value": ratio, "pass": None if ratio is None else ratio <= AIM_LATENCY})
    speed = {mode: {s["minutes"]: ree[s["minutes"]]["total_s"] / s["total_s"] for s in summary
                    if s["mode"] == mode and s["minutes"] in ree} for mode in ("batched", "incremental")}
    value = speed["batched"].get(10.0)
    results.append({"aim": "the engine reading the file (batched) >= 20x faster than reencode at 10 min",
                    "value": value, "pass": None if value is None else value >= AIM_SPEEDUP,
                    "speedups": speed["batched"], "per_frame_speedups": speed["incremental"]})
    return results


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(summary: list[dict], results: list[dict]) -> None:
    head = (f"{'mode':<12}{'min':>5}{'frames':>7}{'segs':>6}{'total s':>9}{'RSS MB':>8}"
            f"{'med first':>10}{'med last':>9}{'p99 first':>10}{'p99 last':>9}{'LLM tok':>8}")
    print(head + "\n" + "-" * len(head))
    for s in summary:
        lat = s["latency"]
        print(f"{s['mode']:<12}{s['minutes']:>5g}{s['frames']:>7}{s['num_segments']:>6}{s['total_s']:>9.2f}"
              f"{s['peak_rss_mb']:>8.0f}{fmt(lat['first']['median_ms']):>10}{fmt(lat['last']['median_ms']):>9}"
              f"{fmt(lat['first']['p99_ms']):>10}{fmt(lat['last']['p99_ms']):>9}"
              f"{fmt(s['llm_tokens_per_question']['median'], '.0f'):>8}")
    print("(latencies in ms per segment: the frame that closes it, caption included; LLM tok: median per question)")
    for r in results:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[r["pass"]]
        print(f"{verdict:>4}  {r['aim']}: {fmt(r['value'], '.2f')}")
    for mode, key in (("batched", "speedups"), ("incremental", "per_frame_speedups")):
        for minutes, ratio in results[-1][key].items():
            print(f"      reencode / {mode} total time at {minutes:g} min: {ratio:.1f}x")


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    for run in runs:
        seconds = [s["time"] / 60 for s in run["segments"]]
        latency = [s["latency"] * 1000 for s in run["segments"]]
        style = {"incremental": "-", "batched": ":"}.get(run["mode"], "--")
        ax.plot(seconds, latency, style, marker=".", markersize=3, label=f"{run['mode']} {run['minutes']:g} min")
    ax.set(xlabel="stream time (minutes)", ylabel="segment latency (ms)", yscale="log",
           title="Latency of each segment (caption included) over the stream")
    ax.legend()
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0
    from llava.atomic import write_json_atomic
    from llava.serve.chat_session import DEMO_CHECKPOINT

    with tempfile.TemporaryDirectory() as tmp:
        model_path = tiny_checkpoint(Path(tmp)) if args.tiny else Path(args.model_path or DEMO_CHECKPOINT)
        if not (model_path / "config.json").is_file():
            print(f"error: {model_path}: no checkpoint (build the demo model with `make demo-model`, or use --tiny)",
                  file=sys.stderr)
            return 1
        runs = [run_config(args, mode, minutes, model_path) for minutes in args.minutes_list for mode in MODES
                if mode == "incremental" or minutes in args.reencode_list]  # batched: at the re-encode lengths
    summary = [summarise(run) for run in runs]
    results = aims(summary)
    print_table(summary, results)
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "worker_minutes", "out", "plot")}
    settings["model_path"] = "tiny (random)" if args.tiny else str(model_path)
    write_json_atomic({"settings": json.loads(json.dumps(settings, default=str)), "summary": summary,
                       "aims": results, "runs": runs}, args.out)
    plot(runs, args.plot)
    print(f"wrote {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
