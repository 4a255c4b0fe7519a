"""python -m llava.eval.videoqa end to end on a tiny synthetic benchmark with the tiny random checkpoint."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llava.conversation import VICUNA_SYSTEM
from llava.errors import VideoError
from llava.data.shapes_dataset import main as synthesize
from llava.eval import videoqa
from llava.eval.question_files import find_video
from llava.mm_utils import tokenize_prompt
from llava.serve.chat_session import ChatSession

REPO = Path(__file__).resolve().parents[2]
KINDS = ("first_scene", "last_scene", "count")


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Path:
    """3 videos (32 px, 2-3 scenes), 3 multiple-choice questions each, in the original file format."""
    out = tmp_path_factory.mktemp("mc")
    synthesize(["--out", str(out), "--num-videos", "3", "--seed", "1", "--size", "32", "--max-scenes", "3",
                "--format", "mc", "--kinds", ",".join(KINDS), "--quiet"])
    return out


def run(checkpoint, bench, out, *extra, benchmark="synthetic"):
    return videoqa.main([
        "--benchmark", benchmark, "--model-path", str(checkpoint), "--question-file", str(bench / "test_q.json"),
        "--answer-file", str(bench / "test_a.json"), "--video-dir", str(bench / "videos"), "--output", str(out),
        "--device", "cpu", "--max-new-tokens", "4", "--quiet", *extra,
    ])


def outputs(out: Path) -> tuple[bytes, bytes]:
    return (out / "merge.jsonl").read_bytes(), (out / "scores.json").read_bytes()


@pytest.fixture(scope="session")
def reference(tiny_checkpoint, bench, tmp_path_factory) -> Path:
    """One single-chunk run of the letter protocol, that the other runs are compared with."""
    out = tmp_path_factory.mktemp("reference")
    assert run(tiny_checkpoint, bench, out) == 0
    return out


def question_ids(bench):
    return [q["question_id"] for q in json.loads((bench / "test_q.json").read_text())]


def test_end_to_end_writes_merge_and_scores(reference, bench, tiny_checkpoint):
    scores = json.loads((reference / "scores.json").read_text())
    rows = [json.loads(line) for line in (reference / "merge.jsonl").read_text().splitlines()]
    assert [row["question_id"] for row in rows] == question_ids(bench)
    assert 0.0 <= scores["accuracy"] <= 1.0
    assert scores["num_questions"] == len(rows) == 9
    assert set(scores["per_type"]) == set(KINDS)
    assert scores["benchmark"] == "synthetic" and scores["protocol"] == "letter"
    assert scores["model_path"] == str(tiny_checkpoint) and scores["num_frames"] == 8  # the checkpoint's
    assert scores["unparsable"] == len(scores["unparsable_ids"]) == sum(row["pred"] is None for row in rows)
    assert all(row["correct"] == (row["pred"] == row["answer"]) for row in rows)
    assert not list(reference.glob(".*.tmp"))


def test_two_runs_are_identical(reference, bench, tiny_checkpoint, tmp_path):
    assert run(tiny_checkpoint, bench, tmp_path) == 0
    assert outputs(tmp_path) == outputs(reference)


def test_two_chunks_merge_to_the_single_run(reference, bench, tiny_checkpoint, tmp_path, capsys):
    assert run(tiny_checkpoint, bench, tmp_path, "--num-chunks", "2", "--chunk-idx", "1") == 0
    assert "merge once every chunk has finished" in capsys.readouterr().out
    assert not (tmp_path / "merge.jsonl").exists()
    assert run(tiny_checkpoint, bench, tmp_path, "--merge-only", "--num-chunks", "2") == 1
    assert "have no row" in capsys.readouterr().err
    assert run(tiny_checkpoint, bench, tmp_path, "--num-chunks", "2", "--chunk-idx", "0") == 0
    assert [len(p.read_text().splitlines()) for p in sorted(tmp_path.glob("chunk_*"))] == [5, 4]
    assert outputs(tmp_path) == outputs(reference)
    (tmp_path / "merge.jsonl").unlink()
    assert run(tiny_checkpoint, bench, tmp_path, "--merge-only", "--num-chunks", "2") == 0
    assert outputs(tmp_path) == outputs(reference)


def test_killed_run_resumes_without_duplicates_or_losses(reference, bench, tiny_checkpoint, tmp_path, monkeypatch):
    chunk = tmp_path / "chunk_0_of_1.jsonl"
    tmp_path.joinpath("run.json").write_bytes(reference.joinpath("run.json").read_bytes())
    lines = reference.joinpath("chunk_0_of_1.jsonl").read_bytes().splitlines(keepends=True)
    chunk.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])  # rows 6-9 lost, row 6 cut mid-line
    answered = []
    original = videoqa.Answerer.__call__
    monkeypatch.setattr(videoqa.Answerer, "__call__",
                        lambda self, q: answered.append(q.question_id) or original(self, q))
    assert run(tiny_checkpoint, bench, tmp_path) == 0
    assert answered == question_ids(bench)[5:]
    ids = [json.loads(line)["question_id"] for line in chunk.read_text().splitlines()]
    assert sorted(ids) == sorted(question_ids(bench)) and len(ids) == len(set(ids))
    assert outputs(tmp_path) == outputs(reference)


def test_rerun_of_a_complete_chunk_loads_no_model(reference, bench, tiny_checkpoint, tmp_path, monkeypatch):
    for name in ("run.json", "chunk_0_of_1.jsonl"):
        shutil.copy(reference / name, tmp_path / name)
    monkeypatch.setattr(videoqa, "Answerer", None)  # would fail if called
    assert run(tiny_checkpoint, bench, tmp_path) == 0
    assert outputs(tmp_path) == outputs(reference)


def test_other_settings_into_the_same_output_are_refused(reference, bench, tiny_checkpoint, tmp_path, capsys):
    for name in ("run.json", "chunk_0_of_1.jsonl"):
        shutil.copy(reference / name, tmp_path / name)
    assert run(tiny_checkpoint, bench, tmp_path, "--protocol", "likelihood") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "protocol 'letter' -> 'likelihood'" in err and len(err.splitlines()) == 1


def test_bad_video_is_recorded_and_the_run_continues(bench, tiny_checkpoint, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(bench, data)
    broken = json.loads((data / "test_q.json").read_text())[0]["video_name"]
    (data / "videos" / broken).write_bytes(b"not a video")
    assert run(tiny_checkpoint, data, tmp_path / "out") == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "merge.jsonl").read_text().splitlines()]
    bad = [row for row in rows if row["video_name"] == broken]
    assert len(bad) == 3 and all(row["error"] and row["correct"] is False for row in bad)
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["error_ids"] == [row["question_id"] for row in bad]
    assert scores["num_questions"] == 9


def test_question_and_answer_ids_must_match(bench, tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    answers = json.loads((bench / "test_a.json").read_text())
    answers[0]["question_id"] = "nope"
    (data / "test_a.json").write_text(json.dumps(answers[:-1]))
    shutil.copy(bench / "test_q.json", data / "test_q.json")
    (data / "videos").symlink_to(bench / "videos")
    assert run(tiny_checkpoint, data, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    ids = question_ids(bench)
    assert "2 question(s) without an answer" in err and repr(ids[0]) in err and repr(ids[-1]) in err
    assert "1 answer(s) without a question" in err and "'nope'" in err
    assert not (tmp_path / "out").exists()


def test_find_video_tries_extensions_and_frame_folders(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.webm").write_bytes(b"x")
    (tmp_path / "c").mkdir()
    assert find_video(tmp_path, "a.mp4") == tmp_path / "a.mp4"
    assert find_video(tmp_path, "a") == tmp_path / "a.mp4"
    assert find_video(tmp_path, "b.mp4") == tmp_path / "b.webm"
    assert find_video(tmp_path, "c.avi") == tmp_path / "c"
    with pytest.raises(VideoError, match="no video 'd'"):
        find_video(tmp_path, "d")


def direct_losses(checkpoint, video, question, options):
    """Mean cross-entropy of each option's tokens, from the logits of a plain forward (no labels)."""
    session = ChatSession.from_pretrained(checkpoint, device="cpu")
    session.load_video(video)
    losses = []
    for option in options:
        prompt = f"{VICUNA_SYSTEM} USER: <video>\n{question} ASSISTANT: {option}</s>"
        start = prompt.index(" ASSISTANT:") + len(" ASSISTANT:")
        ids, labels = tokenize_prompt(prompt, session.tokenizer, [(start, len(prompt) - len("</s>"))])
        at = [i for i, token in enumerate(ids) if token < 0]
        assert len(at) == 1
        n = session.media.shape[0]
        expanded = torch.tensor(labels[: at[0]] + [-100] * n + labels[at[0] + 1 :])
        with torch.no_grad():
            logits = session.model(input_ids=torch.tensor([ids]), visual_features=[session.media]).logits[0]
        targets = expanded[1:]
        keep = targets != -100
        logp = torch.log_softmax(logits[:-1].float(), dim=-1)[keep]
        losses.append(float(-logp.gather(1, targets[keep][:, None]).mean()))
    return losses


