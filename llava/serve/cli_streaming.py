"""Caption a video or a live stream as it plays, and answer questions typed while it runs.

    python -m llava.serve.cli_streaming                                   # the demo video, the demo model
    python -m llava.serve.cli_streaming --video-file clip.mp4 --video-fps 1 --realtime --output history.json
    python -m llava.serve.cli_streaming --video-file rtsp://camera/live --save-state cam.pt
    python -m llava.serve.cli_streaming --video-file clip.mp4 --resume-state cam.pt --save-state cam.pt

A thin front end over `StreamingSession`: frames are read at --video-fps frames per second (default: the rate the
checkpoint's config records, or 1 for a model that samples uniformly; --fps is an older name). Every frame is
encoded once and each scene passes the memory bridge once, so a long stream costs the same per frame at its end as
at its start. A caption is printed when a scene ends, as
`(Video Time = 12s) Assistant: ...`. Files are read as fast as the model goes (--realtime paces them to the video
clock), --batch-frames frames at a time (32, fewer when they would hold over 256 MB decoded): whole temporal windows
of frames go through the tower together and the captions of the scenes that end among them are generated together,
with the same captions as one frame at a time; URLs and /dev/video* devices are paced by the source itself, one
frame at a time.

Type a question (and Enter) while the video runs: it is answered from everything seen so far, after the next
frame (or batch of frames), as a `User:` line and an `Assistant:` line (with --evidence, then an `evidence:` line:
the time spans of the latest segments the answer rests on, scored, best first; the history JSON always gives an
answer's "evidence" as a list of {"start", "end", "score"}). "exit" or "quit" stops the stream.
Ctrl-C stops it after the current frame or batch (a second Ctrl-C stops at once). When the stream ends, stops
or fails, --output gets the whole history as JSON, with how the stream ended ("ended": "finished", "stopped",
"interrupted" or "error", then with the "error" itself), and --save-state the stream's memory; --resume-state
continues from such a state (a file skips the frames already seen; a live source's clock continues from the
saved one). Both are written atomically (temp file, then rename): never half-written. A source that cannot be
opened, or fails before its first frame, writes nothing (an older --output file stays as it was). User errors end
in one line `error: ...` on stderr and exit code 1; an interrupted stream exits with 130. FFmpeg's own log lines
are silent unless --verbose. The model, sampling and generation options are shared with every front end (see
`llava.serve.options`); --max-new-tokens defaults to a caption's length.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from llava.atomic import write_json_atomic
from llava.errors import LlavaError, report_error
from llava.logs import set_media_logging
from llava.serve.chat_session import DEMO_VIDEO, SHORT_MAX_NEW_TOKENS
from llava.serve.evidence import format_evidence
from llava.serve.options import (
    EXIT_WORDS,
    add_flag,
    add_inference_options,
    chat_session_from_options,
    check_inference_options,
    generation_settings,
)
from llava.serve.stream_source import FILE_BATCH_FRAMES, in_batches, timed_frames
from llava.serve.streaming_session import CAPTION_PROMPT, StreamEvent, StreamingPolicy, StreamingSession
from llava.video.decode import open_video

if TYPE_CHECKING:
    from llava.video.decode import VideoReader

EOF_GRACE_S = 0.5  # at the end of a file, how long to wait for piped questions not yet read


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.serve.cli_streaming",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flag(
        parser,
        "--video-file",
        aliases=("--video_file",),
        default=str(DEMO_VIDEO),
        help="video file, URL (rtsp://, http://, ...) or capture device /dev/videoN "
        "(default: playground/demo/shapes.mp4)",
    )
    parser.add_argument("--realtime", action="store_true", help="play a file at the speed of its own clock")
    parser.add_argument("--prompt", default=CAPTION_PROMPT, help="what the model is asked at each scene end")
    parser.add_argument(
        "--min-caption-gap",
        type=float,
        default=StreamingPolicy.min_caption_gap,
        help="seconds of video between two captions",
    )
    parser.add_argument(
        "--until", type=float, default=None, help="stop (as Ctrl-C does) once the video clock passes this many seconds"
    )
    parser.add_argument("--output", type=Path, default=None, help="write the history (captions, questions) here")
    parser.add_argument(
        "--evidence", action="store_true", help="after each answer, print the time spans it rests on, best first"
    )
    parser.add_argument("--save-state", type=Path, default=None, help="write the stream state here at the end")
    parser.add_argument("--resume-state", type=Path, default=None, help="continue the stream saved in this file")
    parser.add_argument(
        "--batch-frames",
        type=int,
        default=FILE_BATCH_FRAMES,
        help="frames of a file pushed together when it is read as fast as possible (questions are "
        "answered between batches); --realtime and live sources go one frame at a time",
    )
    parser.add_argument(
        "--caption-batch",
        type=int,
        default=StreamingPolicy.caption_batch,
        help="captions generated together when one batch ends several scenes (each holds a KV "
        "cache of its whole prompt: lower it when GPU memory is tight)",
    )
    add_inference_options(parser, max_new_tokens=SHORT_MAX_NEW_TOKENS, stream_only=True, fps_aliases=("--fps",))
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_inference_options(parser, args)
    if args.min_caption_gap < 0:
        parser.error("--min-caption-gap must be 0 or more")
    if args.batch_frames < 1 or args.caption_batch < 1:
        parser.error("--batch-frames and --caption-batch must be at least 1")
    for name in ("output", "save_state"):
        path = getattr(args, name)
        if path is not None and path.is_dir():
            parser.error(f"--{name.replace('_', '-')} {path} is a directory; give a file name")
    return args


class QuestionReader:
    """Reads stdin lines on a background thread into a queue, so the stream never waits for the keyboard.

    Real files and terminals are polled with select (the thread can be stopped); anything without a file
    descriptor (io.StringIO in tests) is read line by line until EOF. Read errors count as EOF.
    """

    def __init__(self, stream: TextIO) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.eof = threading.Event()
        self._closed = threading.Event()
        try:
            self.interactive = stream.isatty()
        except (OSError, ValueError, AttributeError):
            self.interactive = False
        self._thread = threading.Thread(target=self._run, args=(stream,), name="stdin-questions", daemon=True)
        self._thread.start()

    def _run(self, stream: TextIO) -> None:
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            fd = None
        try:
            for line in _lines_from_fd(fd, self._closed) if fd is not None else iter(stream.readline, ""):
                if line.strip():
                    self.lines.put(line.strip())
        except (OSError, ValueError):
            return  # stdin closed, or not readable (as under pytest's capture): no questions
        finally:
            self.eof.set()

    def drain(self) -> list[str]:
        """Every question typed since the last call."""
        out = []
        while True:
            try:
                out.append(self.lines.get_nowait())
            except queue.Empty:
                return out

    def wait_for_eof(self, timeout: float) -> None:
        """Give piped input a moment to arrive in full (a terminal is never waited for)."""
        if not self.interactive:
            self.eof.wait(timeout)

    def close(self) -> None:
        self._closed.set()


def _lines_from_fd(fd: int, closed: threading.Event) -> Iterator[str]:
    """Lines from a file descriptor, polling so that `closed` can stop the reader between polls."""
    pending = b""
    while not closed.is_set():
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line.decode("utf-8", "replace") for line in lines)
    if pending:
        yield pending.decode("utf-8", "replace")


@dataclass
class History:
    """What was said, and when (video seconds), written as one JSON file."""

    video: str
    prompt: str
    fps: float
    entries: list[dict] = field(default_factory=list)
    print_evidence: bool = False  # print an answer's evidence line after it (--evidence); the JSON always has it

    def say(self, event: StreamEvent) -> None:
        print(event, flush=True)
        entry = {"time": event.time, "role": event.role, "text": event.text}
        if event.evidence is not None:
            entry["evidence"] = [item.to_dict() for item in event.evidence]
            if self.print_evidence:
                print(format_evidence(event.evidence), flush=True)
        self.entries.append(entry)

    def write(self, path: Path, ended: str, error: str | None = None) -> None:
        record = {"video": self.video, "prompt": self.prompt, "fps": self.fps, "history": self.entries, "ended": ended}
        if error is not None:
            record["error"] = error
        write_json_atomic(record, path)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (the loop stops after its frame); a second one interrupts at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this frame (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class Pacer:
    """Sleeps until the wall clock has run as long as the video clock since the first frame."""

    def __init__(self, enabled: bool, stop: threading.Event) -> None:
        self.enabled, self.stop = enabled, stop
        self.origin: tuple[float, float] | None = None

    def wait(self, t: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.origin is None:
            self.origin = (now, t)
        delay = (t - self.origin[1]) - (now - self.origin[0])
        if delay > 0:
            self.stop.wait(delay)  # wakes early on Ctrl-C


@dataclass
class Streamer:
    """The main loop: frames in (`batch` at a time), captions out, questions answered between batches."""

    session: StreamingSession
    questions: QuestionReader
    history: History
    stop: threading.Event
    until: float | None = None
    batch: int = 1
    ended: str = "finished"  # how the stream ended: finished, stopped, interrupted or error
    pushed: int = 0  # frames pushed into the session by this run

    def answer(self, t: float) -> None:
        for question in self.questions.drain():
            if question.lower() in EXIT_WORDS:
                self.ended = "stopped"
                self.stop.set()
                return
            self.history.say(StreamEvent(t, "User", question))
            self.history.say(StreamEvent(t, "Assistant", *self.session.ask_with_evidence(question)))

    def run(self, frames: Iterator[tuple[float, np.ndarray]], pacer: Pacer) -> None:
        t = self.session.state.last_time
        for batch in in_batches(frames, self.batch):
            kept = [(time, frame) for time, frame in batch if self.until is None or time <= self.until]
            if kept:
                pacer.wait(kept[0][0])  # pacing reads one frame at a time
                for event in self.session.push_timed_frames(kept):
                    self.history.say(event)
                self.pushed += len(kept)
                t = kept[-1][0]
            if len(kept) < len(batch):
                self.ended = "stopped"
                return
            self.answer(t)
            if self.stop.is_set():
                self.ended = "stopped" if self.ended == "stopped" else "interrupted"
                return
        for event in self.session.finish():
            self.history.say(StreamEvent(t, event.role, event.text))
        self.questions.wait_for_eof(EOF_GRACE_S)
        if self.session.frames_seen:
            self.answer(t)


def open_session(args: argparse.Namespace) -> tuple[StreamingSession, float]:
    """The stream on the model the shared options load, and the frames per second it is read at."""
    base = chat_session_from_options(args)
    policy = StreamingPolicy(min_caption_gap=args.min_caption_gap, prompt=args.prompt, caption_batch=args.caption_batch)
    session = StreamingSession(
        base.model, base.tokenizer, base.processor, policy, conv_mode=base.conv_mode, settings=generation_settings(args)
    )
    if args.resume_state is not None:
        session.load_state(args.resume_state)
    return session, base.sampling.stream_fps


def save(args: argparse.Namespace, streamer: Streamer, error: str | None = None) -> None:
    """The history (how the stream ended included) and the stream state, each written atomically."""
    if args.output is not None:
        streamer.history.write(args.output, streamer.ended, error)
    if args.save_state is not None:
        streamer.session.save_state(args.save_state)


def describe(err: Exception) -> str:
    """An error as one line; one of an unexpected kind (a bug, shown as a traceback) also names its type."""
    message = " ".join(str(err).split())
    return message if isinstance(err, (LlavaError, OSError)) else f"{type(err).__name__}: {message}"


def stream(args: argparse.Namespace, streamer: Streamer, reader: VideoReader) -> int:
    """Run the stream and keep what it saw, however it ends: the exit code (0, or 130 when interrupted).

    A failure (the source or the model raising) writes the history with "ended": "error" and the error, and the
    state, then propagates; a failure before this run pushed any frame writes nothing (an older file stays).
    A second Ctrl-C, possibly inside a frame, writes the history alone ("interrupted": the state may be torn).
    """
    pacer = Pacer(args.realtime and reader.num_frames is not None, streamer.stop)
    try:
        streamer.run(timed_frames(reader, streamer.history.fps, streamer.session), pacer)
    except KeyboardInterrupt:
        streamer.ended = "interrupted"
        if args.output is not None:
            streamer.history.write(args.output, streamer.ended)
        print(file=sys.stderr)
        return 130
    except Exception as err:
        if streamer.pushed:
            streamer.ended = "error"
            save(args, streamer, error=describe(err))
        raise
    save(args, streamer)
    return 130 if streamer.ended == "interrupted" else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_media_logging(args.verbose)
    questions = QuestionReader(sys.stdin)
    try:
        with contextlib.ExitStack() as stack:
            reader = stack.enter_context(open_video(args.video_file))
            session, fps = open_session(args)
            stop = stack.enter_context(deferred_interrupt())
            history = History(str(args.video_file), args.prompt, fps, print_evidence=args.evidence)
            paced = args.realtime or reader.num_frames is None  # pacing, or a live source: no frame may wait
            batch = 1 if paced else args.batch_frames
            return stream(args, Streamer(session, questions, history, stop, args.until, batch), reader)
    except (LlavaError, OSError) as err:
        return report_error(err)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    finally:
        questions.close()


if __name__ == "__main__":
    sys.exit(main())
