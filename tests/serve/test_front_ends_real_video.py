"""Every serving front end answers about every file of the real-video corpus (tests/media_corpus.py), at its own
defaults: the chat CLI, the streaming CLI, the OpenAI-compatible API, and the gradio demo's Chat and Streaming tabs.

The issue "Real video in": every 720p-or-larger video crashed every front end at the default 24 frames, because no
test met a real-size video at default settings. So nothing here passes --model-path, --num-frames, --fps or any
other sampling setting: each front end runs as a user starts it, on the bundled demo model
(checkpoints/videollamb-tiny-shapes, 24 frames uniformly for a chat, 1 frame per second for a stream), which is the
default model of every front end and answers in well under a second on a CPU. Each front end gets:

- a `..._720p_at_defaults` test on the corpus's `h264_720p_bframes` file (1280x720 H.264 with B-frames) with
  stronger checks (the 24 frames the checkpoint asks for, the whole answer path);
- a case for every other corpus file (the 4K file once per front end), which must be answered, not refused.

Where a front end reports times (the streaming CLI's history JSON and the Streaming tab's caption log), every time
must be the presentation time of one of the file's frames in the reference decode (`media_corpus.reference_times`,
not index / fps: the variable-frame-rate, audio-first and start-offset files tell these apart) and lie within the
file. Models load once per module where the front end allows it (the API app and the gradio app are each built
once by their own `main`); the CLIs' `main` loads the demo model on each call, as a user's command does.
"""

from __future__ import annotations

import functools
import io
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from llava.model.config import VideoLLaMBConfig
from llava.serve import api, cli, cli_streaming, chat_session, gradio_demo, options
from llava.serve.chat_session import ChatSession
from tests.media_corpus import CORPUS_NAMES, reference_times

HD = "h264_720p_22s"  # long enough for the demo model's 1 frame per second; the 2 s 720p file is among the others
OTHERS = [name for name in CORPUS_NAMES if name != HD]  # the long 720p file has its own test per front end
FILES_ONLY = [name for name in OTHERS if name != "frame_folder_png"]  # what can be uploaded or sent as a URL
QUESTION = "What is in the video?"
DEMO_SAMPLING = VideoLLaMBConfig.from_pretrained(chat_session.DEMO_CHECKPOINT).frame_sampling
CRASH_FRAMES = 19  # the 720p crash needed this many frames or more at once
CAPTION_LINE = re.compile(r"^\(Video Time = ([0-9.e+-]+)s\) Assistant: (.+)$")
TIME_TOL = 1e-3  # seconds: frames of the corpus are at least 1/30 s apart
PROGRESS = re.compile(r"^Processing… video time ([0-9.e+-]+)s$")
PRINTED_TOL = 1e-4  # the caption lines print times with 6 significant digits


def test_the_demo_model_samples_enough_frames_to_meet_the_720p_crash(corpus):
    """The 720p crash needed 19 or more frames at once; the defaults tested here must sample that many of the file."""
    taken = DEMO_SAMPLING.indices(np.asarray(corpus[HD].intended_times), 10.0)
    assert len(taken) >= CRASH_FRAMES, len(taken)


@pytest.fixture(autouse=True)
def empty_stdin(monkeypatch):
    """The chat and streaming CLIs read questions from stdin: none here."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


@functools.lru_cache(maxsize=None)
def frame_times(path: Path) -> np.ndarray:
    """Presentation times of every frame of the file, from the plain sequential reference decode."""
    return reference_times(path)


def assert_presentation_times(times: list[float], path: Path, tol: float = TIME_TOL) -> None:
    """Every time is that of one of the file's frames (so within the file: 0 .. its last frame)."""
    reference = frame_times(path)
    assert times, f"{path.name}: no times reported"
    for t in times:
        nearest = float(reference[np.argmin(np.abs(reference - t))])
        assert abs(nearest - t) <= tol, f"{path.name}: {t} s is no frame's presentation time (nearest {nearest})"
        assert -tol <= t <= reference[-1] + tol, (path.name, t, reference[-1])


def assert_reached_the_end(last_time: float, path: Path, fps: float = 1.0, tol: float = TIME_TOL) -> None:
    """The last frame streamed at `fps` is a frame of the file within one sampling interval of its last frame."""
    reference = frame_times(path)
    assert_presentation_times([last_time], path, tol)
    assert reference[-1] - last_time < 1.0 / fps + tol, (path.name, last_time, reference[-1])


def assert_real_timeline(entry, times: list[float], last_time: float, tol: float = TIME_TOL) -> None:
    """What telling presentation times from index / nominal rate shows, for the files where they differ."""
    if "audio_first" in entry.tags:  # the video starts at 0.5 s: nothing is said before it
        assert min(times) >= entry.intended_times[0] - tol, times
    if "vfr" in entry.tags:  # 25 fps, then 4 fps from 2 s: the frame at 3 s is frame 54 (54 / 25 = 2.16 s)
        assert last_time == pytest.approx(3.0, abs=tol)
    if "gaps" in entry.tags:  # gaps of 0.28 s and 0.52 s: the frame at 3 s is frame 55 (55 / 25 = 2.2 s)
        assert last_time == pytest.approx(3.0, abs=tol)


