"""Multiple-choice prompts, answer extraction and scoring for the video QA benchmarks.

The original read the text before the first '.' and compared it with the gold letter; a model that answers
"(B)", "The answer is B" or the option's own words was marked wrong. `extract_choice` reads all of these,
and what it cannot read is counted as unparsable (and listed), never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

LETTERS = "ABCDEFGHIJ"
INSTRUCTION = "Answer with the option's letter from the given choices directly."


def letter_prompt(question: str, options: Sequence[str]) -> str:
    """The original prompt after "<video>\\n": the question, lettered options, the instruction."""
    lines = [question] + [f"{LETTERS[i]}. {option}" for i, option in enumerate(options)] + [INSTRUCTION]
    return "\n".join(lines)


def rotations(options: Sequence[str], answer_index: int) -> list[tuple[tuple[str, ...], int]]:
    """Every rotation of the options with the answer's index in it: shift k starts at option k (circular
    evaluation asks them all and counts a question right only when every rotation is)."""
    options = tuple(options)
    n = len(options)
    return [(options[k:] + options[:k], (answer_index - k) % n) for k in range(n)]


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


_ALONE = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:]?$")  # "A", "a", "(A)", "A.", "[B]"
_LEADING = re.compile(r"^(?:[(\[]([A-Z])[)\]]|([A-Z])[.:)](?=\s|$)|([A-Z])\s*\n)")  # "(A) ...", "A. ...", "B\n..."
_KEYWORD = re.compile(
    r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be|should\s+be))?\s*[:\-]?\s*)"
    r"(?:[(\[]([A-Za-z])[)\]]|([A-Z])\b|([a-z])(?=[.)\]]|\s*$))"
)


def _letter(match: re.Match | None, num_options: int) -> int | None:
    if match is None:
        return None
    letter = next(group for group in match.groups() if group).upper()
    index = LETTERS.find(letter)
    return index if 0 <= index < num_options else None


def letter_alone(text: str, num_options: int) -> int | None:
    """The option index of an answer that is a letter and nothing else ("B", "(B)", "B."), else None: what
    the original prompt asks for, stricter than `extract_choice`, which also reads an option's own words."""
    return _letter(_ALONE.match(text.strip()), num_options)


def extract_choice(text: str, options: Sequence[str]) -> int | None:
    """The option index a free-text answer names, or None when it cannot be read.

    In order: a letter alone ("A", "a", "(A)", "A."); the text of one option exactly; a leading letter
    ("A. a red circle", "(B) ...", "C) ..."); a letter after answer/option/choice ("Answer: A",
    "The answer is (B)"); the text of exactly one option contained in the answer.
    """
    text = text.strip()
    if not text:
        return None
    n = len(options)
    match = _ALONE.match(text)
    if match:
        return _letter(match, n)
    normalised = _normalise(text)
    exact = [i for i, option in enumerate(options) if _normalise(option) == normalised]
    if len(exact) == 1:
        return exact[0]
    for pattern in (_LEADING, _KEYWORD):
        index = _letter(pattern.search(text) if pattern is _KEYWORD else pattern.match(text), n)
        if index is not None:
            return index
    return _contained(normalised, options)


def _contained(normalised: str, options: Sequence[str]) -> int | None:
    """The one option whose text the answer contains; an option inside another named option's text ("red
    square" in "a red square") does not count; two or more named options are ambiguous."""
    padded = f" {normalised} "
    found = {i: o for i, o in enumerate(map(_normalise, options)) if o and f" {o} " in padded}
    named = [
        i for i, o in found.items() if not any(o != other and f" {o} " in f" {other} " for other in found.values())
    ]
    return named[0] if len(named) == 1 else None


# --- scoring -----------------------------------------------------------------------------------------
def _accuracy(correct: int, total: int) -> float:
    return correct / total if total else 0.0


def score_rows(rows: Iterable[dict], group_of: Callable[[str | None], str | None]) -> dict:
    """Accuracy overall and per group of the merged rows.

    Each row holds question_id, answer (gold index), pred (index or None), optional type and error.
    `group_of(type)` names the row's group (None: no group). A row with an error, or whose answer could
    not be read, counts as wrong; both are listed by question_id.
    """
    rows = list(rows)
    groups: dict[str, list[int]] = {}
    correct = 0
    unparsable, errors = [], []
    for row in rows:
        hit = row.get("pred") is not None and row["pred"] == row["answer"]
        correct += hit
        if row.get("error"):
            errors.append(row["question_id"])
        elif row.get("pred") is None:
            unparsable.append(row["question_id"])
        group = group_of(row.get("type"))
        if group is not None:
            tally = groups.setdefault(group, [0, 0])
            tally[0] += hit
            tally[1] += 1
    per_type = {
        name: {"accuracy": _accuracy(c, t), "correct": c, "num_questions": t} for name, (c, t) in sorted(groups.items())
    }
    return {
        "accuracy": _accuracy(correct, len(rows)),
        "correct": correct,
        "num_questions": len(rows),
        "per_type": per_type,
        "unparsable": len(unparsable),
        "unparsable_ids": unparsable,
        "errors": len(errors),
        "error_ids": errors,
    }


def format_table(scores: dict) -> str:
    """A plain-text table of the scores: overall first, then each group."""
    lines = [f"{'group':<28} {'accuracy':>9} {'correct':>8} {'total':>7}"]
    lines.append(
        f"{'overall (' + scores['benchmark'] + ')':<28} {100 * scores['accuracy']:>8.2f}% "
        f"{scores['correct']:>8} {scores['num_questions']:>7}"
    )
    for name, tally in scores["per_type"].items():
        lines.append(f"{name:<28} {100 * tally['accuracy']:>8.2f}% {tally['correct']:>8} {tally['num_questions']:>7}")
    lines.append(f"unparsable answers: {scores['unparsable']}   video errors: {scores['errors']}")
    return "\n".join(lines)
