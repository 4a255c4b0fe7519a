"""Helpers of the gradio demo (`llava.serve.gradio_demo`) that need no gradio: the per-user chat state, the
chatbot's view of a conversation, the upload size check, the two generators the UI streams from (a
growing answer, a growing caption log), and the evidence timeline's HTML."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llava.constants import DEFAULT_IMAGE_TOKEN, DEFAULT_VIDEO_TOKEN
from llava.errors import LlavaError
from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS, ChatSession, GenerationSettings
from llava.serve.evidence import Evidence
from llava.serve.stream_source import FILE_BATCH_FRAMES, in_batches, timed_frames
from llava.serve.streaming_session import StreamEvent, StreamingPolicy, StreamingSession
from llava.video.decode import open_video
from llava.video.sampling import STREAM_FPS

MB = 2**20
_MEDIA_TAGS = (f"{DEFAULT_VIDEO_TOKEN}\n", f"{DEFAULT_IMAGE_TOKEN}\n")


@dataclass
class DemoSettings:
    """What the demo's command line sets."""

    max_upload_mb: float = 200.0
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    stream_fps: float = STREAM_FPS  # frames per second the Streaming tab takes from a video (main: the model's)
    stream_max_new_tokens: int = SHORT_MAX_NEW_TOKENS  # longest caption
    one_model_request: bool = False  # every event that runs the model waits for the others (--static-cache)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)


@dataclass
class UserChat:
    """One browser tab's chat: its own session (sharing the model) and which file its media came from."""

    session: ChatSession
    source: str | None = None  # path of the loaded video or image; None = no media
    kind: str | None = None  # "video" or "image" (which input it came from)


def too_large(path: str | Path, max_mb: float) -> str | None:
    """The message to show when the file at `path` is over the upload limit, else None."""
    try:
        size = Path(path).stat().st_size
    except OSError:  # missing or unreadable: the loader that follows names the problem
        return None
    if size <= max_mb * MB:
        return None
    return f"{Path(path).name} is {size / MB:.1f} MB; uploads are limited to {max_mb:g} MB (--max-upload-mb)"


def one_line(err: BaseException) -> str:
    return " ".join(str(err).splitlines()) or type(err).__name__


def chat_messages(session: ChatSession, pending: str | None = None) -> list[dict]:
    """The conversation as the chatbot shows it: the media tag dropped, a pending answer shown as `pending`."""
    user = session.conversation.roles[0]
    shown = []
    for role, text in session.conversation.messages:
        text = pending if text is None else text
        if text is None:
            continue
        for tag in _MEDIA_TAGS:
            text = text.removeprefix(tag)
        shown.append({"role": "user" if role == user else "assistant", "content": text})
    return shown


def stream_reply(session: ChatSession, settings: GenerationSettings) -> Iterator[str]:
    """Yield the growing answer to the session's pending turn while `reply` runs in a worker thread.

    The last value yielded is the whole answer (the text `reply` returns). Closing the generator early (the user
    went away or pressed stop) stops generation after the current token.
    """
    pieces: queue.Queue = queue.Queue()
    done, stop = object(), threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["reply"] = session.reply(settings, on_text=pieces.put, should_stop=stop.is_set)
        except Exception as err:  # re-raised in the caller's thread
            outcome["error"] = err
        finally:
            pieces.put(done)

    worker = threading.Thread(target=work, name="gradio-reply", daemon=True)
    worker.start()
    text = ""
    try:
        while (piece := pieces.get()) is not done:
            text += piece
            yield text
    finally:
        stop.set()
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["reply"].text


def streaming_session(base: ChatSession, max_new_tokens: int) -> StreamingSession:
    """A fresh stream on the model of `base` (nothing is loaded twice)."""
    return StreamingSession(
        base.model,
        base.tokenizer,
        base.processor,
        StreamingPolicy(),
        conv_mode=base.conv_mode,
        settings=GenerationSettings(max_new_tokens=max_new_tokens),
    )


def caption_log(make_session: Callable[[], StreamingSession], path: str, fps: float) -> Iterator[tuple[str, float]]:
    """Caption a video as it is read: yields (the log so far, the video time reached) after every batch of
    frames (as the streaming CLI reads a file).

    Each log line reads `(Video Time = 12s) Assistant: ...`. A video that cannot be read raises LlavaError,
    after the lines seen so far were yielded.
    """
    stream, lines, t = make_session(), [], 0.0
    with open_video(path) as reader:
        for batch in in_batches(timed_frames(reader, fps, stream), FILE_BATCH_FRAMES):
            lines += [str(event) for event in stream.push_timed_frames(batch)]
            t = batch[-1][0]
            yield "\n".join(lines), t
        lines += [str(StreamEvent(t, event.role, event.text)) for event in stream.finish()]
    if not stream.frames_seen:
        raise LlavaError(f"{Path(path).name}: no frames could be read")
    yield "\n".join(lines), t


# The timeline under the Chat tab's video: a click on a span seeks the player there (the component's js_on_load).
TIMELINE_JS = """
element.addEventListener('click', (event) => {
  const span = event.target.closest('[data-start]');
  const player = document.querySelector('#chat-video video');
  if (span && player) { player.currentTime = parseFloat(span.dataset.start); }
});
"""
TIMELINE_CSS = """
.evidence-track { position: relative; height: 30px; border-radius: 4px; background: #e5e7eb; margin: 4px 0; }
.evidence-span { position: absolute; top: 0; height: 100%; border: 0; border-radius: 4px; cursor: pointer;
  background: #2e9e4f; color: white; font-size: 12px; overflow: hidden; padding: 0; }
.evidence-list button { margin: 2px 4px 2px 0; cursor: pointer; }
"""


def evidence_timeline(evidence: Sequence[Evidence]) -> str:
    """The answer's evidence as HTML: a track over the video's length with a button per segment (the best the
    most opaque, numbered by rank) and, below it, the spans best first as buttons; each carries its start second
    in data-start (a click seeks the video there). Empty without evidence."""
    if not evidence:
        return ""
    length = max(item.end for item in evidence) or 1.0
    track, listed = [], []
    for rank, item in enumerate(evidence, start=1):
        left, width = 100 * item.start / length, 100 * (item.end - item.start) / length
        opacity = 1.0 - 0.65 * (rank - 1) / max(len(evidence) - 1, 1)
        label = f"{item.start:.1f}-{item.end:.1f} s"
        title = f"{label}, score {item.score:.3f}"
        track.append(
            f'<button class="evidence-span" data-start="{item.start:.3f}" title="{title}" '
            f'style="left:{left:.2f}%;width:{width:.2f}%;opacity:{opacity:.2f}">{rank}</button>'
        )
        listed.append(f'<button data-start="{item.start:.3f}" title="{title}">{rank}. {label}</button>')
    return (
        '<div class="evidence-timeline"><div class="evidence-track">'
        + "".join(track)
        + '</div><div class="evidence-list">Evidence, best first (click to seek): '
        + "".join(listed)
        + "</div></div>"
    )


def last_turn(session: ChatSession) -> tuple[str, str] | None:
    """The last question (without its media tag) and its answer, or None before a finished answer."""
    messages = session.conversation.messages
    if len(messages) < 2 or not messages[-1][1]:
        return None
    question = messages[-2][1]
    for tag in _MEDIA_TAGS:
        question = question.removeprefix(tag)
    return question, messages[-1][1]
