"""Benchmarks in the original evaluation format: reading test_q.json / test_a.json, finding videos, grouping.

test_q.json: [{"video_name", "question_id", "question", "option": {"option 0": ..., ...}, "type"?, ...}]
test_a.json: [{"question_id", "answer": option index, "type"?}]
Questions and answers are joined by question_id (the release aligned them by list position).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llava.errors import ConfigError, DataError, VideoError
from llava.video.decode import VIDEO_EXTENSIONS

NEXTQA_GROUPS = {"C": "causal", "T": "temporal", "D": "descriptive"}


@dataclass(frozen=True)
class Question:
    question_id: str | int
    video_name: str
    question: str
    options: tuple[str, ...]
    answer: int
    type: str | None = None


def _per_type(kind: str | None) -> str | None:
    return kind


def _nextqa_group(kind: str | None) -> str | None:
    """NExT-QA types (CW, CH, TN, TC, TP, DC, DL, DO) are grouped by their first letter."""
    if not kind:
        return None
    return NEXTQA_GROUPS.get(kind[0].upper(), kind[0].upper())


@dataclass(frozen=True)
class Benchmark:
    name: str
    num_frames: int | None  # the release's count, for a model that samples uniformly; None: the model's own
    group_of: Callable[[str | None], str | None] = field(default=_per_type)


BENCHMARKS: dict[str, Benchmark] = {
    "egoschema": Benchmark("egoschema", 16),
    "egoplan": Benchmark("egoplan", 16),
    "nextqa": Benchmark("nextqa", 8, _nextqa_group),
    "mvbench": Benchmark("mvbench", 8),  # the type is the task: 20 tasks
    "synthetic": Benchmark("synthetic", None),
}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


# --- files ---------------------------------------------------------------------------------------------
def _read_rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{path}: expected a JSON list of objects")
    return rows


def _by_id(rows: list[dict], path: Path, needed: tuple[str, ...]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for index, row in enumerate(rows):
        missing = [key for key in needed if key not in row]
        if missing:
            raise DataError(f"{path}: row {index} lacks {', '.join(missing)}")
        key = str(row["question_id"])
        if key in table:
            raise DataError(f"{path}: question_id {key!r} appears twice (row {index})")
        table[key] = row
    return table


def _first(ids: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(i) for i in ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _options(row: dict, path: Path) -> tuple[str, ...]:
    option = row["option"]
    if isinstance(option, list):
        return tuple(str(o) for o in option)
    try:
        keyed = sorted((int(str(key).split()[-1]), str(text)) for key, text in option.items())
    except (AttributeError, ValueError, IndexError):  # not a dict, "option x", an empty key
        raise DataError(f'{path}: question {row["question_id"]!r}: option must be {{"option 0": ...}}') from None
    if [k for k, _ in keyed] != list(range(len(keyed))) or len(keyed) < 2:
        raise DataError(f"{path}: question {row['question_id']!r}: options must be numbered 0..n-1 (n >= 2)")
    return tuple(text for _, text in keyed)


def load_questions(question_file: Path, answer_file: Path) -> list[Question]:
    """The questions in question-file order, each with its gold answer; ids must match one to one."""
    questions = _by_id(_read_rows(question_file), question_file, ("question_id", "video_name", "question", "option"))
    answers = _by_id(_read_rows(answer_file), answer_file, ("question_id", "answer"))
    only_q = [key for key in questions if key not in answers]
    only_a = [key for key in answers if key not in questions]
    if only_q or only_a:
        parts = []
        if only_q:
            parts.append(f"{len(only_q)} question(s) without an answer in {answer_file}: {_first(only_q)}")
        if only_a:
            parts.append(f"{len(only_a)} answer(s) without a question in {question_file}: {_first(only_a)}")
        raise DataError("question and answer ids differ: " + "; ".join(parts))
    result = []
    for key, row in questions.items():
        options = _options(row, question_file)
        gold = answers[key]["answer"]
        if not isinstance(gold, int) or isinstance(gold, bool) or not 0 <= gold < len(options):
            raise DataError(
                f"{answer_file}: question {key!r}: answer {gold!r} is not an option index 0..{len(options) - 1}"
            )
        kind = row.get("type", answers[key].get("type"))
        result.append(
            Question(
                row["question_id"],
                str(row["video_name"]),
                str(row["question"]),
                options,
                gold,
                None if kind is None else str(kind),
            )
        )
    return result


def find_video(video_dir: Path, video_name: str) -> Path:
    """The video a question names: the name as given, else with each known extension (replacing the
    one given), else a folder of frames named like the video."""
    given = video_dir / video_name
    stem = given.with_suffix("") if given.suffix.lower() in VIDEO_EXTENSIONS else given
    candidates = [given] + [stem.with_name(stem.name + ext) for ext in VIDEO_EXTENSIONS] + [stem]
    for path in candidates:
        if path.is_file() or (path.is_dir() and path != video_dir):
            return path
    raise VideoError(f"no video {video_name!r} in {video_dir} (tried {', '.join(VIDEO_EXTENSIONS)} and a frame folder)")
