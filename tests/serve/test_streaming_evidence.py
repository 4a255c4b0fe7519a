"""A stream's answers carry evidence: spans of its latest segments (and the open one) by their frames' times."""

import io
import json

import pytest

from llava.model.builder import load_pretrained_model
from llava.serve.evidence import joined_spans
from llava.serve.streaming_session import StreamingSession

from .test_cli_streaming import run, said
from .test_streaming_session import flat_scenes, sharpen

QUESTION = "What was in the first scene?"


def test_joined_spans_meet_halfway():
    assert joined_spans([(0.0, 0.75), (1.0, 1.75), (2.0, 2.0)]) == [(0.0, 0.875), (0.875, 1.875), (1.875, 2.0)]
    assert joined_spans([(3.0, 4.0)]) == [(3.0, 4.0)]
    assert joined_spans([]) == []


@pytest.fixture(scope="module")
def sharp_session(tiny_checkpoint):
    tokenizer, model, processor, _ = load_pretrained_model(tiny_checkpoint, device="cpu")
    session = StreamingSession(sharpen(model), tokenizer, processor)
    session.settings.max_new_tokens = 4
    return session


def test_answers_rest_on_the_streams_segments(sharp_session):
    session = sharp_session
    session.reset()
    for time, frame in flat_scenes(5):
        session.push(frame, time)
    closed = list(session.state.segments)
    assert len(closed) >= 2 and session.state.open_seen
    answer, evidence = session.ask_with_evidence(QUESTION)
    assert answer == session.ask(QUESTION)
    shown = [*closed, (session.state.open_start, session.state.last_time)]
    assert sorted((e.start, e.end) for e in evidence) == joined_spans(shown)
    assert [e.score for e in evidence] == sorted((e.score for e in evidence), reverse=True)


def test_evidence_keeps_only_the_latest_segments(sharp_session, monkeypatch):
    session = sharp_session
    session.reset()
    monkeypatch.setattr(session, "recent", type(session.recent)(maxlen=2))
    for time, frame in flat_scenes(5):
        session.push(frame, time)
    session.finish()
    _, evidence = session.ask_with_evidence(QUESTION)
    assert sorted((e.start, e.end) for e in evidence) == joined_spans(session.state.segments[-2:])
    session.reset()
    assert not session.recent


def test_cli_answers_carry_evidence_in_the_history_and_print_it(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from llava.video.write import write_mp4

    video = write_mp4((frame for _, frame in flat_scenes(3)), tmp_path / "flat.mp4", fps=4.0)
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{QUESTION}\n"))
    assert run(tiny_checkpoint, video, "--output", str(tmp_path / "h.json"), "--evidence") == 0
    out = capsys.readouterr().out.splitlines()
    history = json.loads((tmp_path / "h.json").read_text())["history"]
    answers = [e for e in history if e["role"] == "Assistant" and "evidence" in e]
    assert len(answers) == 1 and answers[0]["evidence"]
    assert all("evidence" not in e for e in history if e is not answers[0])  # captions carry none
    line = out[out.index(f"(Video Time = {answers[0]['time']:g}s) Assistant: {answers[0]['text']}") + 1]
    assert line == "evidence: " + ", ".join(
        f"{e['start']:.1f}-{e['end']:.1f} s ({e['score']:.3f})" for e in answers[0]["evidence"]
    )
    assert [(t, role) for t, role, _ in said("\n".join(out))] == [(e["time"], e["role"]) for e in history]


def test_a_streamed_demo_videos_first_scene_question_rests_on_its_first_scene():
    """The bundled model streaming the demo video at 1 fps: the answer to the first-scene question rests most on
    the segment that holds the first scene (its span overlaps the true first scene more than any other's does)."""
    from llava.serve.chat_session import DEMO_VIDEO
    from llava.video.decode import open_video

    session = StreamingSession.from_pretrained(device="cpu")
    with open_video(DEMO_VIDEO) as reader:
        for time, frame in reader.iter_frames(fps=1.0):
            session.push(frame, time)
    session.finish()
    answer, evidence = session.ask_with_evidence(QUESTION)
    truth = json.loads(DEMO_VIDEO.with_name("shapes_truth.json").read_text())["video"]["scenes"][0]

    def overlap(item):
        return max(0.0, min(item.end, truth["end"]) - max(item.start, truth["start"]))

    assert len(evidence) >= 2
    assert overlap(evidence[0]) == max(overlap(item) for item in evidence) > 0
