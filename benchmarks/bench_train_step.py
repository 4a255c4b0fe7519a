"""Seconds per training step of a tiny-demo stage with and without one of the recipe's caches, on the same data.

    python benchmarks/bench_train_step.py --out benchmarks/results/train_step.json        # 64 videos, 30 steps
    python benchmarks/bench_train_step.py --videos 8 --steps 4 --out /tmp/train_step.json  # the tests' quick run
    python benchmarks/bench_train_step.py --cache tower --rounds 2 --out benchmarks/results/train_step_tower.json
    python benchmarks/bench_train_step.py --cache tower --long --videos 10 --steps 6 --rounds 2 \
        --out benchmarks/results/train_step_tower_long.json

One stage of `llava.train.tiny_demo` is trained from the bundled demo model (checkpoints/videollamb-tiny-shapes)
through `llava.train.train.train` with the recipe's settings (`tiny_demo.stage_arguments`: batch 16, one data
worker), once per configuration on one generated data set: a curriculum stage (6-8 scenes a video, 24 frames
sampled uniformly), or with --long the long stage's kind of data (`tiny_demo.LONG_STAGE`: 10-80 scenes at 1 fps,
every frame kept; its 2000 videos for 1200 steps see each video about 10 times, as 10 videos for 6 steps do).
--cache names what is compared: `no_cache` against `cache`,
- video: every row decodes its video (no video cache, the recipe before it) against the recipe's --video_cache_mb
  in a persistent worker; neither caches the tower;
- tower: both with the recipe's video cache; the frozen video tower runs on every video of every step (the recipe
  before the tower cache) against the recipe's --frozen_tower_cache_mb (the tower's output kept per video).
Each run is a fresh process; --rounds repeats both, interleaved, and keeps each one's fastest. Reported per
configuration: the trainer's own time of its training loop (train_runtime: the steps, and the data the main
process waited for; not the model's load) per step, the whole process's wall time and CPU time (its own and its
data worker's), the tower cache's hits and misses, and the logged losses, which must be the same (each cache hands
out what the work it saves gives). With --cache video, before training the same process also times the data alone:
as many batches as the stage has steps, drawn through a DataLoader set as the trainer sets it (one worker, batch 16,
shuffled, persistent with the cache), with no model step between them, so the seconds per batch are what the data
worker costs however busy the machine's cores are with other work. Writes --out (JSON) with the machine's load
average before and after, and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from llava.data.dataset import DataCollator  # noqa: E402
from llava.train import tiny_demo  # noqa: E402
from llava.train.args import DataArguments, ModelArguments, TrainingArguments  # noqa: E402
from llava.train.model_init import build_model  # noqa: E402
from llava.train.train import make_dataset, train  # noqa: E402

VIDEO_MB, TOWER_MB = tiny_demo.VIDEO_CACHE_MB, tiny_demo.FROZEN_TOWER_CACHE_MB
CONFIGS = {  # --cache -> configuration -> (video_cache_mb, frozen_tower_cache_mb)
    "video": {"no_cache": (0.0, 0.0), "cache": (VIDEO_MB, 0.0)},
    "tower": {"no_cache": (VIDEO_MB, 0.0), "cache": (VIDEO_MB, TOWER_MB)},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64, help="videos of the stage (each asked 4 or more questions)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--frames", type=int, default=24, help="frames sampled uniformly per video (the recipe's)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each configuration, interleaved")
    parser.add_argument("--cache", choices=sorted(CONFIGS), default="video", help="the cache compared (see above)")
    parser.add_argument("--long", action="store_true", help="the long stage's data (1 fps, 10-80 scenes)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument("--model", type=Path, default=_ROOT / "checkpoints/videollamb-tiny-shapes")
    parser.add_argument("--out", type=Path, default=_ROOT / "benchmarks/results/train_step.json")
    parser.add_argument("--one", nargs=4, default=None, help=argparse.SUPPRESS)  # child: VIDEO_MB TOWER_MB DATA OUT
    return parser.parse_args(argv)


def data_seconds(arguments: tuple[ModelArguments, DataArguments, TrainingArguments], steps: int) -> float:
    """Seconds per batch of `steps` batches drawn as the trainer draws them, with no training step between."""
    model_args, data_args, training_args = arguments
    model, tokenizer = build_model(model_args)
    dataset = make_dataset(data_args, model, tokenizer, model_args.version, training_args.model_max_length)
    loader = DataLoader(
        dataset,
        batch_size=training_args.per_device_train_batch_size,
        sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(training_args.seed)),
        num_workers=training_args.dataloader_num_workers,
        persistent_workers=training_args.dataloader_persistent_workers,
        collate_fn=DataCollator(tokenizer),
    )
    started, drawn = time.perf_counter(), 0
    while drawn < steps:
        for _ in loader:
            drawn += 1
            if drawn == steps:
                break
    return (time.perf_counter() - started) / steps


def bench_stage(args: argparse.Namespace) -> tiny_demo.Stage:
    """The stage trained: a curriculum stage of 6-8 scenes, or the long stage's data, with --videos and --steps."""
    if args.long:
        return replace(tiny_demo.LONG_STAGE, num_videos=args.videos, steps=args.steps)
    return tiny_demo.Stage(6, 8, args.videos, args.steps)


