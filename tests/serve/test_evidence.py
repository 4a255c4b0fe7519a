"""Evidence: segment spans by presentation time, scores best first, and the session / CLI carrying them."""

import json

import pytest
import torch

from llava.serve import cli
from llava.serve.chat_session import DEMO_VIDEO, ChatSession
from llava.serve.evidence import SCORERS, Evidence, frame_spans, rank_evidence, segment_spans, through_bridge
from llava.video.sampling import sample_video
from llava.video.scenetilling import segments_from_boundaries

FAST = ["--device", "cpu", "--max-new-tokens", "6", "--temperature", "0"]
QUESTION = "What was in the first scene?"


def test_frame_spans_reach_halfway_to_the_neighbours():
    assert frame_spans([0.0, 1.0, 3.0]) == [(0.0, 0.5), (0.5, 2.0), (2.0, 4.0)]
    assert frame_spans([2.0, 4.0]) == [(1.0, 3.0), (3.0, 5.0)]  # the first reaches back half a step
    assert frame_spans([0.5, 2.0]) == [(0.0, 1.25), (1.25, 2.75)]  # ... but not before 0 s
    assert frame_spans([7.0]) == [(7.0, 7.0)]


def test_segment_spans_join_their_frames_spans():
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    assert segment_spans(times, [(0, 1), (2, 2), (3, 4)]) == [(0.0, 1.5), (1.5, 2.5), (2.5, 4.5)]


def test_rank_evidence_best_first_ties_in_time_order():
    ranked = rank_evidence([(0, 1), (1, 2), (2, 3)], [0.5, 2.0, 0.5])
    assert ranked == [Evidence(1, 2, 2.0), Evidence(0, 1, 0.5), Evidence(2, 3, 0.5)]
    assert Evidence(0.12345, 1.0, -0.123456).to_dict() == {"start": 0.123, "end": 1.0, "score": -0.1235}


@pytest.fixture(scope="module")
def demo_session():
    session = ChatSession.from_pretrained(device="cpu")
    session.load_video(DEMO_VIDEO)
    return session


def test_spans_are_the_demo_videos_scenes(demo_session):
    """The bundled model's SceneTilling cuts the demo video at its scene changes: every span edge lies within one
    sampled-frame step of a true scene edge, and the spans tile the video from 0 s."""
    truth = json.loads(DEMO_VIDEO.with_name("shapes_truth.json").read_text())["video"]
    edges = sorted({s["start"] for s in truth["scenes"]} | {truth["scenes"][-1]["end"]})
    _, times = sample_video(DEMO_VIDEO, demo_session.sampling)
    step = float(max(times[1:] - times[:-1]))
    spans = demo_session.segments.spans
    assert len(spans) == len(truth["scenes"])
    assert spans[0][0] == 0.0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    for start, end in spans:
        assert min(abs(start - e) for e in edges) <= step / 2 + 1e-6
        assert min(abs(end - e) for e in edges) <= step / 2 + 1e-6


def test_the_first_scene_question_rests_on_the_first_scene(demo_session):
    demo_session.reset()
    answer = demo_session.ask(QUESTION)
    evidence = demo_session.evidence(QUESTION, answer)
    assert [e.score for e in evidence] == sorted((e.score for e in evidence), reverse=True)
    assert sorted((e.start, e.end) for e in evidence) == demo_session.segments.spans
    assert (evidence[0].start, evidence[0].end) == demo_session.segments.spans[0]


def test_session_tokens_are_those_of_encode_videos(tiny_checkpoint, tiny_video):
    session = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    session.load_video(tiny_video)
    pixels, times = sample_video(tiny_video, session.sampling, transform=session.processor.video)
    (expected,) = session.model.encode_videos([pixels])
    assert torch.equal(session.media, expected)
    trace = session.model.trace_video(pixels)
    assert session.segments.spans == segment_spans(times, segments_from_boundaries(trace.boundaries))
    again = through_bridge(session.model, session.segments.inputs)  # the kept tokens give the trace's readouts
    assert len(again) == len(trace.projected)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(again, trace.projected, strict=True))
    for method in SCORERS:
        evidence = session.evidence("Describe it.", "a red circle", method)
        assert len(evidence) == len(session.segments.spans)
        assert [e.score for e in evidence] == sorted((e.score for e in evidence), reverse=True)


def test_images_and_timeless_frames_have_no_evidence(tiny_checkpoint, tiny_image, tiny_video):
    session = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    session.load_image(tiny_image)
    assert session.evidence("Describe it.", "a square") == []
    frames, _ = sample_video(tiny_video, session.sampling)
    session.load_frames(frames)
    assert session.evidence("Describe it.", "a square") == []


def test_cli_prints_the_evidence_after_the_answer(tiny_checkpoint, tiny_video, capsys):
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", QUESTION, *FAST]
    assert cli.main([*args, "--evidence"]) == 0
    answer, line = capsys.readouterr().out.rstrip("\n").split("\n")
    session = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    session.load_video(tiny_video)
    expected = session.evidence(QUESTION, answer)
    assert line == "evidence: " + ", ".join(f"{e.start:.1f}-{e.end:.1f} s ({e.score:.3f})" for e in expected)
    assert cli.main(args) == 0
    assert capsys.readouterr().out == answer + "\n"
