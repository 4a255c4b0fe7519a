"""python -m llava.serve.api: the OpenAI-compatible server on a tiny random checkpoint, driven by the official
`openai` client (and raw httpx for malformed requests). Servers run in-process (uvicorn in a thread) on free
127.0.0.1 ports; `main` is run with uvicorn.run captured, and its app served the same way."""

import base64
import functools
import http.server
import json
import shutil
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
import uvicorn
from openai import OpenAI

from llava.serve import api
from llava.serve.api import ApiSettings, create_app
from llava.serve.chat_session import ChatSession, GenerationSettings

KEY = "test-key"
MODEL = "tiny-test-model"
MAX_TOKENS = 8
GREEDY = GenerationSettings(max_new_tokens=MAX_TOKENS, temperature=0.0)
Q1, Q2 = "What was in the first scene?", "How many scenes are there?"


@contextmanager
def serving(app):
    """Run `app` with uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def session(tiny_checkpoint):
    return ChatSession.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory, tiny_video, tiny_image):
    """The one allowed directory: the video, the image, and a symlink that points outside it."""
    folder = tmp_path_factory.mktemp("allowed")
    shutil.copy(tiny_video, folder / "clip.mp4")
    shutil.copy(tiny_image, folder / "square.png")
    secret = tmp_path_factory.mktemp("outside") / "secret.mp4"
    shutil.copy(tiny_video, secret)
    (folder / "escape.mp4").symlink_to(secret)
    return folder


@pytest.fixture(scope="module")
def base_url(session, media_dir):
    settings = ApiSettings(model_id=MODEL, api_key=KEY, allowed_dirs=(media_dir,), max_body_mb=1, cache_size=4)
    with serving(create_app(session, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http_media(media_dir):
    """A plain http.server on 127.0.0.1 serving the allowed directory."""
    handler = functools.partial(QuietHandler, directory=str(media_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def video_part(url):
    return {"type": "video_url", "video_url": {"url": url}}


def ask(client, question, media=None, model=MODEL, **kwargs):
    content = [media, {"type": "text", "text": question}] if media else question
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=MAX_TOKENS, temperature=0, **kwargs
    )


def reference(session, questions, video=None, image=None):
    fresh = session.fork(media=None)
    if video is not None:
        fresh.load_video(video)
    if image is not None:
        fresh.load_image(image)
    return [fresh.ask(q, GREEDY) for q in questions], fresh


def stats(base_url):
    return httpx.get(f"{base_url}/v1/stats", headers={"Authorization": f"Bearer {KEY}"}).json()


def test_models_list(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].object == "model"


def test_video_by_file_url_matches_the_session(client, session, media_dir):
    response = ask(client, Q1, video_part((media_dir / "clip.mp4").as_uri()))
    (expected,), fresh = reference(session, [Q1], video=media_dir / "clip.mp4")
    assert response.object == "chat.completion"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == expected
    assert response.choices[0].finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > fresh.media.shape[0]  # the visual tokens count
    assert 1 <= usage.completion_tokens <= MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_base64_data_url_gives_the_same_answer(client, media_dir):
    by_file = ask(client, Q1, video_part((media_dir / "clip.mp4").as_uri()))
    payload = base64.b64encode((media_dir / "clip.mp4").read_bytes()).decode()
    by_data = ask(client, Q1, video_part(f"data:video/mp4;base64,{payload}"))
    assert by_data.choices[0].message.content == by_file.choices[0].message.content


def test_http_url_gives_the_same_answer(client, base_url, media_dir, http_media):
    by_file = ask(client, Q1, video_part((media_dir / "clip.mp4").as_uri()))
    by_http = ask(client, Q1, video_part(f"{http_media}/clip.mp4"))
    assert by_http.choices[0].message.content == by_file.choices[0].message.content
    missing = post_part(base_url, video_part(f"{http_media}/missing.mp4"))
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "download_failed"


def test_image_question(client, session, media_dir):
    payload = base64.b64encode((media_dir / "square.png").read_bytes()).decode()
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}
    response = ask(client, "Describe the image.", part)
    (expected,), _ = reference(session, ["Describe the image."], image=media_dir / "square.png")
    assert response.choices[0].message.content == expected


def test_multi_turn_replays_the_history(client, session, media_dir):
    (first, second), fresh = reference(session, [Q1, Q2], video=media_dir / "clip.mp4")
    messages = [
        {"role": "user", "content": [video_part((media_dir / "clip.mp4").as_uri()), {"type": "text", "text": Q1}]},
        {"role": "assistant", "content": first},
        {"role": "user", "content": Q2},
    ]
    response = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS, temperature=0)
    assert response.choices[0].message.content == second
    prompt = fresh.conversation.get_prompt()
    assert prompt.count("<video>") == 1 and prompt.index("<video>") < prompt.index(Q1) < prompt.index(Q2)


def test_text_only_question(client, base_url):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}],
        max_tokens=4,
    )
    assert raw.headers["x-media-cache"] == "none"
    assert raw.parse().usage.completion_tokens <= 4


def test_stream_concatenates_to_the_answer(client, media_dir):
    part = video_part((media_dir / "clip.mp4").as_uri())
    whole = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [part, {"type": "text", "text": Q2}]}], max_tokens=48
    )
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [part, {"type": "text", "text": Q2}]}], max_tokens=48,
        stream=True, stream_options={"include_usage": True},
    ))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert sum(bool(t) for t in texts) >= 1
    assert "".join(texts) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_raw_stream_ends_with_done(base_url, media_dir):
    response = post_part(base_url, video_part((media_dir / "clip.mp4").as_uri()), stream=True)
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.splitlines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: "):])
    assert last["choices"][0]["finish_reason"] in ("stop", "length") and last["choices"][0]["delta"] == {}


def test_follow_up_reuses_the_encoded_video(client, base_url, media_dir):
    part = video_part((media_dir / "clip.mp4").as_uri())
    ask(client, Q1, part)
    before = stats(base_url)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": [part, {"type": "text", "text": Q2}]}], max_tokens=4
    )
    after = stats(base_url)
    assert raw.headers["x-media-cache"] == "hit"
    assert after["media_encodes"] == before["media_encodes"]
    assert after["media_cache"]["hits"] == before["media_cache"]["hits"] + 1


def post_part(base_url, part, stream=False):
    """A one-question request holding `part`, sent with raw httpx."""
    body = {"model": MODEL, "max_tokens": 4, "stream": stream,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": "Hi"}]}]}
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def test_wrong_or_missing_key_is_401(base_url):
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0).models.list()
    response = httpx.get(f"{base_url}/v1/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def post_raw(base_url, content: bytes):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    return httpx.post(f"{base_url}/v1/chat/completions", content=content, headers=headers, timeout=60)


def user_body(content, **extra) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}], **extra}).encode()


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (json.dumps({"model": MODEL}).encode(), "missing_messages"),
        (user_body([{"type": "audio", "x": 1}]), "invalid_content_part"),
        (json.dumps({"messages": [{"role": "assistant", "content": "hi"}]}).encode(), "invalid_messages"),
        (user_body("hi", max_tokens=0), "invalid_parameter"),
        (user_body([video_part("data:video/mp4;base64,bm90IGEgdmlkZW8=")]), "invalid_media"),  # "not a video"
        (user_body([video_part("data:video/mp4;base64,%%%")]), "invalid_data_url"),
        (user_body([video_part("ftp://x/y.mp4")]), "invalid_url"),
    ],
)
def test_malformed_requests_are_400(base_url, body, code):
    response = post_raw(base_url, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == code and error["message"]


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])


def test_oversize_body_is_413(base_url):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * (3 * 2**20 // 2)}]}).encode()
    response = post_raw(base_url, body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("where", ["outside", "symlink", "dotdot"])
def test_file_outside_the_allowed_dirs_is_403(base_url, media_dir, where):
    url = {
        "outside": (media_dir.parent / "elsewhere.mp4").as_uri(),
        "symlink": (media_dir / "escape.mp4").as_uri(),
        "dotdot": f"file://{media_dir}/../{media_dir.name}-x/clip.mp4",
    }[where]
    response = post_part(base_url, video_part(url))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "path_not_allowed"


class SlowSession(ChatSession):
    def reply(self, *args, **kwargs):
        time.sleep(1.5)
        return super().reply(*args, **kwargs)


def test_overload_is_503_and_the_loop_stays_responsive(session):
    slow = SlowSession(model=session.model, tokenizer=session.tokenizer, processor=session.processor)
    settings = ApiSettings(model_id=MODEL, max_concurrency=1, queue_timeout=0.2)
    with serving(create_app(slow, settings)) as url:
        body = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
        statuses, errors = [], []

        def post():
            response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
            statuses.append(response.status_code)
            errors.append(response.json().get("error", {}).get("code"))

        first = threading.Thread(target=post)
        first.start()
        time.sleep(0.4)  # the first holds the only slot
        started = time.monotonic()
        assert httpx.get(f"{url}/v1/models", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0  # the event loop is not blocked by the generation
        post()
        first.join()
        assert sorted(statuses) == [200, 503]
        assert "server_overloaded" in errors
        after = httpx.get(f"{url}/v1/stats").json()
        assert after["rejected_overloaded"] == 1 and after["active"] == 0


def test_bad_model_path_is_one_error_line(tmp_path, capsys):
    code = api.main(["--model-path", str(tmp_path / "missing"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1


def test_main_builds_the_served_app(tiny_checkpoint, media_dir, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    argv = ["--port", "8123", "--model-path", str(tiny_checkpoint), "--device", "cpu", "--allowed-dir", str(media_dir),
            "--api-key", KEY, "--max-concurrency", "3", "--log-level", "warning"]
    assert api.main(argv) == 0
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)  # loopback unless told otherwise
    settings = served["app"].state.server.settings
    assert settings.allowed_dirs == (media_dir.resolve(),) and settings.max_concurrency == 3
    with serving(served["app"]) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        assert client.models.list().data[0].id == tiny_checkpoint.name
        answer = ask(client, Q1, video_part((media_dir / "clip.mp4").as_uri()), model=tiny_checkpoint.name)
        assert answer.usage.completion_tokens >= 1


def test_evidence_when_asked(client, session, media_dir):
    """"evidence": true adds the answer's evidence, best first, as the session computes it; a cached video keeps
    its segments; a client that does not ask sees no new field."""
    part = video_part((media_dir / "clip.mp4").as_uri())
    (expected,), fresh = reference(session, [Q1], video=media_dir / "clip.mp4")
    wanted = [item.to_dict() for item in fresh.evidence(Q1, expected)]
    assert len(wanted) == len(fresh.segments.spans) >= 1
    for _ in range(2):  # the second request finds the video in the cache
        response = ask(client, Q1, part, extra_body={"evidence": True})
        assert response.choices[0].message.content == expected
        assert response.model_extra["evidence"] == wanted
    assert "evidence" not in ask(client, Q1, part).model_extra
    chunks = list(ask(client, Q1, part, stream=True, extra_body={"evidence": True}))
    assert [c.model_extra.get("evidence") for c in chunks if c.choices and c.choices[0].finish_reason] == [wanted]


def test_evidence_of_an_image_or_text_is_empty(client, media_dir):
    payload = base64.b64encode((media_dir / "square.png").read_bytes()).decode()
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{payload}"}}
    assert ask(client, "Describe the image.", part, extra_body={"evidence": True}).model_extra["evidence"] == []
    assert ask(client, "Hello?", extra_body={"evidence": True}).model_extra["evidence"] == []


def test_evidence_must_be_a_boolean(base_url):
    response = post_raw(base_url, user_body("hi", evidence="yes"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_parameter"