def train_once(args: argparse.Namespace, caches: tuple[float, float], data: Path, out: Path) -> dict:
    """With --cache video the data alone, then one stage trained, in this process: seconds per batch, the trainer's
    time, the tower cache's counts and the logged losses."""
    video_mb, tower_mb = caches
    stage = bench_stage(args)
    arguments = tiny_demo.stage_arguments(
        args.model, data, out, stage, args.frames, 0, video_cache_mb=video_mb, frozen_tower_cache_mb=tower_mb
    )
    arguments[2].logging_steps = 1  # every step's loss, compared between the runs
    data_s = data_seconds(arguments, stage.steps) if args.cache == "video" else None
    cache = train(*arguments).frame_token_cache
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {
        "data_s_per_batch": data_s,
        "train_runtime_s": runtime,
        "tower_cache_hits": cache.hits if cache else None,
        "tower_cache_misses": cache.misses if cache else None,
        "losses": losses,
    }


def run_once(args: argparse.Namespace, caches: tuple[float, float], data: Path, out: Path) -> dict:
    """One stage trained in a fresh process: its result with the process's wall and CPU seconds."""
    command = [sys.executable, __file__, "--one", *map(str, caches), str(data), str(out), "--cache", args.cache]
    command += ["--videos", str(args.videos), "--steps", str(args.steps), "--frames", str(args.frames)]
    command += ["--model", str(args.model)] + (["--long"] if args.long else [])
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the run with caches {caches} (video, tower MB) failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "video_cache_mb": caches[0],
        "frozen_tower_cache_mb": caches[1],
        "s_per_step": result["train_runtime_s"] / args.steps,
        "wall_s": wall,
        "cpu_s": cpu,
        **result,
    }


def loss_rel_diff(runs: dict[str, list[dict]]) -> float:
    """The largest relative difference of any run's logged loss from the first no_cache run's, at the same step."""
    reference = runs["no_cache"][0]["losses"]
    every_run = [r["losses"] for results in runs.values() for r in results]
    return max(abs(a - b) / abs(b) for losses in every_run for a, b in zip(losses, reference, strict=True))


def frames_per_video(data: Path, stage: tiny_demo.Stage, frames: int) -> list[int]:
    """Frames each video of the stage is trained on: all of them at the long stage's 1 fps (up to MAX_FRAMES; its
    videos are rendered at 1 fps), else `frames` sampled uniformly."""
    videos = json.loads((data / "truth.json").read_text())["videos"]
    if stage.sample_fps:
        return [min(video["num_frames"], tiny_demo.MAX_FRAMES) for video in videos]
    return [frames for _ in videos]