def assert_no_error(err: str) -> None:
    assert "Traceback" not in err and not any(line.startswith("error:") for line in err.splitlines()), err


# ================================================================ the chat CLI: llava.serve.cli
class CountingSession(ChatSession):
    """The CLI's session, remembered (it opens its session through serve/options)."""

    created: list[ChatSession] = []

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        session = super().from_pretrained(*args, **kwargs)
        cls.created.append(session)
        return session


def cli_answer(path: Path, capsys) -> str:
    code = cli.main(["--video-file", str(path), "--query", QUESTION])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert_no_error(err)
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].strip(), out
    return lines[0]


def test_cli_answers_about_720p_at_defaults(corpus, capsys, monkeypatch):
    """`python -m llava.serve.cli --video-file 720p.mp4 --query ...`: the demo model, its own sampling."""
    monkeypatch.setattr(CountingSession, "created", [])
    monkeypatch.setattr(options, "ChatSession", CountingSession)
    cli_answer(corpus[HD].path, capsys)
    (session,) = CountingSession.created
    assert session.sampling == DEMO_SAMPLING and session.media is not None


@pytest.mark.parametrize("name", OTHERS)
def test_cli_answers_about_every_corpus_file(corpus, capsys, name):
    cli_answer(corpus[name].path, capsys)


# ================================================================ the streaming CLI: llava.serve.cli_streaming
def stream_history(path: Path, out: Path, capsys) -> tuple[dict, float]:
    """Stream the file at the CLI's defaults; the history record (checked) and the time of the last frame."""
    history, state = out / "history.json", out / "state.pt"
    code = cli_streaming.main(["--video-file", str(path), "--output", str(history), "--save-state", str(state)])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert_no_error(err)
    record = json.loads(history.read_text())
    assert record["ended"] == "finished" and record["video"] == str(path) and record["fps"] == 1.0, record
    entries = record["history"]
    assert entries, record
    assert all(e["role"] == "Assistant" and e["text"].strip() for e in entries), entries
    times = [e["time"] for e in entries]
    assert times == sorted(times)
    assert_presentation_times(times, path)
    said = [CAPTION_LINE.match(line) for line in printed.splitlines() if line.startswith("(Video Time")]
    assert all(said) and [m[2] for m in said] == [e["text"] for e in entries], printed
    last_time = float(torch.load(state, weights_only=True)["last_time"])
    assert_reached_the_end(last_time, path)
    assert times[-1] <= last_time + TIME_TOL
    return record, last_time


def test_streaming_cli_captions_720p_at_defaults(corpus, tmp_path, capsys):
    """`python -m llava.serve.cli_streaming --video-file 720p.mp4`: the demo model, 1 frame per second, so the
    frames at 0 s, 1 s, ..., 21 s (the file is 22 s long); the last caption is said at the last frame streamed."""
    record, last_time = stream_history(corpus[HD].path, tmp_path, capsys)
    assert last_time == pytest.approx(21.0, abs=TIME_TOL)
    assert record["history"][-1]["time"] == pytest.approx(last_time, abs=TIME_TOL)


@pytest.mark.parametrize("name", OTHERS)
def test_streaming_cli_captions_every_corpus_file_at_its_presentation_times(corpus, tmp_path, capsys, name):
    record, last_time = stream_history(corpus[name].path, tmp_path, capsys)
    assert_real_timeline(corpus[name], [e["time"] for e in record["history"]], last_time)


# ================================================================ the API: llava.serve.api
@pytest.fixture(scope="module")
def api_client(corpus):
    """The app `python -m llava.serve.api --allowed-dir CORPUS` serves (uvicorn.run captured), in-process."""
    served = {}
    with pytest.MonkeyPatch.context() as patch:
        import uvicorn

        patch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
        assert api.main(["--allowed-dir", str(corpus.folder), "--log-level", "warning"]) == 0
    with TestClient(served["app"], raise_server_exceptions=False) as client:
        yield client


def api_answer(client: TestClient, path: Path) -> dict:
    body = {"model": chat_session.DEMO_CHECKPOINT.name, "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": path.as_uri()}}, {"type": "text", "text": QUESTION}]}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"].strip(), choice
    return response.json()


def test_api_answers_about_720p_at_defaults(api_client, corpus):
    """POST /v1/chat/completions with a file:// video_url, on the server `main` builds with no options but
    --allowed-dir: the demo model and its own sampling, the default max_tokens (256)."""
    assert api_client.app.state.server.session.sampling == DEMO_SAMPLING
    misses = api_client.get("/v1/stats").json()["media_cache"]["misses"]
    answer = api_answer(api_client, corpus[HD].path)
    assert answer["choices"][0]["finish_reason"] == "stop" and answer["usage"]["completion_tokens"] >= 1
    assert api_client.get("/v1/stats").json()["media_cache"]["misses"] == misses + 1  # decoded and encoded here


@pytest.mark.parametrize("name", FILES_ONLY)  # a folder of frames is no media file: the API takes files and URLs
def test_api_answers_about_every_corpus_file(api_client, corpus, name):
    api_answer(api_client, corpus[name].path)


