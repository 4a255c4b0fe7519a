"""Property-based fuzzing (hypothesis): random bytes and damaged copies of a valid video to the decoder, random
JSON documents to the training data loader, random request bodies to the HTTP API. The only failures allowed are
the project's own error types (VideoError, DataError) and, over HTTP, 4xx answers with an OpenAI-style error body.

The number of cases is bounded (`max_examples`) and the search derandomized, so CI runs the same cases every
time and this file stays well under a minute.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from llava.data.dataset import DataConfig, SupervisedDataset, load_rows, validate_row
from llava.errors import DataError, VideoError
from llava.video.decode import load_video, open_video
from llava.video.write import write_mp4

# CI: a fixed, bounded set of cases. A deeper local search: LLAVA_FUZZ_SCALE=20 LLAVA_FUZZ_RANDOM=1 pytest ...
SCALE = float(os.environ.get("LLAVA_FUZZ_SCALE", "1"))
FUZZ = {"deadline": None, "derandomize": os.environ.get("LLAVA_FUZZ_RANDOM") != "1", "database": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much]}


def cases(n: int) -> int:
    return max(1, int(n * SCALE))


@pytest.fixture(scope="module")
def scratch():
    """A folder for the files the examples write (tmp_path is per test, not per example)."""
    with tempfile.TemporaryDirectory(prefix="llava-fuzz-") as folder:
        yield Path(folder)


def fresh(folder: Path, suffix: str) -> Path:
    return folder / f"{uuid.uuid4().hex}{suffix}"


# ================================================================ the decoder
@pytest.fixture(scope="module")
def valid_videos(scratch) -> dict[str, bytes]:
    """The bytes of two small valid mp4s: moov at the end (write_mp4) and moov first (faststart)."""
    import av

    frames = [np.full((32, 32, 3), 25 * i, np.uint8) for i in range(8)]
    end = write_mp4(frames, scratch / "valid.mp4", fps=4, threads=1)
    start = scratch / "faststart.mp4"
    with av.open(str(start), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return {"moov_last": end.read_bytes(), "moov_first": start.read_bytes()}


def decode_or_video_error(path: Path, num_frames: int = 4) -> np.ndarray | None:
    """Open and sample the file: frames on success, None on a VideoError; anything else fails the test."""
    try:
        with open_video(path) as video:
            assert video.num_frames is None or video.num_frames >= 1
        frames, seconds = load_video(path, num_frames=num_frames)
    except VideoError as err:
        assert str(err)  # a message, naming the file or the problem
        event("VideoError")
        return None
    event("decoded")
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == num_frames and frames.shape[3] == 3
    assert np.all(np.isfinite(seconds)) and np.all(np.diff(seconds) >= 0)
    return frames


MAGIC = [b"", b"GIF89a", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", b"RIFF\x24\x00\x00\x00AVI LIST",
         b"\x1a\x45\xdf\xa3", b"\x89PNG\r\n\x1a\n"]


@settings(max_examples=cases(100), **FUZZ)
@given(head=st.sampled_from(MAGIC), body=st.binary(max_size=2048), suffix=st.sampled_from([".mp4", ".gif", ".avi"]))
def test_random_bytes_are_a_video_error_or_frames(scratch, head, body, suffix):
    path = fresh(scratch, suffix)
    path.write_bytes(head + body)
    decode_or_video_error(path)


@settings(max_examples=cases(60), **FUZZ)
@given(layout=st.sampled_from(["moov_last", "moov_first"]), cut=st.floats(0.0, 1.0))
def test_truncated_valid_mp4_is_a_video_error_or_frames(scratch, valid_videos, layout, cut):
    data = valid_videos[layout]
    path = fresh(scratch, ".mp4")
    path.write_bytes(data[: int(len(data) * cut)])
    decode_or_video_error(path)


@settings(max_examples=cases(100), **FUZZ)
@given(layout=st.sampled_from(["moov_last", "moov_first"]),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=12))
def test_byte_flips_in_a_valid_mp4_are_a_video_error_or_frames(scratch, valid_videos, layout, flips):
    data = bytearray(valid_videos[layout])
    for where, value in flips:
        data[int(where * len(data))] = value
    path = fresh(scratch, ".mp4")
    path.write_bytes(bytes(data))
    decode_or_video_error(path)


# ================================================================ the training data loader
JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                                max_size=4),
                    max_leaves=16)
TEXTS = st.sampled_from(["What is it?", "a red circle", "", "\u00e9\u8996 \U0001f600", "What is it?",
                         "<video>\nWhat is it?", "<image> describe", "<video><video>"]) | st.text(max_size=20)
MISSING = object()  # a mutation that deletes the key


@st.composite
def rows(draw):
    """A valid row (video, image or text; its media readable or not), then zero to three random damages."""
    pairs = draw(st.lists(st.tuples(TEXTS, TEXTS), min_size=1, max_size=2))
    turns = [{"from": role, "value": text} for pair in pairs for role, text in zip(("human", "gpt"), pair)]
    row = {"id": draw(st.sampled_from(["a", "b", 1, 2, "\u8996"])), "conversations": turns}
    kind = draw(st.sampled_from(["video", "image", "text"]))
    if kind == "video":
        row["video"] = draw(st.sampled_from(["clip.mp4", "clip.mp4", "missing.mp4", "notes.mp4", ".", "x" * 300]))
    elif kind == "image":
        row["image"] = draw(st.sampled_from(["square.png", "square.png", "notes.mp4", "clip.mp4"]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        value = draw(st.just(MISSING) | JSON)
        where = draw(st.sampled_from(["id", "video", "image", "conversations", "turn", "from", "value"]))
        target, key = row, where
        if where in ("turn", "from", "value"):
            index = draw(st.integers(0, len(turns) - 1))
            target, key = (turns, index) if where == "turn" else (turns[index], where)
            if where != "turn" and not isinstance(target, dict):  # that turn was already replaced
                continue
        if value is MISSING:
            if isinstance(target, dict):
                target.pop(key, None)
        else:
            target[key] = value
    return row


DOCUMENT = st.one_of(st.lists(rows(), min_size=1, max_size=4), JSON, st.lists(rows() | JSON, max_size=4))


@pytest.fixture(scope="module")
def data_folder(scratch, valid_videos, tiny_image) -> Path:
    folder = scratch / "data"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(valid_videos["moov_last"])
    (folder / "notes.mp4").write_text("not a video")
    (folder / "square.png").write_bytes(tiny_image.read_bytes())
    return folder


@settings(max_examples=cases(120), **FUZZ)
@given(document=DOCUMENT, as_lines=st.booleans(), fraction=st.sampled_from([0.0, 0.5, 1.0]))
def test_random_json_documents_are_data_errors_or_skipped_rows(data_folder, tokenizer, document, as_lines, fraction):
    path = fresh(data_folder, ".jsonl" if as_lines else ".json")
    if as_lines and isinstance(document, list):
        path.write_text("\n".join(json.dumps(row) for row in document))
    else:
        path.write_text(json.dumps(document))
    try:
        rows = load_rows(path)
    except DataError as err:
        assert str(err)
        event("DataError: the file")
        return
    reasons = [validate_row(row) for row in rows]  # never raises: a reason, or None for a good row
    assert all(reason is None or (isinstance(reason, str) and reason) for reason in reasons)
    config = DataConfig(str(path), x_folder=str(data_folder), num_frames=2, image_size=32, max_length=384,
                        max_bad_fraction=fraction)
    try:
        dataset = SupervisedDataset(config, tokenizer)
        assert len(dataset) == reasons.count(None)  # exactly the valid rows are kept
        event("a dataset")
        for index in range(len(dataset)):
            sample = dataset[index]
            assert sample is None or sample["input_ids"].shape == sample["labels"].shape
            event("a sample" if sample is not None else "an unreadable row skipped")
    except DataError as err:
        message = str(err)
        kinds = ("malformed", "unreadable", "holds no rows", "max_length")
        event("DataError: " + next((kind for kind in kinds if kind in message), "other"))


@settings(max_examples=cases(40), **FUZZ)
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_random_text_as_a_data_file_is_a_data_error_or_rows(data_folder, text):
    path = fresh(data_folder, ".json")
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        assert isinstance(load_rows(path), list)
    except DataError:
        pass


# ================================================================ the HTTP API
@pytest.fixture(scope="module")
def api(tiny_checkpoint, data_folder):
    from llava.serve.api import ApiSettings, create_app
    from llava.serve.chat_session import ChatSession, GenerationSettings

    class Capped(ChatSession):
        """Generates at most 2 tokens whatever max_tokens says, so valid requests stay fast."""

        def reply(self, settings=None, **kwargs):
            settings = settings or GenerationSettings()
            return super().reply(replace(settings, max_new_tokens=min(settings.max_new_tokens, 2)), **kwargs)

    session = Capped.from_pretrained(tiny_checkpoint, device="cpu")
    api_settings = ApiSettings(model_id="tiny", allowed_dirs=(data_folder,), max_body_mb=1, download_timeout=1,
                               default_max_tokens=2)
    with TestClient(create_app(session, api_settings), raise_server_exceptions=False) as client:
        yield client


def media_urls(folder_uri: str):
    b64 = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
    return st.one_of(
        st.sampled_from([f"{folder_uri}/clip.mp4", f"{folder_uri}/notes.mp4", f"{folder_uri}/square.png",
                         f"{folder_uri}/missing.mp4", "file:///etc/passwd", "file://host/x.mp4", "file://[::1/x",
                         "http://[::1/x", "http://127.0.0.1:9/x.mp4", "ftp://x/y.mp4", "data:video/mp4;base64,%%",
                         "data:,", ""]),
        st.builds(lambda mime, data: f"data:{mime};base64,{data}",
                  st.sampled_from(["video/mp4", "image/png", "text/plain", ""]), b64),
        st.text(max_size=30),
    )


@st.composite
def request_bodies(draw, folder_uri: str):
    """A valid chat request (text, a video or an image by file, data or http URL), then zero to three random
    damages: a top-level field, a message, a message's role or content, or a content part replaced or deleted."""
    url = media_urls(folder_uri)
    turns = [{"role": "user", "content": draw(st.text(max_size=30))}]
    for _ in range(draw(st.integers(0, 1))):
        turns += [{"role": "assistant", "content": draw(st.text(max_size=20) | st.none())},
                  {"role": "user", "content": draw(st.text(max_size=30))}]
    if draw(st.booleans()):
        turns.insert(0, {"role": draw(st.sampled_from(["system", "developer"])), "content": "Be brief."})
    kind = draw(st.sampled_from(["text", "video_url", "image_url"]))
    if kind != "text":
        good = f"{folder_uri}/clip.mp4" if kind == "video_url" else f"{folder_uri}/square.png"
        part = {"type": kind, kind: {"url": draw(st.just(good) | url)}}
        turns[-1]["content"] = [part, {"type": "text", "text": turns[-1]["content"]}]
    body = {"model": "tiny", "messages": turns, "max_tokens": draw(st.integers(1, 4)),
            "stream": draw(st.booleans()), "temperature": draw(st.sampled_from([0, 0.5, 1.0]))}
    for _ in range(draw(st.integers(0, 3))):
        value = draw(st.just(MISSING) | JSON)
        where = draw(st.sampled_from(["model", "messages", "max_tokens", "max_completion_tokens", "temperature",
                                      "top_p", "n", "stream", "stream_options", "message", "role", "content",
                                      "part"]))
        target, key = body, where
        if where in ("message", "role", "content"):
            index = draw(st.integers(0, len(turns) - 1))
            target, key = (turns, index) if where == "message" else (turns[index], where)
        elif where == "part":
            content = turns[-1].get("content") if isinstance(turns[-1], dict) else None
            if not isinstance(content, list) or not content:
                continue
            target, key = content, draw(st.integers(0, len(content) - 1))
        if value is MISSING:
            if isinstance(target, dict):
                target.pop(key, None)
        elif isinstance(target, (dict, list)):
            target[key] = value
    return body


@pytest.fixture(scope="module")
def folder_uri(data_folder) -> str:
    return data_folder.as_uri()


def check_answer(response) -> None:
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"] and error["type"] and error["code"]
    elif response.headers["content-type"].startswith("text/event-stream"):
        assert response.text.rstrip().endswith("data: [DONE]") and '"server_error"' not in response.text
    else:
        assert response.json()["choices"][0]["message"]["role"] == "assistant"


@settings(max_examples=cases(120), **FUZZ)
@given(data=st.data())
def test_random_request_bodies_are_answered_or_4xx(api, folder_uri, data):
    body = data.draw(st.one_of(request_bodies(folder_uri), request_bodies(folder_uri), JSON), label="body")
    raw = json.dumps(body).encode()  # NaN and Infinity travel as JSON's common extension
    assume(len(raw) < 2**20)
    check_answer(api.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}))


@settings(max_examples=cases(30), **FUZZ)
@given(raw=st.binary(max_size=256) | st.text(max_size=256).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_request_bytes_are_4xx(api, raw):
    response = api.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    check_answer(response)
