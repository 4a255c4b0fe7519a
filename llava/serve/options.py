"""The inference options every front end shares (chat CLI, streaming CLI, gradio demo, API, `llava.eval.videoqa`,
`llava.eval.niavh`): the same flags, the same defaults, read into a session the same way.

    model       --model-path, --model-base, --device, --dtype, --conv-mode, --static-cache, --verbose
    sampling    --num-frames N (N frames uniformly) | --video-fps R (R frames per second, at most --max-frames)
    generation  --temperature, --top-p, --max-new-tokens

Each default is written once: the model's frame sampling comes from its checkpoint's config (`FrameSampling`), the
template from `llava.conversation.DEFAULT_TEMPLATE`, the device and the answer lengths from `llava.serve.chat_session`.
LLaVA's underscore spellings (--model_path, --conv_mode, --num_frames, ...) and the older names of a few flags
(--fps, --stream-fps, --sample-fps) are accepted and not shown in --help.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from llava.conversation import DEFAULT_TEMPLATE, TEMPLATES
from llava.serve.chat_session import DEFAULT_DEVICE, ChatSession, GenerationSettings
from llava.video.sampling import STREAM_FPS, FrameSampling

EXIT_WORDS = {"exit", "quit"}  # typed instead of a question, they end the chat or the stream
DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}  # auto: bfloat16 on a GPU; on a CPU the checkpoint's own precision (float16 with --load-8bit)
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # accelerate's placements


def add_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *names: str, aliases: Sequence[str] = (), **kwargs
) -> argparse.Action:
    """A flag shown in --help under `names`; `aliases` (older spellings) set the same value and are not shown."""
    action = parser.add_argument(*names, **kwargs)
    if aliases:
        same = {key: value for key, value in kwargs.items() if key in ("type", "action", "choices", "nargs")}
        parser.add_argument(*aliases, dest=action.dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **same)
    return action


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """--verbose: show FFmpeg's own log lines (silenced by default; see `llava.logs.set_media_logging`)."""
    parser.add_argument(
        "--verbose", action="store_true", help="show FFmpeg's log lines about the videos read (silent by default)"
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Which model, where and how it runs: --model-path, --model-base, --device, --dtype, --device-map,
    --load-8bit, --load-4bit, --conv-mode, --static-cache, --verbose."""
    add_flag(
        parser,
        "--model-path",
        aliases=("--model_path",),
        default=None,
        help="checkpoint folder (default: the bundled demo model)",
    )
    add_flag(
        parser,
        "--model-base",
        aliases=("--model_base",),
        default=None,
        help="folder to read the tokenizer from when --model-path has none",
    )
    add_flag(parser, "--device", default=DEFAULT_DEVICE, help="auto, cpu, cuda, cuda:1, ...")
    add_flag(
        parser,
        "--dtype",
        default="auto",
        choices=tuple(DTYPES),
        help="weights' precision (auto: bfloat16 on a GPU, the checkpoint's own precision on a CPU)",
    )
    add_flag(
        parser,
        "--device-map",
        aliases=("--device_map",),
        default=None,
        choices=DEVICE_MAPS,
        help="spread the model over the GPUs and the CPU (accelerate's placement) instead of putting it on --device",
    )
    add_flag(
        parser,
        "--load-8bit",
        aliases=("--load_8bit",),
        action="store_true",
        help="LLM.int8 weights for the LLM's layers (bitsandbytes: pip install 'llava-videollamb[quant]')",
    )
    add_flag(
        parser,
        "--load-4bit",
        aliases=("--load_4bit",),
        action="store_true",
        help="NF4 weights for the LLM's layers (bitsandbytes: pip install 'llava-videollamb[quant]')",
    )
    add_flag(
        parser,
        "--conv-mode",
        aliases=("--conv_mode",),
        default=None,
        choices=sorted(TEMPLATES),
        help=f"prompt template (default: the checkpoint's; {DEFAULT_TEMPLATE} for this project's, vicuna_v1 for a "
        "released one)",
    )
    add_flag(
        parser,
        "--static-cache",
        aliases=("--static_cache",),
        action="store_true",
        help="preallocated KV cache; on a GPU decoding is compiled (faster after a slow first answer)",
    )
    add_verbose_option(parser)


def add_sampling_options(
    parser: argparse.ArgumentParser, stream_only: bool = False, fps_aliases: Sequence[str] = ()
) -> None:
    """--num-frames / --video-fps / --max-frames: change the checkpoint's frame sampling (its config's). A stream
    is always read at a rate, so `stream_only` front ends have --video-fps alone."""
    if stream_only:
        parser.set_defaults(num_frames=None, max_frames=None)
    else:
        add_flag(
            parser,
            "--num-frames",
            aliases=("--num_frames",),
            type=int,
            default=None,
            help="sample this many frames uniformly over each video (default: as the checkpoint's config says)",
        )
    add_flag(
        parser,
        "--video-fps",
        aliases=("--video_fps", *fps_aliases),
        type=float,
        default=None,
        help="sample this many frames per second instead (default: as the checkpoint's config says; a stream "
        f"of a model that samples uniformly is read at {STREAM_FPS:g})",
    )
    if not stream_only:
        add_flag(
            parser,
            "--max-frames",
            aliases=("--max_frames",),
            type=int,
            default=None,
            help=f"at a rate, sample at most this many frames (default: the checkpoint's, else "
            f"{FrameSampling.max_frames})",
        )


def add_generation_options(
    parser: argparse.ArgumentParser, max_new_tokens: int = GenerationSettings.max_new_tokens
) -> None:
    """--temperature, --top-p and --max-new-tokens (`max_new_tokens`: the front end's default, one of
    `llava.serve.chat_session`'s two: an answer, or a caption or benchmark answer)."""
    add_flag(
        parser, "--temperature", type=float, default=GenerationSettings.temperature, help="0 = greedy (deterministic)"
    )
    add_flag(
        parser,
        "--top-p",
        aliases=("--top_p",),
        type=float,
        default=GenerationSettings.top_p,
        help="nucleus sampling mass when temperature > 0",
    )
    add_flag(
        parser,
        "--max-new-tokens",
        aliases=("--max_new_tokens",),
        type=int,
        default=max_new_tokens,
        help=f"longest answer, in tokens (default {max_new_tokens})",
    )


def add_inference_options(
    parser: argparse.ArgumentParser,
    max_new_tokens: int = GenerationSettings.max_new_tokens,
    stream_only: bool = False,
    fps_aliases: Sequence[str] = (),
) -> None:
    """Every shared option: model, frame sampling and generation (see the module docstring)."""
    add_model_options(parser)
    add_sampling_options(parser, stream_only, fps_aliases)
    add_generation_options(parser, max_new_tokens)


def check_sampling_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit code 2) for --num-frames, --video-fps and --max-frames."""
    _usage_errors(
        parser,
        [
            (args.num_frames is not None and args.num_frames < 1, "--num-frames must be at least 1"),
            (args.video_fps is not None and not args.video_fps > 0, "--video-fps must be positive"),
            (args.max_frames is not None and args.max_frames < 1, "--max-frames must be at least 1"),
            (
                args.num_frames is not None and args.video_fps is not None,
                "give --num-frames (frames uniformly) or --video-fps (a rate), not both",
            ),
        ],
    )


def check_inference_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit code 2) for shared options out of range."""
    check_sampling_options(parser, args)
    _usage_errors(
        parser,
        [
            (args.max_new_tokens < 1, "--max-new-tokens must be at least 1"),
            (args.temperature < 0, "--temperature must be 0 (greedy) or more"),
            (not 0 < args.top_p <= 1, "--top-p must be in (0, 1]"),
        ],
    )


def _usage_errors(parser: argparse.ArgumentParser, problems: list[tuple[bool, str]]) -> None:
    for failed, message in problems:
        if failed:
            parser.error(message)


def frame_sampling(args: argparse.Namespace, model_sampling: FrameSampling) -> FrameSampling:
    """The model's own sampling changed by --num-frames, --video-fps and --max-frames."""
    return model_sampling.override(num_frames=args.num_frames, fps=args.video_fps, max_frames=args.max_frames)


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)


def chat_session_from_options(args: argparse.Namespace) -> ChatSession:
    """The ChatSession the model and sampling options ask for: the checkpoint loaded once, its frame sampling
    changed by the flags."""
    session = ChatSession.from_pretrained(
        args.model_path,
        model_base=args.model_base,
        device=args.device,
        dtype=DTYPES[args.dtype],
        device_map=args.device_map,
        load_8bit=args.load_8bit,
        load_4bit=args.load_4bit,
        conv_mode=args.conv_mode,
        static_kv_cache=args.static_cache,
    )
    session.sampling = frame_sampling(args, session.sampling)
    return session
