"""Needle In A Video Haystack: hide a one-second needle (text, image or video) in a long video at every length
and depth of a grid, ask the model about it, score, and draw a heatmap per modality.

    python -m llava.eval.niavh --modality image --lengths 8,16,32 --depths 0,50,100 --output runs/niavh
    python -m llava.eval.niavh --model-path checkpoints/videollamb-llava-1.5-7b --haystack-dir ego_videos/ \\
        --needle-video needle.mp4 --needle-description "a man seated on a cloud" \\
        --distractors "a dog on a beach;a man riding a bike;a bird on a tree" --output runs/niavh-7b

Defaults: the bundled demo model, the original grid (lengths round(linspace(1, 320, 40)) seconds, depths
round(linspace(0, 100, 12)) percent), all three modalities, a synthetic haystack at 1 fps, the needle a
purple triangle (reserved: the haystack never shows one), multiple choice with circular evaluation. Frames: the
paper's protocol, 1 frame per second (at most the checkpoint's max_frames) for a model that samples uniformly (the
demo model's 24 frames would miss a one-second needle in a minute of haystack by chance), a model whose config records
a rate at that rate; --num-frames N samples N uniformly, --video-fps and --max-frames change the rate: these and the
other model and generation options are those of every front end (`llava.serve.options`). Older names: --output-dir
(--output), --sample-fps (--video-fps), --fps (--haystack-fps, the rate the test videos are written at).
Writes OUT/cells/*.json (one per cell; a rerun skips finished cells), OUT/summary.json and
OUT/heatmap_{modality}.png; test videos are cached in OUT/videos (or --cache-dir).
User errors end in one line `error: ...` on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from llava.errors import ConfigError, LlavaError, report_error
from llava.eval.niavh.grid import ORIGINAL_DEPTHS, ORIGINAL_LENGTHS, parse_values, place
from llava.eval.niavh.haystack import Haystack, SyntheticHaystack, VideoHaystack, files_digest
from llava.eval.niavh.needles import MODALITIES, NeedleOptions, build_needles, parse_object
from llava.eval.niavh.report import write_report
from llava.eval.niavh.runner import RunSettings, SessionGenerator, run_grid
from llava.eval.niavh.scoring import SCORINGS, Scorer, make_scorer
from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS
from llava.serve.options import (
    add_flag,
    add_inference_options,
    chat_session_from_options,
    check_inference_options,
    frame_sampling,
    generation_settings,
)
from llava.video.sampling import FrameSampling

DEMO_NAME = "videollamb-tiny-shapes"
PAPER_FPS = 1.0  # the paper samples every model's test videos at 1 frame per second


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llava.eval.niavh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-name", default=None, help="label in the results (default: the checkpoint folder name)")
    p.add_argument("--modality", default=",".join(MODALITIES), help="comma list of: text, image, video")
    p.add_argument("--lengths", default=None, help="seconds, comma list (default: the original 40 lengths)")
    p.add_argument("--depths", default=None, help="percent, comma list (default: the original 12 depths)")
    add_flag(
        p,
        "--output",
        aliases=("--output-dir",),
        default=Path("runs/niavh"),
        type=Path,
        help="folder of the results: cells/, summary.json, heatmap_*.png (default runs/niavh)",
    )
    p.add_argument("--cache-dir", default=None, type=Path, help="test videos (default: OUTPUT/videos)")
    p.add_argument(
        "--haystack-dir",
        default=None,
        type=Path,
        help="folder of videos looped into the haystack (default: the synthetic world)",
    )
    p.add_argument("--haystack-seed", type=int, default=0, help="seed of the synthetic haystack")
    p.add_argument(
        "--needle-object",
        default="purple-triangle",
        help="COLOUR-SHAPE of the synthetic needle (kept out of the synthetic haystack)",
    )
    p.add_argument("--needle-text", default=None, help="text of the text needle (default: the object's caption)")
    p.add_argument("--needle-image", default=None, help="image file for the image needle")
    p.add_argument("--needle-video", default=None, help="video file for the video needle")
    p.add_argument("--needle-description", default=None, help="reference answer for --needle-image/--needle-video")
    p.add_argument("--distractors", default=None, help="three wrong answers 'a;b;c' (needed by mc with own needles)")
    p.add_argument("--question", default=None, help="the question asked about the needle (default per modality)")
    p.add_argument("--needle-duration", type=float, default=1.0, help="seconds the needle shows")
    p.add_argument("--needle-scale", type=float, default=0.5, help="a file needle's size, of the frame's side")
    p.add_argument(
        "--scoring",
        default="mc",
        choices=SCORINGS,
        help="mc: circular multiple choice; exact: exact/keyword match; judge: LLM judge 1-10",
    )
    p.add_argument("--judge-url", default=None, help="OpenAI-compatible base URL, e.g. https://api.openai.com/v1")
    p.add_argument("--judge-key", default=None, help="API key of the judge (default: $OPENAI_API_KEY)")
    p.add_argument("--judge-model", default="gpt-3.5-turbo")
    add_flag(
        p,
        "--haystack-fps",
        aliases=("--fps",),
        type=float,
        default=1.0,
        help="frame rate the test videos are written at (how the model samples them: --num-frames, --video-fps)",
    )
    p.add_argument("--size", type=int, default=224, help="test video frames are SIZE x SIZE pixels")
    p.add_argument("--ablate-memory", action="store_true", help="reset the bridge memory at every segment")
    p.add_argument(
        "--control",
        action="store_true",
        help="also ask each question of the haystack without the needle; summary.json adds the "
        "control's mean and the mean net of it (a model that names the needle anyway is guessing)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_inference_options(p, max_new_tokens=SHORT_MAX_NEW_TOKENS, fps_aliases=("--sample-fps",))
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_inference_options(parser, args)
    return args


def _check_numbers(args: argparse.Namespace) -> None:
    checks = [
        (not args.haystack_fps > 0, f"--haystack-fps must be positive, got {args.haystack_fps}"),
        (args.size < 16, f"--size must be at least 16, got {args.size}"),
        (not args.needle_duration > 0, f"--needle-duration must be positive, got {args.needle_duration}"),
        (not 0 < args.needle_scale <= 1, f"--needle-scale must be in (0, 1], got {args.needle_scale}"),
    ]
    for failed, message in checks:
        if failed:
            raise ConfigError(message)


def prepare(args: argparse.Namespace) -> tuple[dict, Haystack, Scorer, RunSettings]:
    """Everything but the model, checked before it loads: needles, haystack, scorer, grid."""
    _check_numbers(args)
    lengths = parse_values(args.lengths, "--lengths", 0) if args.lengths else list(ORIGINAL_LENGTHS)
    depths = parse_values(args.depths, "--depths", 0, 100) if args.depths else list(ORIGINAL_DEPTHS)
    for length in lengths:  # every length must give at least one frame
        place(length, 0, args.haystack_fps, args.needle_duration)
    modalities = [m.strip() for m in args.modality.split(",") if m.strip()]
    distractors = tuple(d.strip() for d in args.distractors.split(";") if d.strip()) if args.distractors else None
    if distractors is not None and len(distractors) < 3:
        raise ConfigError(f"--distractors needs three wrong answers separated by ';', got {len(distractors)}")
    obj = parse_object(args.needle_object)
    options = NeedleOptions(
        obj=obj,
        text=args.needle_text,
        image=args.needle_image,
        video=args.needle_video,
        description=args.needle_description,
        distractors=distractors,
        question=args.question,
        scale=args.needle_scale,
    )
    needles = build_needles(list(dict.fromkeys(modalities)), options, need_distractors=args.scoring == "mc")
    haystack = VideoHaystack(args.haystack_dir) if args.haystack_dir else SyntheticHaystack(args.haystack_seed, obj)
    scorer = make_scorer(
        args.scoring, args.judge_url, args.judge_key or os.environ.get("OPENAI_API_KEY"), args.judge_model
    )
    settings = RunSettings(
        tuple(lengths),
        tuple(depths),
        fps=args.haystack_fps,
        size=args.size,
        needle_duration=args.needle_duration,
        control=args.control,
    )
    return needles, haystack, scorer, settings


def checkpoint_digest(folder: Path) -> str:
    """A fingerprint of a checkpoint's weight files and config, so a retrained model, or one whose config now
    segments or samples otherwise, never reuses an older one's cells."""
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("pytorch_model*.bin"))
    return files_digest([*weights, *folder.glob("config.json")])


