"""Seconds per training step of one tiny-demo curriculum stage, with and without the video cache, on the same data.

    python benchmarks/bench_train_step.py --out benchmarks/results/train_step.json        # 64 videos, 30 steps
    python benchmarks/bench_train_step.py --videos 8 --steps 4 --out /tmp/train_step.json  # the tests' quick run

One curriculum stage of `llava.train.tiny_demo` (6-8 scenes a video, 24 frames sampled uniformly, batch 16, one
data worker) is trained from the bundled demo model (checkpoints/videollamb-tiny-shapes) through
`llava.train.train.train` with the recipe's settings (`tiny_demo.train_stage`), once per configuration on one
generated data set: `no_cache` (every row decodes its video: the recipe before the cache) and `cache` (the
recipe's --video_cache_mb in a persistent worker). Each run is a fresh process; --rounds repeats both, interleaved,
and keeps each one's fastest. Reported per configuration: the trainer's own time of its training loop
(train_runtime: the steps, and the data the main process waited for; not the model's load) per step, the whole
process's wall time and CPU time (its own and its data worker's), and the logged losses, which must be the same
(the cache hands out the samples a decode gives). Before training, the same process times the data alone: as many
batches as the stage has steps, drawn through a DataLoader set as the trainer sets it (one worker, batch 16,
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

CONFIGS = {"no_cache": 0.0, "cache": 2048.0}  # video_cache_mb


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=64, help="videos of the stage (each asked 4 or more questions)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--frames", type=int, default=24, help="frames sampled uniformly per video (the recipe's)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each configuration, interleaved")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated data")
    parser.add_argument("--model", type=Path, default=_ROOT / "checkpoints/videollamb-tiny-shapes")
    parser.add_argument("--out", type=Path, default=_ROOT / "benchmarks/results/train_step.json")
    parser.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)  # child: CACHE_MB DATA OUT
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


def train_once(args: argparse.Namespace, cache_mb: float, data: Path, out: Path) -> dict:
    """The data alone, then one stage trained, in this process: seconds per batch, the trainer's time and the
    logged losses."""
    stage = tiny_demo.Stage(6, 8, args.videos, args.steps)
    arguments = tiny_demo.stage_arguments(args.model, data, out, stage, args.frames, 0, video_cache_mb=cache_mb)
    arguments[2].logging_steps = 1  # every step's loss, compared between the runs
    data_s = data_seconds(arguments, stage.steps)
    train(*arguments)
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    losses = [entry["loss"] for entry in history if "loss" in entry]
    return {"data_s_per_batch": data_s, "train_runtime_s": runtime, "losses": losses}


def run_once(args: argparse.Namespace, cache_mb: float, data: Path, out: Path) -> dict:
    """One stage trained in a fresh process: its result with the process's wall and CPU seconds."""
    command = [sys.executable, __file__, "--one", str(cache_mb), str(data), str(out)]
    command += ["--videos", str(args.videos), "--steps", str(args.steps), "--frames", str(args.frames)]
    command += ["--model", str(args.model)]
    before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the run with video_cache_mb={cache_mb} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "video_cache_mb": cache_mb,
        "s_per_step": result["train_runtime_s"] / args.steps,
        "wall_s": wall,
        "cpu_s": cpu,
        **result,
    }


def measure(args: argparse.Namespace, work: Path) -> dict:
    stage = tiny_demo.Stage(6, 8, args.videos, args.steps)
    data = tiny_demo.make_data(work / "data", stage, args.seed)
    rows = len(json.loads((data / "train.json").read_text()))
    load_before = os.getloadavg()
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for round_ in range(args.rounds):
        for name, cache_mb in CONFIGS.items():
            runs[name].append(run_once(args, cache_mb, data, work / f"{name}_{round_}"))
    best = {name: min(results, key=lambda r: r["s_per_step"]) for name, results in runs.items()}
    return {
        "machine": {"cpu": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "stage": {"videos": args.videos, "rows": rows, "steps": args.steps, "frames": args.frames, "batch": 16},
        "rounds": args.rounds,
        "runs": runs,
        "best": best,
        "speedup": best["no_cache"]["s_per_step"] / best["cache"]["s_per_step"],
        "data_speedup": min(r["data_s_per_batch"] for r in runs["no_cache"])
        / min(r["data_s_per_batch"] for r in runs["cache"]),
        "same_losses": all(r["losses"] == runs["no_cache"][0]["losses"] for results in runs.values() for r in results),
    }


def report(result: dict) -> None:
    stage = result["stage"]
    print(
        f"stage: {stage['videos']} videos, {stage['rows']} rows, {stage['steps']} steps of batch {stage['batch']}, "
        f"{stage['frames']} frames; load {result['load_before'][0]:.2f} -> {result['load_after'][0]:.2f}"
    )
    columns = f"{'cache MB':>9} {'s/step':>8} {'loop s':>8} {'wall s':>8} {'CPU s':>8} {'data s/batch':>13}"
    print(f"  {'config':<10} {columns}")
    for name, best in result["best"].items():
        print(
            f"  {name:<10} {best['video_cache_mb']:>9g} {best['s_per_step']:>8.3f} {best['train_runtime_s']:>8.1f} "
            f"{best['wall_s']:>8.1f} {best['cpu_s']:>8.1f} {best['data_s_per_batch']:>13.3f}"
        )
    print(
        f"  speedup (s/step, no_cache / cache): {result['speedup']:.2f}x; data alone: {result['data_speedup']:.2f}x; "
        f"same losses: {result['same_losses']}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        cache_mb, data, out = args.one
        print(json.dumps(train_once(args, float(cache_mb), Path(data), Path(out))))
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
