"""The API under load: 16 concurrent clients with different videos each get their own answer, an overloaded
server answers 503 and nothing else, and the media cache stays within its size. Uses the bundled demo model,
whose answers name what is in each video, so a mixed-up answer would show."""

import base64
import concurrent.futures
from pathlib import Path

import httpx
import pytest

from llava.data.shapes_dataset import main as synthesize
from llava.serve.api import ApiSettings, create_app
from llava.serve.chat_session import DEMO_CHECKPOINT, ChatSession, GenerationSettings
from tests.serve.test_api import serving

CLIENTS = 16
QUESTION = "Describe the video in one sentence."


@pytest.fixture(scope="module")
def session():
    return ChatSession.from_pretrained(DEMO_CHECKPOINT, device="cpu")


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("load")
    synthesize(["--out", str(out), "--num-videos", str(CLIENTS), "--seed", "77", "--min-scenes", "1",
                "--max-scenes", "2", "--quiet"])
    return sorted((out / "videos").glob("*.mp4"))


@pytest.fixture(scope="module")
def references(session, videos) -> list[str]:
    answers = []
    for video in videos:
        fresh = session.fork(media=None)
        fresh.load_video(video)
        answers.append(fresh.ask(QUESTION, GenerationSettings(max_new_tokens=12)))
    assert len(set(answers)) >= 8, "the videos must give distinguishable answers for this test to mean anything"
    return answers


def request(base_url: str, video: Path) -> httpx.Response:
    url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    body = {"model": DEMO_CHECKPOINT.name, "max_tokens": 12, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=120)


def run_clients(base_url: str, videos: list[Path]) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda v: request(base_url, v), videos))


def test_sixteen_concurrent_clients_get_their_own_answers(session, videos, references):
    settings = ApiSettings(max_concurrency=2, queue_timeout=120, cache_size=4)
    with serving(create_app(session, settings)) as base_url:
        responses = run_clients(base_url, videos)
        stats = httpx.get(f"{base_url}/v1/stats").json()
    assert [r.status_code for r in responses] == [200] * CLIENTS
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == references
    assert stats["media_cache"]["entries"] <= 4 and stats["media_encodes"] == CLIENTS  # bounded; one encode each


def test_an_overloaded_server_answers_503_and_nothing_else(session, videos, references):
    settings = ApiSettings(max_concurrency=1, queue_timeout=0.05, cache_size=2)
    with serving(create_app(session, settings)) as base_url:
        responses = run_clients(base_url, videos)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 503 in codes and 200 in codes
    for response, expected in zip(responses, references):
        if response.status_code == 200:
            assert response.json()["choices"][0]["message"]["content"] == expected
        else:
            assert response.json()["error"]["code"] == "server_overloaded"
