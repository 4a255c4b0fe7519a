"""A web demo: chat about a video or an image, or watch captions appear while a video is processed.

    python -m llava.serve.gradio_demo                      # the bundled demo model, http://127.0.0.1:7860
    python -m llava.serve.gradio_demo --model-path checkpoints/videollamb-llava-1.5-7b --port 8080

A thin front end over `ChatSession` and `StreamingSession`. The "Chat" tab: upload a video or an image (it is
encoded once per upload), then ask as many questions as you like; Regenerate asks the last question again,
Clear drops the turns and the media. Under the video, a timeline shows the last answer's evidence (the time spans
of the segments it rests on, best first, `llava.serve.evidence`): a click on one seeks the player there. Each
browser tab has its own conversation; all share one model (with
--static-cache it runs one request at a time: an upload, a question or a stream; the others wait). The
"Streaming" tab: upload a video and press Start: the video is read at --video-fps frames per second (default: the
checkpoint's rate, or 1 for a model that samples uniformly; --stream-fps is an older name) and a caption is
written, with its video time, whenever a scene ends. Uploads over --max-upload-mb are refused (by the server, and
with a message in the page). Binds 127.0.0.1 unless --host says otherwise; there is no
public share link. Without --model-path the bundled demo model answers; a bad model path ends in one `error:`
line and exit code 1. FFmpeg's log lines are silent unless --verbose. The model, frame sampling and generation
options are shared with every front end (see `llava.serve.options`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from llava.errors import LlavaError, report_error
from llava.logs import set_media_logging
from llava.serve.chat_session import DEMO_VIDEO, ChatSession
from llava.serve.gradio_parts import (
    TIMELINE_CSS,
    TIMELINE_JS,
    DemoSettings,
    UserChat,
    caption_log,
    chat_messages,
    evidence_timeline,
    last_turn,
    one_line,
    stream_reply,
    streaming_session,
    too_large,
)
from llava.serve.options import (
    add_inference_options,
    chat_session_from_options,
    check_inference_options,
    generation_settings,
)

EXAMPLES = [(DEMO_VIDEO, "What was in the first scene?")]
NO_MEDIA = "No video or image loaded: questions are answered from text alone."
MODEL = "model"  # with one_model_request, the concurrency group of every event that runs the model


class ChatHandlers:
    """The Chat tab's event handlers; each tab's `UserChat` lives in a gr.State and is made on first use."""

    def __init__(self, session_factory: Callable[[], ChatSession], settings: DemoSettings) -> None:
        self.session_factory, self.settings = session_factory, settings

    def _user(self, user: UserChat | None) -> UserChat:
        return user if user is not None else UserChat(self.session_factory())

    def load_video(self, video: str | None, user: UserChat | None):
        return self._load(video, "video", user)

    def load_image(self, image: str | None, user: UserChat | None):
        return self._load(image, "image", user)

    def _load(self, path: str | None, kind: str, user: UserChat | None):
        """Encode a newly uploaded video or image once; emptying its input drops the media and the turns.

        Returns (user state, chatbot, status line, video, image); loading one kind empties the other's input.
        """
        user = self._user(user)
        if path == user.source or (path is None and user.kind != kind):  # nothing new for this input
            return user, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        user.session.media, user.source, user.kind = None, None, None
        user.session.reset()
        if path is None:
            return user, [], NO_MEDIA, gr.skip(), gr.skip()
        problem = too_large(path, self.settings.max_upload_mb)
        if problem is None:
            try:
                user.session.load_video(path) if kind == "video" else user.session.load_image(path)
                user.source, user.kind = path, kind
            except (LlavaError, OSError) as err:
                problem = f"{Path(path).name}: this {kind} cannot be read ({one_line(err)})"
        if problem is not None:
            gr.Warning(problem)
            return user, [{"role": "assistant", "content": f"⚠️ {problem}"}], f"⚠️ {problem}", None, None
        status = f"Loaded {kind} **{Path(path).name}**: ask about it below."
        return user, [], status, gr.skip() if kind == "video" else None, gr.skip() if kind == "image" else None

    def _answer(self, user: UserChat) -> Iterator[tuple]:
        """Stream the pending answer into the chatbot: yields (chatbot, user state)."""
        try:
            for text in stream_reply(user.session, self.settings.generation):
                yield chat_messages(user.session, pending=text), user
        except LlavaError as err:
            gr.Warning(one_line(err))
            user.session.conversation.messages[-1][1] = f"⚠️ {one_line(err)}"
            yield chat_messages(user.session), user

    def send(self, question: str, user: UserChat | None):
        """Ask a question about the loaded media; yields (chatbot, question box, user state)."""
        user = self._user(user)
        question = (question or "").strip()
        if not question:
            gr.Warning("Type a question first.")
            yield chat_messages(user.session), gr.skip(), user
            return
        user.session.add_question(question)
        for chat, state in self._answer(user):
            yield chat, "", state

    def regenerate(self, user: UserChat | None):
        """Answer the last question again (the same answer under greedy decoding); yields (chatbot, user state)."""
        user = self._user(user)
        messages = user.session.conversation.messages
        if not messages:
            gr.Warning("Nothing to regenerate yet: ask a question first.")
            yield [], user
            return
        messages[-1][1] = None
        yield from self._answer(user)

    def timeline(self, user: UserChat | None) -> str:
        """The last answer's evidence about the loaded video as the timeline's HTML (empty before an answer, or for
        an image or text alone)."""
        if user is None or user.kind != "video":
            return ""
        turn = last_turn(user.session)
        return "" if turn is None else evidence_timeline(user.session.evidence(*turn))

    def clear(self, user: UserChat | None):
        """Drop the turns and the media: (user state, chatbot, question, video, image, status)."""
        user = self._user(user)
        user.session.media, user.source, user.kind = None, None, None
        user.session.reset()
        return user, [], "", None, None, NO_MEDIA


def stream_captions(session_factory: Callable[[], ChatSession], settings: DemoSettings):
    """The Streaming tab's Start handler: yields (caption log, status) after every frame read."""

    def run(video: str | None) -> Iterator[tuple[str, str]]:
        if not video:
            gr.Warning("Upload a video first.")
            yield gr.skip(), "Upload a video first."
            return
        problem = too_large(video, settings.max_upload_mb)
        if problem is not None:
            gr.Warning(problem)
            yield "", f"⚠️ {problem}"
            return
        log = ""
        make = lambda: streaming_session(session_factory(), settings.stream_max_new_tokens)  # noqa: E731
        try:
            for log, t in caption_log(make, video, settings.stream_fps):
                yield log, f"Processing… video time {t:g}s"
        except (LlavaError, OSError) as err:
            message = f"{Path(video).name}: this video cannot be read ({one_line(err)})"
            gr.Warning(message)
            yield log, f"⚠️ {message}"
            return
        yield log, f"Done: {log.count(chr(10)) + 1 if log else 0} caption(s)."

    return run


