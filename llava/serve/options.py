"""What every serving front end shares: command-line options, and the words that end an interactive session."""

from __future__ import annotations

import argparse

from llava.conversation import DEFAULT_TEMPLATE, TEMPLATES
from llava.serve.engine import ChatSession

EXIT_WORDS = {"exit", "quit"}  # typed instead of a question, they end the chat or the stream


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """--verbose: show FFmpeg's own log lines (silenced by default; see `llava.logs.set_media_logging`)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show FFmpeg's log lines about the videos read (silent by default)")


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """--conv-mode (the prompt template), --device (where the model runs), --static-cache and --verbose."""
    parser.add_argument("--conv-mode", default=DEFAULT_TEMPLATE, choices=sorted(TEMPLATES), help="prompt template")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--static-cache", action="store_true",
                        help="preallocated KV cache; on a GPU decoding is compiled (faster after a slow first answer)")
    add_verbose_option(parser)


def chat_session_from_options(args: argparse.Namespace, **loading) -> ChatSession:
    """The ChatSession that --model-path, --device, --conv-mode, --num-frames and --static-cache ask for; `loading`
    adds options of one front end (e.g. the CLI's model_base, load_8bit) for `ChatSession.from_pretrained`."""
    extra = {} if args.num_frames is None else {"num_frames": args.num_frames}
    return ChatSession.from_pretrained(args.model_path, device=args.device, conv_mode=args.conv_mode,
                                       static_kv_cache=args.static_cache, **loading, **extra)
