"""python -m llava.serve.gradio_demo: the app built in-process on the tiny random checkpoint, launched on a free
127.0.0.1 port, and driven by `gradio_client` (the API endpoints the buttons call) and by a real headless
Chromium over the Chrome DevTools Protocol (upload, type, click Send, read the answer, screenshot)."""

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from llava.serve import gradio_demo
from llava.serve.chat_session import ChatSession, GenerationSettings
from llava.serve.gradio_demo import NO_MEDIA, ChatHandlers, build_demo, serve
from llava.serve.evidence import Evidence
from llava.serve.gradio_parts import DemoSettings, evidence_timeline

GREEDY = GenerationSettings(max_new_tokens=8, temperature=0.0)
Q1, Q2 = "What was in the first scene?", "How many scenes are there?"
DEMO_VIDEO = Path(__file__).resolve().parents[2] / "playground" / "demo" / "shapes.mp4"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@contextmanager
def running(base: ChatSession, max_upload_mb: float = 200.0):
    """The demo on a free loopback port; yields its URL."""
    settings = DemoSettings(max_upload_mb=max_upload_mb, generation=GREEDY)
    demo = build_demo(base.fork, settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve(demo, settings, port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def expected_answers(base: ChatSession, video: Path, *questions: str) -> list[str]:
    session = base.fork()
    session.load_video(video)
    return [session.ask(q, GREEDY) for q in questions]


def texts(chat: list[dict]) -> list[tuple[str, str]]:
    """(role, text) of each chatbot message as gradio_client returns them."""
    def text(content) -> str:
        return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)
    return [(m["role"], text(m["content"])) for m in chat]


@pytest.fixture(scope="module")
def base(tiny_checkpoint):
    return ChatSession.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def url(base):
    with running(base) as address:
        yield address


def test_chat_over_the_api_matches_the_engine(base, url, tiny_video, monkeypatch):
    encodes = []
    encode = base.model.video_tower.encode_videos
    monkeypatch.setattr(base.model.video_tower, "encode_videos", lambda *a, **k: encodes.append(1) or encode(*a, **k))
    client = Client(url, verbose=False)
    chat, status, _, _ = client.predict(video=handle_file(tiny_video), api_name="/load_video")
    assert chat == [] and "Loaded video" in status and len(encodes) == 1
    chat, box = client.predict(question=Q1, api_name="/send")
    chat, _ = client.predict(question=Q2, api_name="/send")
    a1, a2 = expected_answers(base, tiny_video, Q1, Q2)
    assert texts(chat) == [("user", Q1), ("assistant", a1), ("user", Q2), ("assistant", a2)] and box == ""
    assert texts(client.predict(api_name="/regenerate"))[-1] == ("assistant", a2)
    assert len(encodes) == 2  # one upload, one encode (plus the expected answers' own session)
    chat, question, video, image, status = client.predict(api_name="/clear")
    assert chat == [] and question == "" and video is None and image is None and status == NO_MEDIA
    chat, _ = client.predict(question=Q1, api_name="/send")  # text only now: no media placeholder
    assert texts(chat)[0] == ("user", Q1) and len(chat) == 2


def test_an_image_replaces_the_video(base, url, tiny_video, tiny_image):
    client = Client(url, verbose=False)
    client.predict(video=handle_file(tiny_video), api_name="/load_video")
    _, status, video, _ = client.predict(image=handle_file(tiny_image), api_name="/load_image")
    assert "Loaded image" in status and video is None
    chat, _ = client.predict(question=Q1, api_name="/send")
    session = base.fork()
    session.load_image(tiny_image)
    assert texts(chat) == [("user", Q1), ("assistant", session.ask(Q1, GREEDY))]


def test_bad_video_and_streaming(url, tiny_video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 10)
    client = Client(url, verbose=False)
    chat, status, _, _ = client.predict(video=handle_file(broken), api_name="/load_video")
    assert "broken.mp4: this video cannot be read" in status and "cannot be read" in texts(chat)[0][1]
    log, status = client.predict(video=handle_file(tiny_video), api_name="/stream")
    lines = log.splitlines()
    assert lines and all(line.startswith("(Video Time = ") and "s) Assistant: " in line for line in lines)
    assert status.startswith("Done:")


def test_oversize_upload_is_refused_with_a_message(base, tiny_video):
    limit_mb = tiny_video.stat().st_size / 2 / 2**20
    with running(base, max_upload_mb=limit_mb) as address:
        with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client checks the limit
            Client(address, verbose=False).predict(video=handle_file(tiny_video), api_name="/load_video")
        files = {"files": ("big.mp4", tiny_video.read_bytes(), "video/mp4")}
        refused = httpx.post(f"{address}gradio_api/upload", files=files, timeout=30)  # and so does the server
        assert refused.status_code == 413 and "maximum allowed size" in refused.text
    handlers = ChatHandlers(base.fork, DemoSettings(max_upload_mb=limit_mb))  # and so does the handler
    user, chat, status, video, _ = handlers.load_video(str(tiny_video), None)
    assert "uploads are limited to" in status and "uploads are limited to" in chat[0]["content"]
    assert user.session.media is None and video is None


def test_main_reports_a_bad_model_path(tmp_path, capsys):
    assert gradio_demo.main(["--model-path", str(tmp_path / "missing"), "--port", "7999"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize("one_model_request", [False, True], ids=["default", "static-cache"])
def test_with_static_cache_every_event_that_runs_the_model_waits_for_the_others(one_model_request):
    """With --static-cache (one compiled decoding step, which threads cannot share) uploads, questions and
    streams share one concurrency group of one slot; otherwise each event has its own slot."""
    demo = build_demo(lambda: None, DemoSettings(one_model_request=one_model_request))
    grouped = {fn.api_name for fn in demo.fns.values() if fn.concurrency_id == gradio_demo.MODEL}
    model_events = {"load_video", "load_image", "send", "send_1", "regenerate", "stream"}
    model_events |= {"timeline", "timeline_1", "timeline_2"}  # each answer's evidence, after it
    assert grouped == (model_events if one_model_request else set())
    assert demo._queue.default_concurrency_limit == 1


def test_evidence_timeline_html():
    assert evidence_timeline([]) == ""
    html = evidence_timeline([Evidence(2.0, 4.0, 0.9), Evidence(0.0, 2.0, 0.1), Evidence(4.0, 8.0, -0.2)])
    assert re.findall(r'class="evidence-span" data-start="([0-9.]+)"', html) == ["2.000", "0.000", "4.000"]
    assert re.findall(r"left:([0-9.]+)%;width:([0-9.]+)%", html) == [("25.00", "25.00"), ("0.00", "25.00"),
                                                                    ("50.00", "50.00")]
    assert ">1. 2.0-4.0 s</button>" in html and ">3. 4.0-8.0 s</button>" in html  # listed best first


def test_the_timeline_shows_the_last_answers_evidence(base, tiny_video, tiny_image):
    chat = ChatHandlers(base.fork, DemoSettings(generation=GREEDY))
    user, *_ = chat.load_video(str(tiny_video), None)
    assert chat.timeline(user) == ""  # no answer yet
    for _ in chat.send(Q1, user):
        pass
    answer = user.session.conversation.messages[-1][1]
    assert chat.timeline(user) == evidence_timeline(user.session.evidence(Q1, answer)) != ""
    user, *_ = chat.load_image(str(tiny_image), user)
    for _ in chat.send(Q1, user):
        pass
    assert chat.timeline(user) == ""


class DevTools:
    """A headless Chromium driven over the Chrome DevTools Protocol (one page, synchronous calls)."""

    def __init__(self, profile: Path) -> None:
        import websocket  # websocket-client (the dev extra)

        self.proc = subprocess.Popen(
            [shutil.which("chromium"), *CHROMIUM_FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
             "--window-size=1280,1200", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and self.proc.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while not (value := self.js(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)
        return value

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(10)


LAST_ANSWER = ("(() => { const m = [...document.querySelectorAll('#chatbot [data-testid=bot]')];"
               " return m.length ? m[m.length - 1].innerText.trim() : ''; })()")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="no `chromium` on PATH: install Debian's with `apt-get install -y chromium` (.ci/run does)")
def test_real_browser_upload_ask_and_screenshot(base, url, tmp_path):
    expected = expected_answers(base, DEMO_VIDEO, Q1)[0]
    browser = DevTools(tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url)
        browser.wait_for("document.querySelector('#chat-video input[type=file]') !== null")
        root = browser.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = browser.call("DOM.querySelector", nodeId=root, selector="#chat-video input[type=file]")["nodeId"]
        browser.call("DOM.setFileInputFiles", files=[str(DEMO_VIDEO)], nodeId=node)
        browser.wait_for("document.querySelector('#media-status').innerText.includes('Loaded video shapes.mp4')")
        browser.js("document.querySelector('#question textarea').focus()")
        browser.call("Input.insertText", text=Q1)
        browser.js("document.querySelector('#send-btn').click()")
        answer = browser.wait_for(LAST_ANSWER)
        deadline = time.monotonic() + 20
        while answer != expected and time.monotonic() < deadline:  # pieces may still be streaming in
            time.sleep(0.2)
            answer = browser.js(LAST_ANSWER)
        assert answer and answer == expected
        spans = browser.wait_for("[...document.querySelectorAll('#evidence-timeline .evidence-list [data-start]')]"
                                 ".map(b => parseFloat(b.dataset.start))")
        assert len(spans) >= 2  # the demo video's scenes, best first
        browser.wait_for("document.querySelector('#chat-video video').readyState >= 1")
        target = max(spans)
        browser.js(f"document.querySelector('#evidence-timeline .evidence-list [data-start=\"{target:.3f}\"]').click()")
        seeked = browser.wait_for(f"Math.abs(document.querySelector('#chat-video video').currentTime - {target}) < 0.05"
                                  " && document.querySelector('#chat-video video').currentTime")
        assert seeked == pytest.approx(target, abs=0.05)
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()
    path = tmp_path / "gradio_demo.png"
    path.write_bytes(shot)
    print(f"screenshot: {path}")
    assert shot.startswith(b"\x89PNG\r\n\x1a\n") and len(shot) > 10_000