def _changed_defaults(args: argparse.Namespace) -> dict:
    """Settings that change answers, recorded (in the cells' key) only where they differ from the defaults, so the
    cells of a run at the defaults keep their keys: a template other than the default, sampled decoding."""
    changed = {} if args.conv_mode is None else {"conv_mode": args.conv_mode}
    if args.temperature > 0:
        changed |= {"temperature": args.temperature, "top_p": args.top_p}
    return changed


def niavh_sampling(args: argparse.Namespace, model_sampling: FrameSampling) -> FrameSampling:
    """The paper's 1 fps for a model that samples uniformly, a model's own rate otherwise; then the flags."""
    if model_sampling.uniform:
        model_sampling = model_sampling.override(fps=PAPER_FPS)
    return frame_sampling(args, model_sampling)


def _generator(args: argparse.Namespace) -> tuple[SessionGenerator, dict]:
    """The model (loaded by the shared options) as `generate`, and what its answers depend on (the cells' key)."""
    from llava.serve.chat_session import DEMO_CHECKPOINT

    session = chat_session_from_options(args)
    session.sampling = niavh_sampling(args, session.model.config.frame_sampling)
    session.model.set_memory_ablation(args.ablate_memory)
    settings = generation_settings(args)
    generator = SessionGenerator(session, settings)
    name = args.model_name or (Path(args.model_path).resolve().name if args.model_path else DEMO_NAME)
    model = {
        "name": name + (" (memory ablated)" if args.ablate_memory else ""),
        "ablate_memory": args.ablate_memory,
        "max_new_tokens": args.max_new_tokens,
        **session.sampling.record(),
        **_changed_defaults(args),
        "weights": checkpoint_digest(Path(args.model_path) if args.model_path else DEMO_CHECKPOINT),
    }
    return generator, model


def main(argv: list[str] | None = None) -> int:
    """python -m llava.eval.niavh --modality image --lengths 4,8 --depths 0,100 --output runs/niavh-small"""
    args = parse_args(argv)
    try:
        needles, haystack, scorer, settings = prepare(args)
        generator, model = _generator(args)
        settings = dataclasses.replace(settings, model=model)
        records = run_grid(
            generator.generate,
            needles,
            haystack,
            scorer,
            settings,
            args.output,
            args.cache_dir,
            progress=not args.quiet,
            locate=generator.locate,
        )
        summary = write_report(records, args.output)
    except (LlavaError, OSError) as err:
        return report_error(err)
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are kept; run the same command again to resume", file=sys.stderr)
        return 130
    per = ", ".join(f"{m} {v:g}" for m, v in summary["per_modality"].items())
    if summary["control_mean"] is not None:
        per += f"; without the needle {summary['control_mean']:g}, net {summary['net_mean']:g}"
    print(
        f"NIAVH {summary['model']}: mean {summary['mean']:g} ({summary['scoring']}, {summary['num_cells']} cells; "
        f"{per}); wrote {args.output / 'summary.json'} and {len(summary['heatmaps'])} heatmap(s)"
    )
    return 0
