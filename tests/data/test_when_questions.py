"""The `when` question kinds: about an object of exactly one scene (answered with the time placeholder) or one the
video never shows; open questions only, each drawn from its own seeded stream."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from llava.constants import TIME_PLACEHOLDER
from llava.data import shapes_dataset as syn
from llava.data import shapes_world

ARGS = ["--num-videos", "8", "--seed", "7", "--max-scenes", "5", "--size", "32", "--quiet"]


def generate(out: Path, kinds: str, *extra: str) -> tuple[list[dict], dict[str, dict]]:
    syn.main(["--out", str(out), *ARGS, "--kinds", kinds, *extra])
    truth = json.loads((out / "truth.json").read_text())["videos"]
    return json.loads((out / "train.json").read_text()), {video["video"]: video for video in truth}


def caption_asked(row: dict) -> str:
    question = row["conversations"][0]["value"].removeprefix("<video>\n")
    prefix, suffix = syn.TEMPLATES["when"].split("{caption}")
    assert question.startswith(prefix) and question.endswith(suffix)
    return question[len(prefix) : -len(suffix)]


@pytest.fixture(scope="module")
def when_set(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("when"), "when,when_absent,first_scene,brief_object", "--mc-ratio", "1")


def test_when_asks_about_an_object_of_exactly_one_scene(when_set):
    rows, truth = when_set
    asked = [row for row in rows if row["kind"] == "when"]
    assert len(asked) >= 6  # a video of 1-5 scenes rarely repeats every object
    for row in asked:
        scenes = [s for s in truth[row["video"]]["scenes"] if s["caption"] == caption_asked(row)]
        assert len(scenes) == 1 and scenes[0]["end"] > scenes[0]["start"]
        assert row["conversations"][1]["value"] == syn.WHEN_ANSWER
        assert TIME_PLACEHOLDER in syn.WHEN_ANSWER


def test_when_absent_asks_about_an_object_never_shown(when_set):
    rows, truth = when_set
    absent = [row for row in rows if row["kind"] == "when_absent"]
    assert len(absent) == 8
    for row in absent:
        video = truth[row["video"]]
        assert caption_asked(row) in shapes_world.ALL_CAPTIONS
        assert caption_asked(row) not in {s["caption"] for s in video["scenes"]} | {video["flash"]["caption"]}
        assert row["conversations"][1]["value"] == syn.NOT_SHOWN_ANSWER


def test_when_rows_name_their_object_for_judgement_and_other_rows_name_nothing(when_set):
    rows, _ = when_set
    for row in rows:
        if row["kind"] in syn.OPEN_ONLY:
            assert row["judgements"] == [{"text": caption_asked(row), "right": row["kind"] == "when"}]
        else:
            assert "judgements" not in row


def test_when_kinds_are_never_multiple_choice(when_set, tmp_path, capsys):
    rows, _ = when_set
    assert all("options" in row for row in rows if row["kind"] == "first_scene")  # --mc-ratio 1
    assert not any("options" in row for row in rows if row["kind"] in syn.OPEN_ONLY)
    with pytest.raises(SystemExit) as exit_info:
        syn.main(["--out", str(tmp_path / "mc"), *ARGS, "--kinds", "first_scene,when", "--format", "mc"])
    assert exit_info.value.code == 2 and "never multiple choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="never multiple choice"):
        syn.generate(tmp_path / "mc", 1, 0, kinds=["when_absent"], fmt="mc")
    assert not (tmp_path / "mc").exists()
    assert not set(syn.OPEN_ONLY) & set(syn.KINDS)  # the default data sets hold no when question


def test_when_questions_come_from_the_seed_alone(when_set, tmp_path):
    rows, _ = when_set
    by_id = {row["id"]: row["conversations"] for row in rows if row["kind"] in syn.OPEN_ONLY}
    again, _ = generate(tmp_path / "again", "brief_object,when_absent,when")  # another order, no mc share
    assert {row["id"]: row["conversations"] for row in again if row["kind"] in syn.OPEN_ONLY} == by_id
    alone, _ = generate(tmp_path / "alone", "when")  # no other kind (and no flash, which only when_absent avoids)
    assert {row["id"]: row["conversations"] for row in alone} == {k: v for k, v in by_id.items() if k.endswith("_when")}
    other, _ = generate(tmp_path / "other", "when", "--seed", "8")
    assert [row["conversations"] for row in other] != [row["conversations"] for row in alone]


def test_no_when_question_where_none_applies():
    spec = shapes_world.sample_video_spec(shapes_world.video_rng(3, 0), "v", min_scenes=4, max_scenes=4)
    one, two = spec.scenes[0], spec.scenes[1]
    repeated = dataclasses.replace(spec, scenes=(one, two, one, two))  # every object shown twice
    rng = np.random.default_rng(0)
    assert syn.make_question(repeated, "when", rng) is None
    assert syn.make_question(repeated, "when_absent", rng) is not None
    everything = [
        dataclasses.replace(one, colour=colour, shape=shape)
        for colour in shapes_world.COLOURS
        for shape in shapes_world.SHAPES
    ]
    shows_all = dataclasses.replace(spec, scenes=tuple(everything))
    assert syn.make_question(shows_all, "when_absent", rng) is None
    question = syn.make_question(shows_all, "when", rng)
    assert question is not None and question.answer == syn.WHEN_ANSWER


def test_near_miss_absent_objects_are_one_attribute_from_a_shown_one(when_set, tmp_path):
    rows, truth = generate(tmp_path / "near", "when,when_absent,first_scene,brief_object", "--mc-ratio", "1",
                           "--near-miss")
    absent = [row for row in rows if row["kind"] == "when_absent"]
    assert len(absent) == 8
    for row in absent:
        video = truth[row["video"]]
        shown = {s["caption"] for s in video["scenes"]}
        assert caption_asked(row) not in shown | {video["flash"]["caption"]}  # still never shown
        assert any(caption_asked(row) in shapes_world.near_captions(caption) for caption in shown)
    # without --near-miss the absent objects are drawn from every object not shown
    plain = [row for row in when_set[0] if row["kind"] == "when_absent"]
    assert [caption_asked(row) for row in plain] != [caption_asked(row) for row in absent]
    # the other questions and the videos are those of the same data set without --near-miss
    assert [row for row in rows if row["kind"] == "when"] == [row for row in when_set[0] if row["kind"] == "when"]
    assert truth == when_set[1]
