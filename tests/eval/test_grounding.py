"""llava.eval.grounding: IoU of time spans, the scene a question is about, and a small end-to-end run."""

import json

import pytest

from llava.eval import grounding


def test_iou_of_time_spans():
    assert grounding.iou((0.0, 2.0), (1.0, 3.0)) == pytest.approx(1 / 3)
    assert grounding.iou((0.0, 2.0), (0.0, 2.0)) == 1.0
    assert grounding.iou((0.0, 1.0), (1.0, 2.0)) == 0.0  # touching is not overlapping
    assert grounding.iou((0.0, 1.0), (4.0, 6.0)) == 0.0
    assert grounding.iou((1.0, 2.0), (0.0, 4.0)) == pytest.approx(0.25)
    assert grounding.iou((3.0, 3.0), (3.0, 3.0)) == 0.0


def test_scene_asked():
    assert grounding.scene_asked("first_scene", "What was in the first scene?", 7) == 0
    assert grounding.scene_asked("last_scene", "What was in the last scene?", 7) == 6
    assert grounding.scene_asked("caption", "Describe the video in one sentence.", 7) == 6
    assert grounding.scene_asked("nth_scene", "What was in scene twelve?", 14) == 11
    with pytest.raises(ValueError):
        grounding.scene_asked("count", "How many scenes are there?", 3)


def test_summarise_counts_recall_at_half_iou():
    rows = [{"iou": 0.5}, {"iou": 0.49}, {"iou": 1.0}, {"iou": 0.0}]
    assert grounding.summarise(rows) == {"questions": 4, "recall_at_0_5": 0.5, "mean_iou": pytest.approx(0.4975)}
    assert grounding.summarise([])["recall_at_0_5"] is None


def test_end_to_end_on_a_tiny_checkpoint(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "grounding.json"
    args = ["--model-path", str(tiny_checkpoint), "--num-videos", "1", "--min-scenes", "3", "--max-scenes", "3"]
    assert grounding.main([*args, "--methods", "alone,retrieval", "--num-frames", "8", "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :]) == scores  # after the data set's one line
    ceiling = scores["segments"][grounding.BEST_POSSIBLE]
    assert ceiling["questions"] == 4  # first, last, n-th scene and the caption
    for source in ("model", "truth"):
        assert set(scores[source]) == {"alone", "retrieval"}
        for method in scores[source].values():
            assert method["questions"] == 4
            assert 0.0 <= method["mean_iou"] <= ceiling["mean_iou"] + 1e-9
            assert method["per_kind"]["first_scene"]["questions"] == 1
    assert scores["answer_accuracy"]["questions"] == 4


def test_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        grounding.main(["--methods", "psychic"])
    assert exit_.value.code == 2
    assert "psychic" in capsys.readouterr().err