# ================================================================ the gradio demo: llava.serve.gradio_demo
@pytest.fixture(scope="module")
def demo():
    """The app `python -m llava.serve.gradio_demo` builds with no options (its launch captured): name -> the
    function each button calls, and the app itself."""
    built = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gradio_demo, "serve", lambda app, settings, **kwargs: built.update(app=app, settings=settings))
        assert gradio_demo.main([]) == 0
    handlers = {fn.api_name: fn.fn for fn in built["app"].fns.values() if fn.api_name}
    return handlers, built["app"], built["settings"]


def gradio_chat(handlers: dict, path: Path):
    """Upload the video in the Chat tab and ask; the user's state and the chatbot."""
    user, chatbot, status, _, _ = handlers["load_video"](str(path), None)
    assert status.startswith("Loaded video"), status
    *_, (chatbot, box, user) = list(handlers["send"](QUESTION, user))
    assert [m["role"] for m in chatbot] == ["user", "assistant"] and box == "", chatbot
    answer = chatbot[-1]["content"]
    assert answer.strip() and not answer.startswith("⚠️"), answer
    return user, chatbot


def gradio_stream(handlers: dict, path: Path) -> tuple[list[float], float]:
    """Start the Streaming tab on the video; the caption times (checked to be the file's presentation times) and
    the time of the last frame read (the status shows the video time reached after each batch of frames)."""
    *progress, (log, status) = list(handlers["stream"](str(path)))
    assert status.startswith("Done:"), status
    reached = [PROGRESS.match(status) for _, status in progress]
    assert reached and all(reached), progress
    last_time = float(reached[-1][1])
    assert_reached_the_end(last_time, path, tol=PRINTED_TOL + TIME_TOL)
    lines = [CAPTION_LINE.match(line) for line in log.splitlines()]
    assert lines and all(lines), log
    times = [float(m[1]) for m in lines]
    assert status == f"Done: {len(lines)} caption(s)."
    assert times == sorted(times)
    assert_presentation_times(times, path, tol=PRINTED_TOL + TIME_TOL)
    assert times[-1] <= last_time + PRINTED_TOL
    return times, last_time


def test_gradio_chat_tab_answers_about_720p_at_defaults(demo, corpus):
    """The Chat tab of the app `main` builds with no options: the demo model, its own sampling."""
    handlers, _, settings = demo
    user, _ = gradio_chat(handlers, corpus[HD].path)
    assert user.session.sampling == DEMO_SAMPLING and user.session.media is not None
    assert settings.generation.max_new_tokens == 256  # the demo's default answer length


def test_gradio_streaming_tab_captions_720p_at_defaults(demo, corpus):
    """The Streaming tab of the app `main` builds with no options: 1 frame per second, frames at 0 s, 1 s, ...,
    21 s; the last caption is said at the last one."""
    handlers, _, settings = demo
    assert settings.stream_fps == 1.0
    times, last_time = gradio_stream(handlers, corpus[HD].path)
    assert times[-1] == pytest.approx(21.0, abs=PRINTED_TOL) and last_time == pytest.approx(21.0, abs=PRINTED_TOL)


def test_gradio_720p_upload_over_http_is_answered_in_both_tabs(demo, corpus):
    """The same app launched on a loopback port and driven by gradio_client: the 720p file is uploaded (as a
    browser does), then asked about in the Chat tab and captioned in the Streaming tab."""
    from gradio_client import Client, handle_file

    _, app, settings = demo
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gradio_demo.serve(app, settings, port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        chat, status, _, _ = client.predict(video=handle_file(corpus[HD].path), api_name="/load_video")
        assert chat == [] and "Loaded video" in status and HD in status, status
        chat, _ = client.predict(question=QUESTION, api_name="/send")
        assert [m["role"] for m in chat] == ["user", "assistant"], chat
        answer = text_of(chat[-1]["content"])
        assert answer.strip() and "⚠️" not in answer, chat
        log, status = client.predict(video=handle_file(corpus[HD].path), api_name="/stream")
        assert status.startswith("Done:") and log, status
        times = [float(CAPTION_LINE.match(line)[1]) for line in log.splitlines()]
        assert_presentation_times(times, corpus[HD].path, tol=PRINTED_TOL + TIME_TOL)
    finally:
        app.close()


def text_of(content) -> str:
    """A chatbot message's text as gradio_client returns it (a string, or a list of parts)."""
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


@pytest.mark.parametrize("name", FILES_ONLY)  # a folder of frames cannot be uploaded to the demo
def test_gradio_chat_tab_answers_about_every_corpus_file(demo, corpus, name):
    handlers, _, _ = demo
    gradio_chat(handlers, corpus[name].path)


@pytest.mark.parametrize("name", FILES_ONLY)
def test_gradio_streaming_tab_captions_every_corpus_file_at_its_presentation_times(demo, corpus, name):
    handlers, _, _ = demo
    times, last_time = gradio_stream(handlers, corpus[name].path)
    assert_real_timeline(corpus[name], times, last_time, tol=PRINTED_TOL + TIME_TOL)
