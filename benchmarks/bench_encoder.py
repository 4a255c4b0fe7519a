"""Benchmark the full-size LanguageBind towers (ViT-L/14, 224 px, random weights, float32).

    python benchmarks/bench_encoder.py [--frames 8] [--repeats 3] [--out benchmarks/results/encoder.json]

1. Video tower (temporal attention): frames per second of `encode_videos` on one video of `--frames` frames
   (and its time relative to the image tower's, which has no temporal blocks), and of the same frames streamed
   one per call (`encode_stream_frames`, as a live stream is encoded): its time over `encode_videos`'s.
2. Spatial path: the image tower (select_layer -2, so 23 of 24 layers run) against transformers'
   `CLIPVisionModel` holding the same weights (all 24 layers run, `hidden_states[-2]` taken, as the model
   uses it): largest absolute difference and the time ratio ours / CLIP on the same input.
Torch's default thread count is kept. The three models are timed in interleaved rounds, so that load from
other processes on a shared machine affects them alike; the best time of the rounds is reported (medians are
kept in the JSON). Prints a table and writes JSON (the output folder is created).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from llava.model.config import VisionTowerConfig
from llava.progress import progress_bar
from llava.model.languagebind import LanguageBindTower


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames of the benchmark video")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each measurement (after 1 warm-up)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/encoder.json"))
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    return parser.parse_args()


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds one call of `fn` takes, and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, result


def clip_for(config: VisionTowerConfig) -> CLIPVisionModel:
    clip_config = CLIPVisionConfig(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_channels=config.num_channels,
        image_size=config.image_size,
        patch_size=config.patch_size,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
    )
    return CLIPVisionModel(clip_config)


def build_towers(config: VisionTowerConfig, device: torch.device) -> dict[str, torch.nn.Module]:
    """The video tower, an image tower with its spatial weights, and CLIPVisionModel with the same weights."""
    video = LanguageBindTower(config, temporal=True).eval()
    spatial = {k: v for k, v in video.state_dict().items() if ".temporal_" not in k}
    image = LanguageBindTower(config, temporal=False).eval()
    image.load_state_dict(spatial, strict=True)
    clip = clip_for(config).eval()
    clip.load_state_dict({k.removeprefix("vision_model."): v for k, v in spatial.items()}, strict=True)
    return {"video": video.to(device), "image": image.to(device), "clip": clip.to(device)}


def measure(runs: dict[str, Callable[[], torch.Tensor]], repeats: int, device: torch.device) -> tuple[dict, dict]:
    """One warm-up each, then `repeats` rounds, interleaved so that load from other processes hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        outputs = {name: timed(fn, device)[1] for name, fn in runs.items()}
        for _ in progress_bar(range(repeats), desc="rounds", unit="round"):
            for name, fn in runs.items():
                times[name].append(timed(fn, device)[0])
    return times, outputs


def one_frame_per_call(tower: LanguageBindTower, pixels: torch.Tensor) -> torch.Tensor:
    """The frames through the streaming path, one call each, the cache carried between calls."""
    cache, features = None, []
    for frame in pixels:
        encoded, cache = tower.encode_stream_frames(frame[None], cache)
        features.append(encoded)
    return torch.cat(features)


def run_benchmark(config: VisionTowerConfig, pixels: torch.Tensor, repeats: int, device: torch.device) -> dict:
    towers = build_towers(config, device)
    runs = {
        "video": lambda: towers["video"].encode_videos([pixels])[0],
        "stream": lambda: one_frame_per_call(towers["video"], pixels),
        "image": lambda: towers["image"].encode_images(pixels),
        "clip": lambda: towers["clip"](pixel_values=pixels, output_hidden_states=True).hidden_states[-2],
    }
    times, outputs = measure(runs, repeats, device)
    seconds = {name: min(values) for name, values in times.items()}  # best of: least disturbed by other load
    medians = {name: statistics.median(values) for name, values in times.items()}
    frames = pixels.shape[0]
    return {
        "video_tower": {
            "seconds": seconds["video"],
            "frames_per_second": frames / seconds["video"],
            "layers_run": towers["video"].num_layers_run,
            "time_over_image_tower": seconds["video"] / seconds["image"],
            "median_seconds": medians["video"],
            "times": times["video"],
        },
        "one_frame_per_call": {
            "seconds": seconds["stream"],
            "ms_per_frame": 1000 * seconds["stream"] / frames,
            "time_over_encode_videos": seconds["stream"] / seconds["video"],
            "times": times["stream"],
        },
        "spatial_path": {
            "max_abs_diff": float((outputs["image"] - outputs["clip"]).abs().max()),
            "ours_seconds": seconds["image"],
            "clip_seconds": seconds["clip"],
            "ratio_ours_over_clip": seconds["image"] / seconds["clip"],
            "ours_layers_run": towers["image"].num_layers_run,
            "clip_layers_run": config.num_hidden_layers,
            "clip_attn_implementation": towers["clip"].config._attn_implementation,
            "ratio_of_medians": medians["image"] / medians["clip"],
            "ours_times": times["image"],
            "clip_times": times["clip"],
        },
    }


def print_table(result: dict) -> None:
    video, spatial, stream = result["video_tower"], result["spatial_path"], result["one_frame_per_call"]
    n = result["frames"]
    rows = [
        (f"video tower encode_videos ({video['layers_run']} layers)", f"{video['seconds']:.3f} s",
         f"{video['frames_per_second']:.2f} fps"),
        ("video tower time / image tower time", f"{video['time_over_image_tower']:.3f}", ""),
        ("video tower, one frame per call (a live stream)", f"{stream['seconds']:.3f} s",
         f"{stream['ms_per_frame']:.0f} ms/frame"),
        ("one frame per call time / encode_videos time", f"{stream['time_over_encode_videos']:.3f}", ""),
        (f"image tower, ours ({spatial['ours_layers_run']} layers)", f"{spatial['ours_seconds']:.3f} s",
         f"{n / spatial['ours_seconds']:.2f} fps"),
        (f"CLIPVisionModel ({spatial['clip_layers_run']} layers, {spatial['clip_attn_implementation']})",
         f"{spatial['clip_seconds']:.3f} s", f"{n / spatial['clip_seconds']:.2f} fps"),
        ("time ratio ours / CLIP", f"{spatial['ratio_ours_over_clip']:.3f}", ""),
        ("max |ours - CLIP hidden_states[-2]|", f"{spatial['max_abs_diff']:.2e}", ""),
    ]
    print(f"device {result['device']}, threads {result['threads']}, {n} frames, best of {result['repeats']} runs")
    width = max(len(r[0]) for r in rows)
    for name, value, extra in rows:
        print(f"{name:<{width}}  {value:>10}  {extra:>10}")


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = VisionTowerConfig()  # ViT-L/14, 224 px, 24 layers, select_layer -2, window 8
    pixels = torch.randn(args.frames, config.num_channels, config.image_size, config.image_size, device=device)
    measured = run_benchmark(config, pixels, args.repeats, device)
    result = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "frames": args.frames,
        "repeats": args.repeats,
        "dtype": "float32",
        **measured,
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