def test_likelihood_protocol_picks_the_lowest_mean_cross_entropy(bench, tiny_checkpoint, tmp_path):
    assert run(tiny_checkpoint, bench, tmp_path, "--protocol", "likelihood") == 0
    rows = [json.loads(line) for line in (tmp_path / "merge.jsonl").read_text().splitlines()]
    assert all(row["pred"] == min(range(len(row["losses"])), key=row["losses"].__getitem__) for row in rows)
    question = json.loads((bench / "test_q.json").read_text())[4]
    options = [question["option"][f"option {i}"] for i in range(len(question["option"]))]
    expected = direct_losses(tiny_checkpoint, bench / "videos" / question["video_name"], question["question"], options)
    row = rows[4]
    assert row["losses"] == pytest.approx(expected, abs=1e-4)
    assert row["pred"] == min(range(len(expected)), key=expected.__getitem__)
    assert json.loads((tmp_path / "scores.json").read_text())["protocol"] == "likelihood"


@pytest.mark.slow  # about 15-20 s: a fresh interpreter loads torch twice (chunk, then merge)
def test_shell_script_runs_one_cpu_chunk(bench, tiny_checkpoint, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "MODEL_PATH": str(tiny_checkpoint),
           "DATA_DIR": str(bench), "OUTPUT_DIR": str(tmp_path / "out"), "NUM_FRAMES": "8", "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    done = subprocess.run(["bash", str(REPO / "scripts" / "eval" / "egoschema.sh"), "--max-new-tokens", "4"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "one chunk on the CPU" in done.stdout and "overall (egoschema)" in done.stdout
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores["benchmark"] == "egoschema" and scores["num_frames"] == 8 and 0 <= scores["accuracy"] <= 1
    assert [p.name for p in (tmp_path / "out").glob("chunk_*")] == ["chunk_0_of_1.jsonl"]
    print(f"shell script took {time.monotonic() - start:.1f} s")


def test_ffmpeg_lines_about_a_broken_video_only_with_verbose(bench, tiny_checkpoint, tmp_path, capfd):
    """The broken video's row records the error either way; FFmpeg's own lines (fd 2) only come with --verbose."""
    from llava.logs import set_media_logging

    data = tmp_path / "data"
    shutil.copytree(bench, data)
    broken = data / "videos" / json.loads((data / "test_q.json").read_text())[0]["video_name"]
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # truncated: FFmpeg logs about it
    try:
        set_media_logging(True)  # as an earlier caller in this process may have left it: main() decides
        capfd.readouterr()
        assert run(tiny_checkpoint, data, tmp_path / "quiet") == 0
        assert capfd.readouterr().err == ""
        assert run(tiny_checkpoint, data, tmp_path / "verbose", "--verbose") == 0
        assert "moov atom not found" in capfd.readouterr().err
    finally:
        set_media_logging(False)
    for out in ("quiet", "verbose"):
        rows = [json.loads(line) for line in (tmp_path / out / "merge.jsonl").read_text().splitlines()]
        assert sum(bool(row.get("error")) for row in rows) == 3


def test_benchmark_frame_counts_keep_a_released_checkpoints_rate_rule():
    """A released checkpoint samples uniformly at the benchmark's count; asked for a rate it still counts frames
    by the release's rule (its config's rate_sampling), not this project's."""
    from llava.video.sampling import FrameSampling

    released = FrameSampling(num_frames=16, rate_rule="release_videollamb")
    bench = ["--benchmark", "egoschema", "--question-file", "q.json", "--answer-file", "a.json", "--output", "o"]
    uniform = videoqa.benchmark_sampling(videoqa.parse_args(bench), released)
    assert (uniform.num_frames, uniform.fps, uniform.rate_rule) == (16, None, "release_videollamb")
    at_rate = videoqa.benchmark_sampling(videoqa.parse_args([*bench, "--video-fps", "1"]), released)
    assert (at_rate.fps, at_rate.rate_rule) == (1.0, "release_videollamb")
