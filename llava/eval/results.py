"""Result files of a video QA run: per-chunk JSONL that survives a kill, the run record, the merge.

OUT/chunk_{i}_of_{K}.jsonl   one row per question, appended and flushed as each is answered
OUT/run.json                 what produced the rows (benchmark, model, frames, protocol): a rerun into the
                             same folder with other settings is refused instead of mixing results
OUT/merge.jsonl, scores.json written at the end, each to a temp file renamed into place

`report_scores`: the scores of a run on generated videos (shapes_scores, grounding), printed and saved.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from llava.atomic import write_json_atomic, write_text_atomic
from llava.errors import DataError

RUN_FILE = "run.json"


def chunk_slice(num_questions: int, num_chunks: int, chunk_idx: int) -> slice:
    """The chunk_idx-th of num_chunks contiguous, near-equal chunks (the first ones are one longer)."""
    size, extra = divmod(num_questions, num_chunks)
    start = chunk_idx * size + min(chunk_idx, extra)
    return slice(start, start + size + (chunk_idx < extra))


def chunk_path(out: Path, chunk_idx: int, num_chunks: int) -> Path:
    return out / f"chunk_{chunk_idx}_of_{num_chunks}.jsonl"


def read_rows(path: Path) -> list[dict]:
    """The complete rows of a JSONL file (read only): a last line cut by a kill, or a damaged line, is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n"):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict) and "question_id" in row:
            rows.append(row)
    return rows


def resume_chunk(path: Path, wanted: Sequence) -> dict[str, dict]:
    """The rows already answered in this chunk's file, by question id. The file is rewritten (atomically) to
    hold exactly those rows, each once, when it held anything else: a line cut by a kill, a duplicate, a
    row of another chunk. Only the process that owns the chunk may call this."""
    wanted_ids = {str(q) for q in wanted}
    done: dict[str, dict] = {}
    for row in read_rows(path):
        key = str(row["question_id"])
        if key in wanted_ids and key not in done:
            done[key] = row
    text = "".join(dumps(row) + "\n" for row in done.values())
    if path.is_file() and path.read_bytes() != text.encode("utf-8"):
        write_text_atomic(path, text)
    return done


def dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, sort_keys=True)


def append_row(handle: IO[str], row: dict) -> None:
    """One complete line, flushed at once: a kill loses at most the row being written."""
    handle.write(dumps(row) + "\n")
    handle.flush()


def check_run(out: Path, record: dict) -> None:
    """Refuse to mix results: the run record in OUT must agree with `record` (None values are not compared)."""
    path = out / RUN_FILE
    if not path.is_file():
        return
    previous = load_run(out)
    differ = [key for key, value in record.items() if value is not None and previous.get(key) != value]
    if differ:
        changes = ", ".join(f"{key} {previous.get(key)!r} -> {record[key]!r}" for key in differ)
        raise DataError(f"{out} holds results of another run ({changes}); use a new --output or delete it")


def load_run(out: Path) -> dict:
    path = out / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no run record; run the chunks before --merge-only") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise DataError(f"{path}: unreadable run record ({err})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: unreadable run record (not a JSON object)")
    return record


def save_run(out: Path, record: dict) -> None:
    write_text_atomic(out / RUN_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")


def collect(out: Path, num_chunks: int, question_ids: Iterable) -> tuple[list[dict], list]:
    """(rows in question-file order, ids with no row yet) over all chunk files of a K-chunk run."""
    found: dict[str, dict] = {}
    for index in range(num_chunks):
        for row in read_rows(chunk_path(out, index, num_chunks)):
            found.setdefault(str(row["question_id"]), row)
    rows: list[dict] = []
    missing: list = []
    for qid in question_ids:
        hit = found.get(str(qid))
        if hit is None:
            missing.append(qid)
        else:
            rows.append(hit)
    return rows, missing


def write_merge(out: Path, rows: list[dict], scores: dict) -> None:
    write_text_atomic(out / "merge.jsonl", "".join(dumps(row) + "\n" for row in rows))
    write_text_atomic(out / "scores.json", json.dumps(scores, indent=1) + "\n")


def report_scores(scores: dict, output: Path | None) -> None:
    """Print `scores` as JSON and, given an `output` file, write them there too (atomically)."""
    print(json.dumps(scores, indent=2))
    if output:
        write_json_atomic(scores, output)
