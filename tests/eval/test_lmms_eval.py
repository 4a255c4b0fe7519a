"""lmms-eval runs VideoLLaMB (`--model videollamb`, registered by this package's entry point) on tasks written from
synthetic multiple-choice files, for every request kind (generate_until, loglikelihood, generate_until_multi_round),
and scores every question as `llava.eval.videoqa` does (the multi-round task: in every rotation of its options)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llava.data.shapes_dataset import main as synthesize
from llava.eval import lmms_eval_task, videoqa
from llava.eval.answers import extract_choice, letter_prompt, rotations
from llava.serve.reply_likelihood import option_scores
from llava.eval.lmms_eval_model import cut_at_stops
from llava.serve.chat_session import DEMO_CHECKPOINT, SHORT_MAX_NEW_TOKENS, ChatSession, GenerationSettings


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """3 videos (32 px), 3 multiple-choice questions each, in the original file format."""
    out = tmp_path_factory.mktemp("lmms_mc")
    synthesize(["--out", str(out), "--num-videos", "3", "--seed", "1", "--size", "32", "--max-scenes", "3",
                "--format", "mc", "--kinds", "first_scene,last_scene,count", "--quiet"])
    return out


@pytest.fixture(scope="module")
def tasks(bench, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lmms_tasks")
    assert lmms_eval_task.main(["--question-file", str(bench / "test_q.json"), "--answer-file",
                                str(bench / "test_a.json"), "--output", str(out), "--name", "tiny_mc"]) == 0
    return out


@pytest.fixture(scope="module")
def lmms_run(tiny_checkpoint, tasks, tmp_path_factory) -> dict:
    """One `python -m lmms_eval` run of both tasks in a fresh process; its scores and per-question samples."""
    out = tmp_path_factory.mktemp("lmms_out")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(out / "hf")}
    command = [sys.executable, "-m", "lmms_eval", "--model", "videollamb",
               "--model_args", f"pretrained={tiny_checkpoint},device=cpu",
               "--tasks", "tiny_mc_letter,tiny_mc_likelihood,tiny_mc_circular", "--include_path", str(tasks),
               "--output_path", str(out / "results"), "--log_samples"]
    run = subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    results = list((out / "results").rglob("*_results.json"))
    assert run.returncode == 0 and len(results) == 1, run.stdout[-3000:] + run.stderr[-3000:]  # errors exit 0 too
    samples = {}
    for task in ("tiny_mc_letter", "tiny_mc_likelihood", "tiny_mc_circular"):
        (path,) = (out / "results").rglob(f"*_samples_{task}.jsonl")
        samples[task] = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
    return {"results": json.loads(results[0].read_text())["results"], "samples": samples}


def videoqa_run(checkpoint, bench, out, protocol) -> tuple[dict, list[dict]]:
    assert videoqa.main(["--benchmark", "synthetic", "--model-path", str(checkpoint), "--question-file",
                         str(bench / "test_q.json"), "--answer-file", str(bench / "test_a.json"), "--output", str(out),
                         "--device", "cpu", "--protocol", protocol, "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "merge.jsonl").read_text().splitlines()]
    return json.loads((out / "scores.json").read_text()), rows


def test_the_model_is_registered_through_the_entry_point():
    from lmms_eval.models import get_model

    from llava.eval.lmms_eval_model import VideoLLaMB

    assert get_model("videollamb") is VideoLLaMB


def test_task_files_hold_every_question_with_its_video(bench, tasks):
    rows = [json.loads(line) for line in (tasks / lmms_eval_task.DATA_FILE).read_text().splitlines()]
    questions = json.loads((bench / "test_q.json").read_text())
    assert [row["question_id"] for row in rows] == [str(q["question_id"]) for q in questions]
    assert all(Path(row["video"]).is_absolute() and Path(row["video"]).is_file() for row in rows)
    names = {f"tiny_mc_{kind}.yaml" for kind in ("letter", "likelihood", "circular")}
    assert {path.name for path in tasks.glob("*.yaml")} == names


def test_generation_agrees_with_videoqa_letter(lmms_run, tiny_checkpoint, bench, tmp_path):
    scores, rows = videoqa_run(tiny_checkpoint, bench, tmp_path, "letter")
    samples = lmms_run["samples"]["tiny_mc_letter"]
    assert [s["filtered_resps"] for s in samples] == [row["output"] for row in rows]
    assert [s["acc"] for s in samples] == [float(row["correct"]) for row in rows]
    assert lmms_run["results"]["tiny_mc_letter"]["acc,none"] == pytest.approx(scores["accuracy"])


def test_loglikelihood_agrees_with_videoqa_likelihood(lmms_run, tiny_checkpoint, bench, tmp_path):
    scores, rows = videoqa_run(tiny_checkpoint, bench, tmp_path, "likelihood")
    samples = lmms_run["samples"]["tiny_mc_likelihood"]
    losses = [[float(loss) for loss, _greedy in s["filtered_resps"]] for s in samples]
    assert losses == [pytest.approx(row["losses"], abs=1e-5) for row in rows]
    assert [s["acc"] for s in samples] == [float(row["correct"]) for row in rows]
    assert lmms_run["results"]["tiny_mc_likelihood"]["acc,none"] == pytest.approx(scores["accuracy"])


def test_multi_round_asks_every_rotation_and_scores_it_circularly(lmms_run, tiny_checkpoint, bench):
    """Each round's answer is the session's own answer to that rotation's prompt (a new conversation per round),
    and a question counts only when every rotation is answered right."""
    session = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    short = GenerationSettings(max_new_tokens=SHORT_MAX_NEW_TOKENS, temperature=0.0)  # the task's generation_kwargs
    samples = lmms_run["samples"]["tiny_mc_circular"]
    questions = json.loads((bench / "test_q.json").read_text())
    answers = {a["question_id"]: a["answer"] for a in json.loads((bench / "test_a.json").read_text())}
    all_right, shares = [], []
    for sample, question in zip(samples, questions):
        session.load_video(bench / "videos" / question["video_name"])
        turns = rotations(list(question["option"].values()), answers[question["question_id"]])
        said = []
        for options, _gold in turns:
            session.reset()
            said.append(session.ask(letter_prompt(question["question"], options), short))
        assert sample["filtered_resps"] in (said, [said])
        right = [extract_choice(answer, options) == gold for answer, (options, gold) in zip(said, turns)]
        assert sample["acc"] == float(all(right)) and sample["rotation_acc"] == pytest.approx(sum(right) / 4)
        all_right.append(all(right))
        shares.append(sum(right) / 4)
    assert len(samples) == len(questions) == 9
    results = lmms_run["results"]["tiny_mc_circular"]
    assert results["acc,none"] == pytest.approx(sum(all_right) / 9)
    assert results["rotation_acc,none"] == pytest.approx(sum(shares) / 9)


def test_circular_results_read_each_round_against_its_rotation():
    doc = {"question_id": "q", "question": "Q?", "options": ["a red circle", "two", "three", "four"], "answer": 0}
    turns = rotations(doc["options"], 0)
    right = ["A", "D", "a red circle", "(B)"]  # rotation k puts the answer at index -k mod 4
    assert [extract_choice(a, options) == gold for a, (options, gold) in zip(right, turns)] == [True] * 4
    assert lmms_eval_task.circular_results(doc, [right]) == {"acc": 1.0, "rotation_acc": 1.0}
    assert lmms_eval_task.circular_results(doc, right[:3] + ["A"]) == {"acc": 0.0, "rotation_acc": 0.75}
    with pytest.raises(ValueError, match="3 answers for 4 rotations"):
        lmms_eval_task.circular_results(doc, right[:3])
    assert lmms_eval_task.doc_to_rotated_prompt(doc) == letter_prompt("Q?", doc["options"])
    doc["video"] = "/v.mp4"
    visuals, prompt, done, kept, _ = lmms_eval_task.doc_to_rotated_prompt(doc, previous_output=["A"], round_idx=1)
    assert (visuals, prompt, done, kept) == (["/v.mp4"], letter_prompt("Q?", turns[1][0]), False, ["A"])
    assert lmms_eval_task.doc_to_rotated_prompt(doc, previous_output=right, round_idx=4)[2] is True


def test_an_option_is_greedy_exactly_when_it_is_the_model_s_own_answer():
    session = ChatSession.from_pretrained(DEMO_CHECKPOINT, device="cpu")
    session.load_video(Path(__file__).resolve().parents[2] / "playground" / "demo" / "shapes.mp4")
    question = "What was in the first scene?"
    answer = session.ask(question)
    own, other = option_scores(session, question, [answer, answer + " and a red circle"])
    assert own.greedy and not other.greedy
    assert own.loss < other.loss


def test_cut_at_stops():
    assert cut_at_stops("A. a red circle\n\nmore", ["\n\n"]) == "A. a red circle"
    assert cut_at_stops("B then C", ["C", " then"]) == "B"
    assert cut_at_stops("answer", []) == cut_at_stops("answer", None) == "answer"
