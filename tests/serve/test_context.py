"""The model's context bounds every turn: a prompt (text and visual tokens) that does not fit is refused with the
numbers (HTTP 400 in the API, one error line in the CLI) before anything is generated, and an answer stops where
the context ends however large max_tokens is (the tiny checkpoint's context is 1024 tokens)."""

import time
from dataclasses import dataclass, field

import httpx
import pytest

from llava.serve import cli
from llava.serve.api import ApiSettings, create_app
from llava.serve.chat_session import ChatSession, ContextTooLong, GenerationSettings
from llava.serve.streaming_session import StreamingSession
from llava.video.decode import load_video

from .test_api import serving
from .test_cli import assert_user_error

MODEL = "tiny-context"
ROOM = 5  # tokens of context left after the near-limit prompt


@dataclass
class CountingSession(ChatSession):
    """Counts the generations of this session and of its forks (each request works on a fork; forks share the
    list)."""

    replies: list[int] = field(default_factory=list)

    def reply(self, *args, **kwargs):
        self.replies.append(1)
        return super().reply(*args, **kwargs)


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    return ChatSession.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture
def counting(session):
    return CountingSession(model=session.model, tokenizer=session.tokenizer, processor=session.processor)


def prompt_tokens(session: ChatSession, question: str) -> int:
    fresh = session.fork(media=None)
    fresh.add_question(question)
    try:
        return fresh.prompt().tokens
    except ContextTooLong as err:
        return err.prompt_tokens


def near_limit_question(session: ChatSession, room: int) -> str:
    """A text question whose prompt leaves exactly `room` tokens of the context ("a " is one token each)."""
    target = session.context_length - room
    words = target - prompt_tokens(session, "")
    while prompt_tokens(session, "a " * words) > target:
        words -= 1
    while prompt_tokens(session, "a " * words) < target:
        words += 1
    assert prompt_tokens(session, "a " * words) == target
    return "a " * words


@pytest.fixture(scope="module")
def near_limit(session):
    return near_limit_question(session, ROOM)


def post(url: str, question: str, **extra) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


@pytest.mark.parametrize("stream", [False, True])
def test_api_answers_400_naming_the_limit_to_a_prompt_over_the_context(counting, stream):
    with serving(create_app(counting, ApiSettings(model_id=MODEL))) as url:
        started = time.monotonic()
        response = post(url, "red " * 3400, max_tokens=8, stream=stream)  # over 10 000 tokens
        elapsed = time.monotonic() - started
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    prompt = prompt_tokens(counting, "red " * 3400)
    assert prompt > 10_000
    assert f"the prompt is {prompt} tokens long" in error["message"] and "context holds 1024 tokens" in error["message"]
    assert counting.replies == [] and elapsed < 5  # refused before any generation


def test_api_answer_stops_where_the_context_ends(counting, near_limit):
    with serving(create_app(counting, ApiSettings(model_id=MODEL))) as url:
        response = post(url, near_limit, max_tokens=1000)
    assert response.status_code == 200, response.text
    usage, choice = response.json()["usage"], response.json()["choices"][0]
    assert usage["prompt_tokens"] == 1024 - ROOM
    assert 1 <= usage["completion_tokens"] <= ROOM and usage["total_tokens"] <= 1024
    assert choice["finish_reason"] == ("length" if usage["completion_tokens"] == ROOM else "stop")


def test_a_prompt_that_fills_the_context_exactly_is_refused(session):
    full = session.fork(media=None)
    full.add_question(near_limit_question(session, 0))
    with pytest.raises(ContextTooLong, match="context holds 1024 tokens"):
        full.reply(GenerationSettings(max_new_tokens=1))


def test_session_reply_caps_max_new_tokens_to_the_context(session, near_limit):
    fresh = session.fork(media=None)
    fresh.add_question(near_limit)
    reply = fresh.reply(GenerationSettings(max_new_tokens=10_000))
    assert reply.prompt_tokens + reply.completion_tokens <= session.context_length
    assert reply.completion_tokens <= ROOM


def test_visual_tokens_count_towards_the_context(session, tiny_video):
    with_video = session.fork(media=None)
    with_video.load_video(tiny_video)
    visual = int(with_video.media.shape[0])
    question = near_limit_question(session, visual // 2)  # fits as text, not with the video in front
    with_video.add_question(question)
    with pytest.raises(ContextTooLong) as info:
        with_video.prompt()
    assert info.value.prompt_tokens > session.context_length and info.value.context == 1024


def test_cli_query_over_the_context_is_one_error_line(tiny_checkpoint, tiny_video, capsys):
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query",
                     "red " * 3400, "--device", "cpu", "--max-new-tokens", "4"])
    assert_user_error(capsys, code, "tokens long", "context holds 1024 tokens")


def test_streaming_answers_stop_where_the_context_ends(session, tiny_video, monkeypatch):
    stream = StreamingSession(session.model, session.tokenizer, session.processor,
                              settings=GenerationSettings(max_new_tokens=10_000))
    frames, seconds = load_video(tiny_video, num_frames=8)
    stream.push_frames(frames, seconds)
    calls = []
    generate = session.model.generate

    def watched(input_ids, **kwargs):
        output = generate(input_ids, **kwargs)
        prompt = input_ids.shape[1] - 1 + max(len(f) for f in kwargs["visual_features"])  # (the <video> id)
        calls.append((prompt, kwargs["max_new_tokens"], output.shape[1]))
        return output

    monkeypatch.setattr(session.model, "generate", watched)  # the test watches the model; the library is as is
    stream.ask("a " * 500)
    ((prompt, allowed, produced),) = calls
    assert 1024 - prompt < 10_000 and allowed == 1024 - prompt and produced <= allowed
    with pytest.raises(ContextTooLong, match="context holds 1024 tokens"):
        stream.ask("red " * 3400)
