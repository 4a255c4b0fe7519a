"""Time answers: the placeholder a model writes is filled with its best evidence span, in every front end.

The integration tests train a tiny model for 80 steps (about 10 s on one CPU thread) on `when` questions, so that
it answers them with the placeholder as the bundled model is taught to."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from llava.constants import TIME_PLACEHOLDER
from llava.conversation import VICUNA_SYSTEM
from llava.data.shapes_dataset import main as synthesize
from llava.model.presets import tiny_config
from llava.serve import cli
from llava.serve.api import ApiSettings, create_app
from llava.serve.chat_session import ChatSession
from llava.serve.evidence import Evidence, answer_evidence
from llava.serve.streaming_session import StreamingSession
from llava.serve.time_answers import (
    TIME_EVIDENCE_METHOD,
    UNKNOWN_TIME,
    HeldPlaceholder,
    fill_times,
    seconds_text,
    spans_in,
    time_phrase,
)
from llava.train.sentencepiece_tokenizer import train_tokenizer
from llava.train.train import main as train
from llava.video.sampling import sample_video

from .test_api import KEY, MODEL, serving, video_part

EVIDENCE = [Evidence(12.0, 18.25, 0.5), Evidence(0.0, 12.0, 0.1)]


def test_seconds_to_a_tenth_without_a_decimal_for_whole_seconds():
    assert [seconds_text(s) for s in (0.0, 12.0, 12.04, 12.96, 3.375, 0.25)] == ["0", "12", "12", "13", "3.4", "0.2"]


def test_the_placeholder_becomes_the_best_span_in_words():
    assert time_phrase(EVIDENCE) == "from 12 s to 18.2 s"
    assert fill_times(f"It was shown {TIME_PLACEHOLDER}.", EVIDENCE) == "It was shown from 12 s to 18.2 s."
    assert fill_times(f"It was shown {TIME_PLACEHOLDER}.", []) == f"It was shown {UNKNOWN_TIME}."
    assert fill_times("a red circle", EVIDENCE) == "a red circle"
    assert spans_in("It was shown from 12 s to 18.2 s, and from 0 s to 1.5 s.") == [(12.0, 18.2), (0.0, 1.5)]
    assert spans_in(fill_times(TIME_PLACEHOLDER, [])) == []


def test_streamed_pieces_hold_the_placeholder_back_until_it_is_filled():
    sent: list[str] = []
    held = HeldPlaceholder(sent.append)
    for piece in ["It", " was", " shown <", "wh", "en>", "."]:
        held(piece)
    assert "".join(sent) == "It was shown "
    held.finish("It was shown from 12 s to 18.2 s.")
    assert "".join(sent) == "It was shown from 12 s to 18.2 s."
    plain: list[str] = []
    held = HeldPlaceholder(plain.append)
    for piece in ["a <", "b"]:  # "<" could begin a placeholder, then it does not
        held(piece)
    assert "".join(plain) == "a <b"


@pytest.fixture(scope="module")
def when_model(tmp_path_factory) -> tuple[Path, Path, str]:
    """A tiny model trained on `when` questions alone (it answers any with the placeholder), one of its videos and
    a question."""
    root = tmp_path_factory.mktemp("when")
    synthesize(["--out", str(root / "data"), "--num-videos", "4", "--seed", "0", "--max-scenes", "3", "--size", "32"]
               + ["--kinds", "when", "--quiet"])  # fmt: skip
    rows = json.loads((root / "data" / "train.json").read_text())
    texts = [VICUNA_SYSTEM, "USER: ASSISTANT:"] + [t["value"] for r in rows for t in r["conversations"]]
    train_tokenizer(texts * 5, root / "tok", vocab_size=300)
    config = tiny_config(vocab_size=len(AutoTokenizer.from_pretrained(str(root / "tok"))))
    config.to_json_file(str(root / "tiny.json"))
    argv = ["--model_config", str(root / "tiny.json"), "--tokenizer_path", str(root / "tok"),
            "--data_path", str(root / "data" / "train.json"), "--x_folder", str(root / "data"), "--num_frames", "4",
            "--output_dir", str(root / "model"), "--use_cpu", "True", "--per_device_train_batch_size", "4",
            "--learning_rate", "6e-3", "--max_steps", "80", "--save_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "True", "--seed", "0"]  # fmt: skip
    assert train(argv) == 0
    question = rows[0]["conversations"][0]["value"].removeprefix("<video>\n")
    return root / "model", root / "data" / rows[0]["video"], question


@pytest.fixture(scope="module")
def session(when_model) -> ChatSession:
    checkpoint, video, _ = when_model
    chat = ChatSession.from_pretrained(checkpoint, device="cpu")
    chat.load_video(video)
    return chat


def test_the_session_fills_the_time_from_the_replys_evidence(session, when_model):
    question = when_model[2]
    session.reset()
    answer = session.ask(question)
    fill = session.time_fill
    assert fill is not None and TIME_PLACEHOLDER in fill.reply and TIME_PLACEHOLDER not in answer
    assert session.segments is not None and len(session.segments.spans) > 1
    evidence = answer_evidence(session, session.segments, question, fill.reply, TIME_EVIDENCE_METHOD)
    assert answer == fill_times(fill.reply, evidence)
    best = (float(seconds_text(evidence[0].start)), float(seconds_text(evidence[0].end)))
    assert spans_in(answer) == [best]
    assert session.evidence(question, answer) == evidence  # what a front end shows is what the time came from
    assert session.conversation.messages[-1][1] == answer
    session.reset()
    assert session.time_fill is None


def test_a_streamed_reply_never_shows_the_placeholder(session, when_model):
    question = when_model[2]
    session.reset()
    session.add_question(question)
    pieces: list[str] = []
    reply = session.reply(on_text=pieces.append)
    assert "".join(pieces) == reply.text and spans_in(reply.text)
    assert not any("<" in piece for piece in pieces)


def test_without_frame_times_the_answer_says_it_cannot_tell(session, when_model):
    _, video, question = when_model
    frames, _ = sample_video(video, session.sampling)
    timeless = session.fork()
    timeless.load_frames(frames)  # no times: no evidence
    answer = timeless.ask(question)
    assert UNKNOWN_TIME in answer and timeless.evidence(question, answer) == []


def test_the_cli_prints_the_filled_answer_and_its_evidence(session, when_model, capsys):
    checkpoint, video, question = when_model
    argv = ["--model-path", str(checkpoint), "--video-file", str(video), "--query", question, "--device", "cpu"]
    assert cli.main([*argv, "--evidence"]) == 0
    answer, line = capsys.readouterr().out.rstrip("\n").split("\n")
    session.reset()
    assert answer == session.ask(question)
    assert line == "evidence: " + ", ".join(
        f"{e.start:.1f}-{e.end:.1f} s ({e.score:.3f})" for e in session.evidence(question, answer)
    )


def test_a_streams_answer_is_filled_from_its_evidence(when_model):
    checkpoint, video, question = when_model
    stream = StreamingSession.from_pretrained(checkpoint, device="cpu")
    frames, times = sample_video(video, ChatSession.from_pretrained(checkpoint, device="cpu").sampling)
    for frame, time in zip(frames, times, strict=True):
        stream.push(frame, float(time))
    answer, evidence = stream.ask_with_evidence(question)
    assert evidence and TIME_PLACEHOLDER not in answer
    assert spans_in(answer) == [(float(seconds_text(evidence[0].start)), float(seconds_text(evidence[0].end)))]
    assert stream.ask(question) == answer


def test_the_api_answers_with_the_time_and_its_evidence(session, when_model):
    _, video, question = when_model
    session.reset()
    expected = session.ask(question)
    wanted = [item.to_dict() for item in session.evidence(question, expected)]
    assert spans_in(expected) and wanted
    settings = ApiSettings(model_id=MODEL, api_key=KEY, allowed_dirs=(video.parent,))
    messages = [{"role": "user", "content": [video_part(video.as_uri()), {"type": "text", "text": question}]}]
    request = dict(model=MODEL, messages=messages, temperature=0, extra_body={"evidence": True})
    with serving(create_app(session.fork(media=None), settings)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=60)
        response = client.chat.completions.create(**request)
        assert response.choices[0].message.content == expected
        assert response.model_extra["evidence"] == wanted
        chunks = list(client.chat.completions.create(**request, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    assert [c.model_extra.get("evidence") for c in chunks if c.choices and c.choices[0].finish_reason] == [wanted]
