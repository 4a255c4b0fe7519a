"""The demo-model scorer runs end to end and reports fractions over the scenes it generated."""

import json

import numpy as np
import pytest

from llava.eval.shapes_scores import main


def test_scores_cover_every_generated_scene(tiny_checkpoint, tmp_path):
    out = tmp_path / "scores.json"
    args = ["--model-path", str(tiny_checkpoint), "--seed", "5", "--num-videos", "2", "--min-scenes", "2",
            "--max-scenes", "2", "--output", str(out)]
    assert main(args) == 0
    scores = json.loads(out.read_text())
    assert scores["scenes"] == 4 and scores["videos_6plus"] == 0
    for key in ("scene_caption_accuracy", "scene_cuts_exact", "streaming_caption_accuracy"):
        assert 0.0 <= scores[key] <= 1.0


def test_a_missing_model_is_one_clear_error(tmp_path, capsys):
    assert main(["--model-path", str(tmp_path / "nowhere"), "--num-videos", "1"]) == 1
    assert capsys.readouterr().err.startswith("error:")


def test_a_non_positive_stream_rate_is_a_usage_error(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model-path", str(tiny_checkpoint), "--num-videos", "1", "--stream-fps", "0"])  # the older name
    assert exit_info.value.code == 2
    assert "--video-fps must be positive" in capsys.readouterr().err


def test_videos_of_six_scenes_are_asked_one_lettered_question_per_kind(tiny_checkpoint, tmp_path):
    from llava.data.shapes_dataset import KINDS

    out = tmp_path / "scores.json"
    args = ["--model-path", str(tiny_checkpoint), "--seed", "5", "--num-videos", "1", "--min-scenes", "6",
            "--max-scenes", "6", "--output", str(out)]
    assert main(args) == 0
    scores = json.loads(out.read_text())
    assert scores["videos_6plus"] == 1
    assert scores["lettered_questions_6plus"] == len(KINDS)  # six scenes: every kind applies, order included
    assert set(scores["lettered_accuracy_by_kind"]) == set(KINDS)
    right = sum(scores["lettered_accuracy_by_kind"].values())
    assert scores["lettered_accuracy_6plus"] == right / len(KINDS)


def test_only_a_letter_alone_counts_as_a_lettered_answer():
    from llava.eval.answers import letter_alone

    assert [letter_alone(t, 4) for t in ("B", " (c) ", "D.", "E", "a red circle", "B. a red circle")] == [
        1, 2, 3, None, None, None]


def test_cuts_are_exact_only_where_the_segments_change_with_the_scenes():
    from llava.data.shapes_world import sample_video_spec, video_rng
    from llava.eval.shapes_scores import cuts_are_scene_changes
    from llava.serve.evidence import segment_spans
    from llava.video.scenetilling import segments_from_boundaries

    spec = sample_video_spec(video_rng(0, 0), "x", min_scenes=3, max_scenes=3)
    frames = np.arange(0, spec.num_frames, 3)  # every third frame, as a uniform sampling might pick them
    times = frames / spec.fps
    scene = [spec.scene_index_at(int(i)) for i in frames]
    true_cuts = [j for j in range(len(frames) - 1) if scene[j] != scene[j + 1]] + [len(frames) - 1]
    assert len(true_cuts) == 3 and true_cuts[0] >= 1

    def spans(boundaries):
        return segment_spans(times, segments_from_boundaries(boundaries))

    assert cuts_are_scene_changes(spans(true_cuts), times, spec)
    assert not cuts_are_scene_changes(spans([true_cuts[0] + 1, *true_cuts[1:]]), times, spec)  # one frame late
    assert not cuts_are_scene_changes(spans(true_cuts[1:]), times, spec)  # two scenes in one segment
    assert not cuts_are_scene_changes(spans([true_cuts[0] - 1, *true_cuts]), times, spec)  # a scene cut in two
