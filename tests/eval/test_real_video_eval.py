"""The evaluation front ends on the real-video corpus (tests/media_corpus.py), at their defaults:
`python -m llava.eval.videoqa` answers a question about every corpus file, and `python -m llava.eval.niavh
--haystack-dir` builds its haystack from each corpus video file and gets an answer for every cell.

The issue "Real video in": every 720p-or-larger video crashed every front end at the default 24 frames. So no
sampling option is passed here (no --model-path, --num-frames, --fps, --size, --sample-fps): both commands run on
the bundled demo model (checkpoints/videollamb-tiny-shapes, their default, fast on a CPU), which samples 24 frames
uniformly; NIAVH reads its haystack at its default 1 frame per second into 224-pixel test videos. Only the grid is
made minimal (one length, one depth) and the progress bar silenced (--quiet).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llava.eval import videoqa
from llava.model.config import VideoLLaMBConfig
from llava.eval.niavh.cli import PAPER_FPS
from llava.eval.niavh.cli import main as niavh
from llava.serve.chat_session import DEMO_CHECKPOINT
from tests.media_corpus import CORPUS_NAMES

HD = "h264_720p_22s"  # long enough for the demo model's 1 frame per second (tests/serve: 19 frames or more)
DEMO_SAMPLING = VideoLLaMBConfig.from_pretrained(DEMO_CHECKPOINT).frame_sampling
VIDEO_FILES = [name for name in CORPUS_NAMES if name != "frame_folder_png"]  # a haystack is a folder of video files
NIAVH_OTHERS = [name for name in VIDEO_FILES if name != HD]


# ================================================================ python -m llava.eval.videoqa
def write_bench(folder: Path, video_names: list[str]) -> tuple[Path, Path]:
    """One multiple-choice question per video, in the original file format."""
    questions = [{"video_name": name, "question_id": f"q{i}", "question": "What shape is shown?",
                  "option": {"option 0": "a circle", "option 1": "a square", "option 2": "a triangle"}}
                 for i, name in enumerate(video_names)]
    answers = [{"question_id": f"q{i}", "answer": 0} for i in range(len(video_names))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_q.json").write_text(json.dumps(questions))
    (folder / "test_a.json").write_text(json.dumps(answers))
    return folder / "test_q.json", folder / "test_a.json"


def run_videoqa(corpus, names: list[str], folder: Path, capsys) -> tuple[dict[str, dict], dict]:
    """`python -m llava.eval.videoqa --benchmark synthetic` over the corpus folder: rows by video name, scores."""
    q_file, a_file = write_bench(folder / "bench", [corpus[name].path.name for name in names])
    out = folder / "out"
    code = videoqa.main(["--benchmark", "synthetic", "--question-file", str(q_file), "--answer-file", str(a_file),
                         "--video-dir", str(corpus.folder), "--output-dir", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and not any(line.startswith("error:") for line in err.splitlines()), err
    rows = [json.loads(line) for line in (out / "merge.jsonl").read_text().splitlines()]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["num_questions"] == len(rows) == len(names) and scores["error_ids"] == []
    for row in rows:
        assert "error" not in row and isinstance(row["output"], str) and row["output"].strip(), row
    return {row["video_name"]: row for row in rows}, scores


def test_videoqa_answers_about_720p_at_defaults(corpus, tmp_path, capsys):
    """The synthetic benchmark samples as the checkpoint says (the demo model: 1 frame per second), over the
    1280x720 file, and records it."""
    rows, scores = run_videoqa(corpus, [HD], tmp_path, capsys)
    assert list(rows) == [corpus[HD].path.name]
    recorded = DEMO_SAMPLING.record()
    assert {key: scores.get(key) for key in recorded} == recorded and scores["model_path"] == str(DEMO_CHECKPOINT)


def test_videoqa_answers_about_every_corpus_file(corpus, tmp_path, capsys):
    """One run over the whole corpus (the 4K file and the folder of frames included): every question is answered;
    none is recorded as an unreadable video."""
    names = [name for name in CORPUS_NAMES if name != HD]
    rows, _ = run_videoqa(corpus, names, tmp_path, capsys)
    assert sorted(rows) == sorted(corpus[name].path.name for name in names)


# ================================================================ python -m llava.eval.niavh --haystack-dir
def run_niavh(corpus, name: str, folder: Path, capsys, *extra: str) -> tuple[list[dict], dict]:
    """NIAVH with a haystack folder holding the corpus file alone (a symlink), one length (4 s) and one depth."""
    hay = folder / "haystack"
    hay.mkdir()
    (hay / corpus[name].path.name).symlink_to(corpus[name].path)
    out = folder / "niavh"
    code = niavh(["--haystack-dir", str(hay), "--lengths", "4", "--depths", "50", "--output-dir", str(out),
                  "--quiet", *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err and "NIAVH" in captured.out
    cells = [json.loads(path.read_text()) for path in sorted((out / "cells").glob("*.json"))]
    for cell in cells:
        assert cell["haystack"].startswith("videos:haystack:") and cell["num_frames"] == 4, cell
        assert isinstance(cell["model_response"], str) and cell["model_response"].strip(), cell
        assert cell["score_range"][0] <= cell["score"] <= cell["score_range"][1], cell
        assert cell["model_settings"]["video_fps"] == PAPER_FPS, cell  # the demo samples uniformly: NIAVH's 1 fps
    return cells, json.loads((out / "summary.json").read_text())


def test_niavh_with_a_720p_haystack_at_defaults(corpus, tmp_path, capsys):
    """Every modality (text, image and video needles), the default 1 fps haystack at 224 px, the demo model."""
    cells, summary = run_niavh(corpus, HD, tmp_path, capsys)
    assert sorted(cell["modality"] for cell in cells) == ["image", "text", "video"]
    assert summary["num_cells"] == 3 and set(summary["per_modality"]) == {"image", "text", "video"}


@pytest.mark.parametrize("name", [name for name in NIAVH_OTHERS])
def test_niavh_haystack_of_every_corpus_video_file(corpus, tmp_path, capsys, name):
    (cell,) = run_niavh(corpus, name, tmp_path, capsys, "--modality", "image")[0]
    assert cell["modality"] == "image"
