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
    seven = ["a red circle", "a blue square"] * 3 + ["a white triangle"]
    assert grounding.scene_asked("first_scene", "What was in the first scene?", seven) == 0
    assert grounding.scene_asked("last_scene", "What was in the last scene?", seven) == 6
    assert grounding.scene_asked("caption", "Describe the video in one sentence.", seven) == 6
    assert grounding.scene_asked("nth_scene", "What was in scene twelve?", seven * 2) == 11
    assert grounding.scene_asked("when", "When was a white triangle shown?", seven) == 6
    for kind, question in [("count", "How many scenes are there?"), ("when", "When was a red circle shown?")]:
        with pytest.raises(ValueError):  # a count is about no scene; the red circle is in three
            grounding.scene_asked(kind, question, seven)


def test_times_stated_in_words_are_scored_against_the_scene():
    assert grounding.stated_iou("It was shown from 12 s to 18 s.", (12.0, 18.0)) == 1.0
    assert grounding.stated_iou("It was shown from 12 s to 18 s.", (15.0, 21.0)) == pytest.approx(3 / 9)
    assert grounding.stated_iou("It was shown from 0.5 s to 4.5 s.", (0.0, 4.0)) == pytest.approx(3.5 / 4.5)
    assert grounding.stated_iou("It was not shown.", (12.0, 18.0)) == 0.0
    rows = [dict(kind="when", method="answer", source=grounding.WORDS, iou=value) for value in (1.0, 0.4)]
    rows += [dict(kind="when", method=grounding.BEST_POSSIBLE, source="segments", iou=1.0)] * 2
    rows += [dict(kind=kind, method=grounding.ANSWERS, source=grounding.ANSWERS, correct=kind == "when")
             for kind in ("when", "when", grounding.ABSENT)]  # fmt: skip
    scores = grounding.scores_of(rows)
    assert scores["time_answers"] == {"questions": 2, "recall_at_0_5": 0.5, "mean_iou": pytest.approx(0.7)}
    assert set(scores) == {"segments", "answer_accuracy", "time_answers"}  # no evidence method among them
    assert scores["answer_accuracy"]["per_kind"]["when"] == {"questions": 2, "accuracy": 1.0}
    assert scores["answer_accuracy"]["per_kind"][grounding.ABSENT] == {"questions": 1, "accuracy": 0.0}


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
    assert ceiling["questions"] == 5  # first, last, n-th scene, the caption and when (3 scenes: one is unique)
    for source in ("model", "truth"):
        assert set(scores[source]) == {"alone", "retrieval"}
        for method in scores[source].values():
            assert method["questions"] == 5
            assert 0.0 <= method["mean_iou"] <= ceiling["mean_iou"] + 1e-9
            assert method["per_kind"]["first_scene"]["questions"] == 1
            assert method["per_kind"]["when"]["questions"] == 1
    assert scores["answer_accuracy"]["questions"] == 6  # and when_absent, for its accuracy alone
    assert scores["answer_accuracy"]["per_kind"][grounding.ABSENT]["questions"] == 1
    assert scores["time_answers"]["questions"] == 1


def test_unknown_method_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        grounding.main(["--methods", "psychic"])
    assert exit_.value.code == 2
    assert "psychic" in capsys.readouterr().err
