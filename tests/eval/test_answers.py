"""Answer extraction, the original prompt and scoring (no model)."""

import pytest

from llava.data.shapes_dataset import mc_prompt
from llava.eval.answers import extract_choice, format_table, letter_prompt, score_rows
from llava.eval.question_files import get_benchmark

OPTIONS = ("a red circle", "a blue square", "a green triangle", "a red square")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", 0), ("B.", 1), ("(C)", 2), ("[D]", 3), ("c", 2), (" b \n", 1),
        ("Answer: A", 0), ("answer: (B)", 1), ("The answer is B", 1), ("The answer is C.", 2),
        ("The correct option is D, because", 3), ("the answer is b", 1), ("Best choice: (A)", 0),
        ("A. a red circle", 0), ("(B) a blue square", 1), ("C) a green triangle", 2), ("D\nbecause it is red", 3),
        ("a blue square", 1), ("A blue square.", 1), ("A green triangle", 2),  # the option's text wins over "A"
        ("I saw a green triangle moving", 2), ("It was a red square at the end", 3),  # longest contained text
    ],
)
def test_extract_choice_reads_letters_and_option_text(text, expected):
    assert extract_choice(text, OPTIONS) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "I do not know", "E", "(F)", "The answer is E", "a blue square or a green triangle", "purple"],
)
def test_extract_choice_returns_none_when_unreadable(text):
    assert extract_choice(text, OPTIONS) is None


def test_letter_prompt_is_the_original_prompt():
    assert letter_prompt("What was in scene two?", OPTIONS) == mc_prompt("What was in scene two?", OPTIONS)
    assert letter_prompt("Q?", ("x", "y")) == (
        "Q?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )


def rows(*specs):
    return [{"question_id": f"q{i}", "type": kind, "answer": answer, "pred": pred, **extra}
            for i, (kind, answer, pred, extra) in enumerate(specs)]


def test_nextqa_groups_types_by_first_letter():
    merged = rows(("CW", 0, 0, {}), ("CH", 1, 2, {}), ("TN", 2, 2, {}), ("TC", 0, 0, {}), ("TP", 1, None, {}),
                  ("DC", 3, 3, {}), ("DL", 0, None, {"error": "no video"}), ("DO", 1, 1, {}))
    scores = score_rows(merged, get_benchmark("nextqa").group_of)
    assert scores["per_type"] == {
        "causal": {"accuracy": 0.5, "correct": 1, "num_questions": 2},
        "descriptive": {"accuracy": 2 / 3, "correct": 2, "num_questions": 3},
        "temporal": {"accuracy": 2 / 3, "correct": 2, "num_questions": 3},
    }
    assert scores["accuracy"] == 5 / 8 and scores["correct"] == 5 and scores["num_questions"] == 8
    assert (scores["unparsable"], scores["unparsable_ids"]) == (1, ["q4"])
    assert (scores["errors"], scores["error_ids"]) == (1, ["q6"])


def test_other_benchmarks_group_by_type_and_skip_missing_types():
    merged = rows(("fine_grained_action", 0, 0, {}), ("action_sequence", 1, 0, {}), (None, 0, 0, {}))
    scores = score_rows(merged, get_benchmark("mvbench").group_of)
    assert set(scores["per_type"]) == {"fine_grained_action", "action_sequence"}
    assert scores["accuracy"] == 2 / 3
    table = format_table({"benchmark": "mvbench", **scores})
    assert "overall (mvbench)" in table and "action_sequence" in table and "66.67%" in table
