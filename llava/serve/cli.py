"""Chat about a video or an image from the terminal (a thin front end over `ChatSession`).

    python -m llava.serve.cli --video-file playground/demo/shapes.mp4
    python -m llava.serve.cli --video-file clip.mp4 --query "What was in the first scene?"
    python -m llava.serve.cli --video-file clip.mp4 --query "What was in the first scene?" --evidence
    python -m llava.serve.cli --model-path checkpoints/videollamb-llava-1.5-7b --video-file clip.mp4

The model, frame sampling and generation options are those of every front end (see `llava.serve.options`).
Without --model-path the bundled demo model (checkpoints/videollamb-tiny-shapes) answers; build it with
`make demo-model`. Interactive by default: type a question after "USER: "; an empty line, "exit", EOF
(Ctrl-D) or Ctrl-C ends the chat. With --query the answer alone is printed and the program exits.
With --evidence each answer is followed by a line "evidence: " with the time spans (seconds) of the segments
it rests on and their scores, best first (`llava.serve.evidence`).
User errors end in one line `error: ...` on stderr and exit code 1. The video (or image) is opened before the
model loads, so a missing, corrupt or video-less file is reported at once. FFmpeg's own log lines are silent
unless --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np

from llava.errors import LlavaError, report_error
from llava.logs import set_media_logging
from llava.serve.chat_session import ChatSession, GenerationSettings
from llava.serve.evidence import format_evidence
from llava.serve.options import (
    EXIT_WORDS,
    add_inference_options,
    chat_session_from_options,
    check_inference_options,
    generation_settings,
)
from llava.video.decode import VideoReader, load_image, open_video


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.serve.cli", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    media = parser.add_mutually_exclusive_group()
    media.add_argument("--video-file", default=None, help="video file, gif or folder of frames")
    media.add_argument("--image-file", default=None, help="image file")
    parser.add_argument("--query", default=None, help="ask this one question, print the answer and exit")
    add_inference_options(parser)
    parser.add_argument("--ablate-memory", action="store_true", help="reset the bridge memory at every segment")
    parser.add_argument(
        "--evidence", action="store_true", help="after each answer, print the time spans it rests on, best first"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.video_file is None and args.image_file is None:
        parser.error("one of --video-file or --image-file is required")
    check_inference_options(parser, args)
    return args


def open_session(args: argparse.Namespace) -> ChatSession:
    """Open the video (or read the image) first, so that a bad file fails before the model loads; then load the
    model and encode the video or image once (the video through the reader already open)."""
    with contextlib.ExitStack() as stack:
        media: VideoReader | np.ndarray
        if args.video_file is not None:
            media = stack.enter_context(open_video(args.video_file))
        else:
            media = load_image(args.image_file)
        session = chat_session_from_options(args)
        session.model.set_memory_ablation(args.ablate_memory)
        if isinstance(media, np.ndarray):
            session.load_image(media)
        else:
            session.load_video(media)
    return session


def answer(session: ChatSession, question: str, settings: GenerationSettings, evidence: bool) -> str:
    """The answer to `question`, followed with --evidence by a line with its evidence."""
    text = session.ask(question, settings)
    if evidence:
        text += "\n" + format_evidence(session.evidence(question, text))
    return text


def chat(session: ChatSession, settings: GenerationSettings, evidence: bool) -> None:
    """Multi-turn chat on stdin/stdout until an empty line, "exit", EOF or Ctrl-C."""
    user, assistant = session.conversation.roles
    while True:
        try:
            question = input(f"{user}: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not question or question.lower() in EXIT_WORDS:
            return
        print(f"{assistant}: {answer(session, question, settings, evidence)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_media_logging(args.verbose)
    settings = generation_settings(args)
    try:
        session = open_session(args)
        if args.query is not None:
            print(answer(session, args.query, settings, args.evidence), flush=True)
        else:
            chat(session, settings, args.evidence)
    except (LlavaError, OSError) as err:
        return report_error(err)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