def build_demo(session_factory: Callable[[], ChatSession], settings: DemoSettings | None = None) -> gr.Blocks:
    """The app. `session_factory()` gives a new session on the shared model (e.g. `base.fork`)."""
    settings = settings or DemoSettings()
    group = MODEL if settings.one_model_request else None  # None: each event has its own queue slot
    chat = ChatHandlers(session_factory, settings)
    with gr.Blocks(title="VideoLLaMB", analytics_enabled=False) as demo:
        gr.Markdown("# VideoLLaMB\nLong-video understanding with recurrent memory bridges.")
        with gr.Tab("Chat"):
            user = gr.State(None)
            with gr.Row():
                with gr.Column(scale=2):
                    status = gr.Markdown(NO_MEDIA, elem_id="media-status")
                    video = gr.Video(label="Video", sources=["upload"], height=320, elem_id="chat-video")
                    timeline = gr.HTML(
                        "", elem_id="evidence-timeline", js_on_load=TIMELINE_JS, css_template=TIMELINE_CSS
                    )
                    with gr.Accordion("Image (instead of a video)", open=False):
                        image = gr.Image(
                            label="Image", type="filepath", sources=["upload"], height=240, elem_id="chat-image"
                        )
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        label="Chat", height=420, elem_id="chatbot", feedback_options=None, buttons=["copy", "copy_all"]
                    )
                    question = gr.Textbox(
                        label="Question", placeholder="What was in the first scene?", lines=1, elem_id="question"
                    )
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send-btn")
                        regenerate = gr.Button("Regenerate", elem_id="regenerate-btn")
                        clear = gr.Button("Clear", elem_id="clear-btn")
            examples = [[str(path), text] for path, text in EXAMPLES if Path(path).is_file()]
            if examples:
                gr.Examples(examples, inputs=[video, question], label="Examples")
            media_out = [user, chatbot, status, video, image]
            video.change(chat.load_video, [video, user], media_out, api_name="load_video", concurrency_id=group)
            image.change(chat.load_image, [image, user], media_out, api_name="load_image", concurrency_id=group)
            ask: dict[str, Any] = dict(
                fn=chat.send, inputs=[question, user], outputs=[chatbot, question, user], concurrency_id=group
            )
            answered = [
                send.click(**ask, api_name="send"),
                question.submit(**ask, api_visibility="private"),
                regenerate.click(chat.regenerate, [user], [chatbot, user], api_name="regenerate", concurrency_id=group),
            ]
            for event in answered:  # the answer's evidence on the timeline, once it is complete
                event.then(chat.timeline, [user], [timeline], api_visibility="private", concurrency_id=group)
            clearing: dict[str, Any] = dict(
                fn=chat.clear, inputs=[user], outputs=[user, chatbot, question, video, image, status]
            )
            clear.click(**clearing, api_name="clear")
            chatbot.clear(**clearing, api_visibility="private")  # the chatbot's own trash icon does the same
            for emptied in (video.change, image.change, clear.click, chatbot.clear):
                emptied(lambda: "", None, [timeline], api_visibility="private")
        with gr.Tab("Streaming"):
            gr.Markdown(
                f"Captions are written while the video is read ({settings.stream_fps:g} frame(s) per "
                "second), one line per scene, with the video time it ended at."
            )
            with gr.Row():
                with gr.Column(scale=2):
                    stream_video = gr.Video(label="Video", sources=["upload"], height=320, elem_id="stream-video")
                    with gr.Row():
                        start = gr.Button("Start", variant="primary", elem_id="start-btn")
                        stop = gr.Button("Stop", elem_id="stop-btn")
                with gr.Column(scale=3):
                    stream_status = gr.Markdown("Upload a video and press Start.", elem_id="stream-status")
                    captions = gr.Textbox(label="Captions", lines=14, max_lines=30, elem_id="captions")
            running = start.click(
                stream_captions(session_factory, settings),
                [stream_video],
                [captions, stream_status],
                api_name="stream",
                concurrency_id=group,
            )
            stop.click(None, cancels=[running])
    demo.queue(default_concurrency_limit=1)
    return demo


def serve(demo: gr.Blocks, settings: DemoSettings, host: str = "127.0.0.1", port: int | None = 7860, **kwargs):
    """Launch the app (what `main` does); extra keyword arguments go to `Blocks.launch`."""
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=settings.max_upload_bytes,
        footer_links=["api"],
        **kwargs,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.serve.gradio_demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 = every interface)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest video or image accepted")
    add_inference_options(parser, fps_aliases=("--stream-fps",))
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_inference_options(parser, args)
    checks = {"--max-upload-mb": args.max_upload_mb > 0, "--port": 0 < args.port < 65536}
    for flag, ok in checks.items():
        if not ok:
            parser.error(f"{flag} is out of range")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_media_logging(args.verbose)
    try:
        base = chat_session_from_options(args)
    except (LlavaError, OSError) as err:
        return report_error(err)
    settings = DemoSettings(
        max_upload_mb=args.max_upload_mb,
        generation=generation_settings(args),
        stream_fps=base.sampling.stream_fps,
        one_model_request=args.static_cache,
    )
    try:
        serve(build_demo(base.fork, settings), settings, host=args.host, port=args.port)
    except OSError as err:  # the port is taken, the address cannot be bound
        return report_error(err)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