def measure(args: argparse.Namespace, work: Path) -> dict:
    stage = bench_stage(args)
    data = tiny_demo.make_data(work / "data", stage, args.seed)
    rows = len(json.loads((data / "train.json").read_text()))
    frames = frames_per_video(data, stage, args.frames)
    configs = CONFIGS[args.cache]
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    for round_ in range(args.rounds):
        for name, caches in configs.items():
            runs[name].append(run_once(args, caches, data, work / f"{name}_{round_}"))
    best = {name: min(results, key=lambda r: r["s_per_step"]) for name, results in runs.items()}
    pairs = zip(runs["no_cache"], runs["cache"], strict=True)
    data_speedup = None
    if args.cache == "video":
        data_speedup = min(r["data_s_per_batch"] for r in runs["no_cache"]) / min(
            r["data_s_per_batch"] for r in runs["cache"]
        )
    return {
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "cache": args.cache,
        "stage": {
            "kind": "long" if args.long else "curriculum",
            "videos": args.videos,
            "rows": rows,
            "steps": args.steps,
            "frames": args.frames,
            "frames_per_video": {"min": min(frames), "mean": sum(frames) / len(frames), "max": max(frames)},
            "batch": 16,
        },
        "rounds": args.rounds,
        "runs": runs,
        "best": best,
        "speedup": best["no_cache"]["s_per_step"] / best["cache"]["s_per_step"],
        "round_speedups": [a["s_per_step"] / b["s_per_step"] for a, b in pairs],
        "cpu_speedup": min(r["cpu_s"] for r in runs["no_cache"]) / min(r["cpu_s"] for r in runs["cache"]),
        "data_speedup": data_speedup,
        "same_losses": all(r["losses"] == runs["no_cache"][0]["losses"] for results in runs.values() for r in results),
        "max_loss_rel_diff": loss_rel_diff(runs),
    }


def report(result: dict) -> None:
    stage = result["stage"]
    frames = stage["frames_per_video"]
    print(
        f"{stage['kind']} stage, comparing the {result['cache']} cache: {stage['videos']} videos "
        f"({frames['min']}-{frames['max']} frames, mean {frames['mean']:.0f}), {stage['rows']} rows, "
        f"{stage['steps']} steps of batch {stage['batch']}; load {result['load_before'][0]:.2f} -> "
        f"{result['load_after'][0]:.2f}"
    )
    columns = f"{'video MB':>9} {'tower MB':>9} {'s/step':>8} {'loop s':>8} {'wall s':>8} {'CPU s':>8}"
    print(f"  {'config':<10} {columns} {'data s/batch':>13} {'tower hits/misses':>18}")
    for name, best in result["best"].items():
        data_s = "-" if best["data_s_per_batch"] is None else f"{best['data_s_per_batch']:.3f}"
        counts = "-" if best["tower_cache_hits"] is None else f"{best['tower_cache_hits']}/{best['tower_cache_misses']}"
        print(
            f"  {name:<10} {best['video_cache_mb']:>9g} {best['frozen_tower_cache_mb']:>9g} {best['s_per_step']:>8.3f} "
            f"{best['train_runtime_s']:>8.1f} {best['wall_s']:>8.1f} {best['cpu_s']:>8.1f} {data_s:>13} {counts:>18}"
        )
    rounds = ", ".join(f"{r:.2f}x" for r in result["round_speedups"])
    data = "" if result["data_speedup"] is None else f"; data alone: {result['data_speedup']:.2f}x"
    print(
        f"  speedup (s/step, no_cache / cache): {result['speedup']:.2f}x (per round: {rounds}); "
        f"CPU s: {result['cpu_speedup']:.2f}x{data}; same losses: {result['same_losses']} "
        f"(largest relative difference {result['max_loss_rel_diff']:.1e})"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        video_mb, tower_mb, data, out = args.one
        print(json.dumps(train_once(args, (float(video_mb), float(tower_mb)), Path(data), Path(out))))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench_train_step_") as work:
        result = measure(args, Path(work))
    report(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
