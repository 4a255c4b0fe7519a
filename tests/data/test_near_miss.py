"""Near-miss multiple-choice options: two pairs of options one attribute apart, so that the answer takes its colour
and its shape both to find, and the options' pattern does not point at it."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest

from llava.data import shapes_dataset as syn
from llava.data.shapes_world import ALL_CAPTIONS, COLOURS, SHAPES, near_captions


def attributes(caption: str) -> tuple[str, str]:
    colour, shape = caption.split()[1:]
    assert colour in COLOURS and shape in SHAPES
    return colour, shape


def neighbours(a: str, b: str) -> bool:
    """One attribute apart: the same colour or the same shape, not both."""
    (ca, sa), (cb, sb) = attributes(a), attributes(b)
    return (ca == cb) != (sa == sb)


def scene_question(answer: str, others: tuple[str, ...]) -> syn.Question:
    pool = tuple(c for c in ALL_CAPTIONS if c != answer)
    return syn.Question("first_scene", syn.TEMPLATES["first_scene"], answer, others, pool)


@pytest.mark.parametrize("caption", ALL_CAPTIONS)
def test_near_captions_are_every_caption_one_attribute_away(caption):
    near = near_captions(caption)
    expected = {c for c in ALL_CAPTIONS if neighbours(c, caption)}
    assert set(near) == expected and len(near) == len(expected) == (len(SHAPES) - 1) + (len(COLOURS) - 1)


def test_near_captions_of_a_number_is_empty():
    assert near_captions("six") == () and near_captions("a red") == ()


def test_near_miss_options_come_in_two_neighbouring_pairs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        answer, *others = (ALL_CAPTIONS[i] for i in rng.choice(len(ALL_CAPTIONS), size=5, replace=False))
        options, index = syn.to_multiple_choice(scene_question(answer, tuple(others)), rng, near_miss=True)
        assert len(set(options)) == 4 and options[index] == answer
        rest = [o for o in options if o != answer]
        partner = next(o for o in rest if neighbours(o, answer))
        assert any(neighbours(a, b) for a, b in combinations([o for o in rest if o != partner], 2))
        assert set(rest) & set(others)  # one wrong option is still another scene of the video


def test_the_options_pattern_does_not_point_at_the_answer():
    """Guessing the option with the most neighbours among the options (NIAVH's own options: the answer, one of its
    colour, one of its shape, one of neither) must be no better than guessing between two."""
    rng = np.random.default_rng(1)
    hits, trials = 0, 600
    for _ in range(trials):
        answer, *others = (ALL_CAPTIONS[i] for i in rng.choice(len(ALL_CAPTIONS), size=5, replace=False))
        options, index = syn.to_multiple_choice(scene_question(answer, tuple(others)), rng, near_miss=True)
        degree = [sum(neighbours(o, p) for p in options if p != o) for o in options]
        hits += int(np.argmax(degree) == index)
    assert hits / trials < 0.4


def test_order_questions_keep_both_named_objects():
    rng = np.random.default_rng(2)
    a, b = "a red circle", "a blue square"
    pool = tuple(c for c in ALL_CAPTIONS if c not in (a, b))
    question = syn.Question("order", syn.TEMPLATES["order"].format(a=a, b=b), a, (b,), pool)
    for _ in range(50):
        options, index = syn.to_multiple_choice(question, rng, near_miss=True)
        assert options[index] == a and b in options and len(set(options)) == 4


def test_numbers_are_asked_as_without_near_miss():
    question = syn.Question("count", syn.TEMPLATES["count"], "six", (), ("one", "two", "three", "four", "five"))
    plain = syn.to_multiple_choice(question, np.random.default_rng(3))
    assert syn.to_multiple_choice(question, np.random.default_rng(3), near_miss=True) == plain


def test_near_miss_flag_writes_paired_options(tmp_path):
    out = tmp_path / "mc"
    syn.main(["--out", str(out), "--num-videos", "3", "--seed", "5", "--min-scenes", "4", "--format", "mc",
              "--kinds", "caption,first_scene,order,count", "--near-miss", "--quiet"])
    assert json.loads((out / "truth.json").read_text())["near_miss"] is True
    answers = {a["question_id"]: a["answer"] for a in json.loads((out / "test_a.json").read_text())}
    questions = json.loads((out / "test_q.json").read_text())
    for q in questions:
        options = list(q["option"].values())
        if q["type"] == "count":
            continue
        answer = options[answers[q["question_id"]]]
        assert any(neighbours(answer, o) for o in options if o != answer)
    plain = tmp_path / "plain"
    syn.main(["--out", str(plain), "--num-videos", "3", "--seed", "5", "--min-scenes", "4", "--format", "mc",
              "--kinds", "caption,first_scene,order,count", "--quiet"])
    assert json.loads((plain / "test_q.json").read_text()) != questions  # the flag changed the options
