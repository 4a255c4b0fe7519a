"""NIAVH: needle placement inside the video, cache keys, circular multiple choice, resume, report, judge, CLI."""

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava.data.shapes_world import COLOURS
from llava.errors import LlavaError
from llava.eval.niavh.cli import main
from llava.eval.niavh.grid import ORIGINAL_DEPTHS, ORIGINAL_LENGTHS, place
from llava.eval.niavh.haystack import SyntheticHaystack, VideoHaystack
from llava.eval.niavh.needles import ObjectNeedle, PictureNeedle, Probe, TextNeedle
from llava.eval.niavh.report import write_report
from llava.eval.niavh.runner import RunSettings, SessionGenerator, build_test_video, run_grid
from llava.eval.niavh.scoring import JudgeScorer, KeywordScorer, MultipleChoiceScorer, parse_judge_score
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.video.decode import open_video
from llava.video.write import write_mp4

OBJ = ("purple", "triangle")
PROBE = Probe("What object appeared briefly in the video?", "a purple triangle",
              ("a red circle", "a purple triangle", "a blue square", "a green triangle"), 1)


def _decode_all(path: Path) -> np.ndarray:
    with open_video(path) as video:
        return video.get_frames(np.arange(video.num_frames))


def test_needle_lies_inside_the_video_at_depth_100(tmp_path):
    for length in ORIGINAL_LENGTHS:  # the placement rule over the whole original grid
        for depth in ORIGINAL_DEPTHS:
            cell = place(length, depth, fps=1.0)
            assert 0 <= cell.start_frame and cell.start_frame + cell.needle_frames <= cell.num_frames
    assert place(1, 50, 1.0).trivial and not place(9, 50, 1.0).trivial

    haystack, needle = SyntheticHaystack(0, OBJ), ObjectNeedle(*OBJ, moving=False)
    cell = place(6, 100, fps=2.0)  # 12 frames, the needle on the last two
    frames = _decode_all(build_test_video(tmp_path, haystack, needle, cell, size=64))
    assert len(frames) == 12
    bare = haystack.frames(12, 2.0, 64)
    centre = (slice(28, 36), slice(28, 36))
    changed = np.abs(frames[:, centre[0], centre[1]].astype(int) - bare[:, centre[0], centre[1]]).mean(axis=(1, 2, 3))
    assert np.flatnonzero(changed > 40).tolist() == [10, 11]
    purple = np.array(COLOURS["purple"])
    for i in (10, 11):
        assert np.abs(frames[i, 32, 32].astype(int) - purple).max() < 30


def test_the_synthetic_haystack_never_shows_the_needles_colour():
    purple = np.array(COLOURS[OBJ[0]])
    plain = SyntheticHaystack(0).frames(120, 1.0, 32)
    assert (np.abs(plain.astype(int) - purple).max(axis=-1) < 30).any()  # the unreserved haystack has purple scenes
    frames = SyntheticHaystack(0, OBJ).frames(120, 1.0, 32)
    assert not (np.abs(frames.astype(int) - purple).max(axis=-1) < 30).any()


def test_cache_key_holds_the_needle_identity(tmp_path):
    haystack, cell = SyntheticHaystack(0, OBJ), place(4, 50, fps=1.0)
    first = build_test_video(tmp_path, haystack, ObjectNeedle("purple", "triangle", moving=True), cell, 32)
    second = build_test_video(tmp_path, haystack, ObjectNeedle("red", "circle", moving=True), cell, 32)
    assert first != second and len(list(tmp_path.glob("*.mp4"))) == 2
    stamp = first.stat().st_mtime_ns
    assert build_test_video(tmp_path, haystack, ObjectNeedle(*OBJ, moving=True), cell, 32) == first
    assert first.stat().st_mtime_ns == stamp and len(list(tmp_path.glob("*.mp4"))) == 2


def _reads_options(instruction: str, video=None) -> str:
    """A model that finds the right answer among the lettered options, wherever it is."""
    options = dict(re.findall(r"^([A-D])\. (.+)$", instruction, flags=re.M))
    return next(letter for letter, text in options.items() if text == PROBE.answer)


def test_circular_multiple_choice():
    scorer = MultipleChoiceScorer()
    asked = []
    always_a = scorer.score(PROBE, lambda instruction: asked.append(instruction) or "A")
    assert always_a["score"] == 0.0 and not always_a["correct"] and len(asked) == 4
    assert len({a for a in asked}) == 4  # every rotation asked
    right = scorer.score(PROBE, _reads_options)
    assert right["score"] == 1.0 and right["rotations_correct"] == 4
    # right in three rotations out of four is still wrong
    flaky = iter(["B", "A", "D", "A"])
    assert scorer.score(PROBE, lambda instruction: next(flaky))["score"] == 0.0


def test_keyword_scoring():
    scorer = KeywordScorer()
    assert scorer.score(PROBE, lambda q: "A purple triangle.")["match"] == "exact"
    assert scorer.score(PROBE, lambda q: "I saw a triangle, purple")["match"] == "keyword"
    assert scorer.score(PROBE, lambda q: "a purple circle")["score"] == 0.0


def _needles():
    return {"image": ObjectNeedle(*OBJ, moving=False)}


def test_interrupted_run_resumes(tmp_path):
    settings = RunSettings(lengths=(4, 8), depths=(0, 100), size=32)
    calls = []

    def crashing(instruction, video):
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append(video)
        return "a purple triangle"

    with pytest.raises(RuntimeError):
        run_grid(crashing, _needles(), SyntheticHaystack(0, OBJ), KeywordScorer(), settings, tmp_path,
                 progress=False)
    assert len(list((tmp_path / "cells").glob("*.json"))) == 2

    again = []
    records = run_grid(lambda instruction, video: again.append(video) or "a purple triangle", _needles(),
                       SyntheticHaystack(0, OBJ), KeywordScorer(), settings, tmp_path, progress=False)
    assert len(again) == 2 and not set(again) & set(calls)
    files = sorted((tmp_path / "cells").glob("*.json"))
    cells = [(r["context_length"], r["depth_percent"]) for r in map(json.loads, map(Path.read_text, files))]
    assert len(files) == 4 and sorted(cells) == [(4, 0), (4, 100), (8, 0), (8, 100)]
    assert all(r["score"] == 1.0 for r in records)


def test_summary_and_heatmaps(tmp_path):
    settings = RunSettings(lengths=(4, 8), depths=(0, 100), size=32)
    needles = {"text": TextNeedle("a purple triangle", ("a red circle", "a blue square", "a green circle")),
               **_needles()}
    answer = iter(["a purple triangle", "no", "a purple triangle", "no"] * 2)
    records = run_grid(lambda i, v: next(answer), needles, SyntheticHaystack(0, OBJ), KeywordScorer(),
                       settings, tmp_path, progress=False)
    summary = write_report(records, tmp_path)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["mean"] == 0.5 and saved["num_cells"] == 8
    assert saved["per_modality"] == {"text": 0.5, "image": 0.5}
    assert saved["per_depth"] == {"0": 1.0, "100": 0.0} and set(saved["per_length"]) == {"4", "8"}
    for modality in ("text", "image"):
        png = tmp_path / f"heatmap_{modality}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert summary["heatmaps"][modality] == png.name


def test_needle_localisation_and_its_heatmap(tmp_path):
    """A cell is localised when the answer's best evidence span holds at least half the needle's time; the report
    gives its mean and a second heatmap."""
    settings = RunSettings(lengths=(4, 8), depths=(0, 100), size=32)
    located = []

    def locate(instruction, video, answer):
        located.append((instruction, answer))
        return (0.0, 1.4, 0.3)  # the first 1.4 seconds: holds a needle at depth 0, not one at the end

    records = run_grid(lambda i, v: "a purple triangle", _needles(), SyntheticHaystack(0, OBJ), KeywordScorer(),
                       settings, tmp_path, progress=False, locate=locate)
    assert located == [(PROBE.question, "a purple triangle")] * 4
    assert [(r["depth_percent"], r["needle_localised"]) for r in records] == [(0, 1.0), (100, 0.0)] * 2
    assert records[0]["evidence"] == {"start": 0.0, "end": 1.4, "score": 0.3}
    summary = write_report(records, tmp_path)
    assert summary["localisation_mean"] == 0.5 and summary["modalities"]["image"]["localisation_mean"] == 0.5
    png = tmp_path / summary["heatmaps"]["image_localisation"]
    assert png.name == "heatmap_image_localisation.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plain = write_report(run_grid(lambda i, v: "no", _needles(), SyntheticHaystack(0, OBJ), KeywordScorer(),
                                  settings, tmp_path / "plain", progress=False), tmp_path / "plain")
    assert plain["localisation_mean"] is None and "image_localisation" not in plain["heatmaps"]


@pytest.fixture()
def fake_judge():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            reply = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"], "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Score: 7"}, "finish_reason": "stop"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()
    server.server_close()


def test_llm_judge_through_a_fake_server(fake_judge):
    url, seen = fake_judge
    result = JudgeScorer(url, "secret").score(PROBE, lambda question: "I think a purple triangle")
    assert result["score"] == 7.0 and result["model_response"] == "I think a purple triangle"
    path, auth, body = seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer secret" and body["temperature"] == 0
    assert "a purple triangle" in body["messages"][-1]["content"]
    assert parse_judge_score("10") == 10.0
    with pytest.raises(LlavaError):
        parse_judge_score("Score: 42")


def test_user_haystack_and_needle_files(tmp_path):
    folder = tmp_path / "hay"
    clip = [np.full((24, 40, 3), 40 * i, dtype=np.uint8) for i in range(3)]
    write_mp4(clip, folder / "a.mp4", fps=1)
    frames = VideoHaystack(folder).frames(7, 1.0, 16)  # looped: 0 1 2 0 1 2 0
    assert frames.shape == (7, 16, 16, 3)
    assert np.abs(frames[3].astype(int) - frames[0]).max() < 8 and frames[2].mean() > frames[1].mean() + 20

    picture = np.zeros((10, 10, 4), dtype=np.uint8)
    picture[..., 0], picture[2:8, 2:8, 3] = 255, 255  # a red square on a transparent background
    Image.fromarray(picture).save(tmp_path / "needle.png")
    needle = PictureNeedle(tmp_path / "needle.png", "a red square", ("x", "y", "z"), scale=0.5)
    frame = np.zeros((40, 40, 3), dtype=np.uint8)
    needle.paint(frame, 0, 1.0)
    assert tuple(frame[20, 20]) == (255, 0, 0) and frame[11, 11].max() == 0 and frame[0, 0].max() == 0


@pytest.mark.parametrize("extra, message", [
    (["--haystack-dir", "no/such/folder"], "haystack folder"),
    (["--lengths", "4,x"], "--lengths"),
    (["--depths", "0,150"], "--depths"),
    (["--needle-image", "missing.png", "--needle-description", "a cat", "--distractors", "a;b;c"], "needle image"),
])
def test_cli_user_errors(tmp_path, capsys, extra, message):
    assert main(["--modality", "image", "--output", str(tmp_path), "--quiet", *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_cli_end_to_end(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "niavh"
    argv = ["--model-path", str(tiny_checkpoint), "--device", "cpu", "--modality", "image", "--lengths", "4,8",
            "--depths", "0,100", "--output", str(out), "--size", "32", "--max-new-tokens", "3", "--quiet",
            "--control"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cells"] == 4 and summary["scoring"] == "mc" and 0.0 <= summary["mean"] <= 1.0
    assert 0.0 <= summary["control_mean"] <= 1.0 and 0.0 <= summary["net_mean"] <= summary["mean"]
    assert set(summary["per_length"]) == {"4", "8"} and set(summary["per_depth"]) == {"0", "100"}
    assert (out / "heatmap_image.png").stat().st_size > 0
    assert len(list((out / "cells").glob("*.json"))) == 4 and len(list((out / "videos").glob("*.mp4"))) == 4 + 2
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert all(c["needle_localised"] in (0.0, 1.0) and c["evidence"]["start"] < c["evidence"]["end"] for c in cells)
    assert summary["localisation_mean"] == np.mean([c["needle_localised"] for c in cells])
    assert (out / "heatmap_image_localisation.png").stat().st_size > 0
    assert "NIAVH" in capsys.readouterr().out


def test_a_retrained_or_reconfigured_checkpoint_never_reuses_the_old_cells(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, folder)
    out = tmp_path / "niavh"
    argv = ["--model-path", str(folder), "--device", "cpu", "--modality", "image", "--lengths", "4",
            "--depths", "50", "--output", str(out), "--size", "32", "--max-new-tokens", "2", "--quiet"]
    assert main(argv) == 0
    model = VideoLLaMBForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.mm_projector[0].bias.add_(1.0)
    model.save_pretrained(folder)  # same folder, same name, new weights
    assert main(argv) == 0
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(cells) == 2 and cells[0]["model_settings"]["weights"] != cells[1]["model_settings"]["weights"]
    config = json.loads((folder / "config.json").read_text())
    config["bridge_config"]["scenetilling_feature"] = "tokens"  # the same weights, segmented otherwise
    (folder / "config.json").write_text(json.dumps(config))
    assert main(argv) == 0
    assert len(list((out / "cells").glob("*.json"))) == 3


def test_control_separates_finding_the_needle_from_naming_it_anyway(tmp_path):
    settings = RunSettings(lengths=(4, 8), depths=(0, 50, 100), size=32, control=True)
    asked = []

    def finder(instruction, video):  # sees the needle only where it is: wrong on the haystack alone
        asked.append(Path(video).name)
        return "a red circle" if Path(video).name.startswith("control_") else "a purple triangle"

    records = run_grid(finder, _needles(), SyntheticHaystack(0, OBJ), KeywordScorer(), settings, tmp_path / "finder",
                       cache_dir=tmp_path / "videos", progress=False)
    assert [(r["score"], r["control_score"], r["net_score"]) for r in records] == [(1.0, 0.0, 1.0)] * 6
    assert len({name for name in asked if name.startswith("control_")}) == 2  # one haystack-only video per length
    guesser = run_grid(lambda instruction, video: "a purple triangle", _needles(), SyntheticHaystack(0, OBJ),
                       KeywordScorer(), settings, tmp_path / "guesser", cache_dir=tmp_path / "videos", progress=False)
    assert all(r["score"] == 1.0 and r["control_score"] == 1.0 and r["net_score"] == 0.0 for r in guesser)
    summary = write_report(guesser, tmp_path / "guesser")
    assert (summary["mean"], summary["control_mean"], summary["net_mean"]) == (1.0, 1.0, 0.0)
    assert write_report(records, tmp_path / "finder")["net_mean"] == 1.0
    # the control video is the haystack itself: the same frames as a test video outside its needle
    control = next((tmp_path / "videos").glob("control_L4_*.mp4"))
    test = next((tmp_path / "videos").glob("image_L4_D100_*.mp4"))
    a, b = _decode_all(control), _decode_all(test)
    assert a.shape == b.shape and np.abs(a[:2].astype(int) - b[:2].astype(int)).max() <= 8  # needle in the last


def test_runs_without_control_report_none_and_keep_their_cells_apart(tmp_path):
    plain = RunSettings(lengths=(4,), depths=(50,), size=32)
    records = run_grid(lambda instruction, video: "a purple triangle", _needles(), SyntheticHaystack(0, OBJ),
                       KeywordScorer(), plain, tmp_path, progress=False)
    assert "control_score" not in records[0] and write_report(records, tmp_path)["control_mean"] is None
    with_control = RunSettings(lengths=(4,), depths=(50,), size=32, control=True)
    again = run_grid(lambda instruction, video: "a purple triangle", _needles(), SyntheticHaystack(0, OBJ),
                     KeywordScorer(), with_control, tmp_path, progress=False)
    assert again[0]["control_score"] == 1.0  # asked anew, not read back from the run without controls


class CountingSession:
    """A ChatSession stand-in: counts encodings; answers which video's media it holds."""

    def __init__(self) -> None:
        self.media, self.segments, self.encoded = None, None, 0

    def load_video(self, path):
        self.encoded += 1
        self.media = f"media{self.encoded}"

    def reset(self) -> None:
        pass

    def ask(self, instruction, settings):
        return self.media


def test_the_control_video_is_encoded_once_per_length(tmp_path):
    settings = RunSettings(lengths=(4, 8), depths=(0, 50, 100), size=32, control=True)
    session = CountingSession()
    answers = []
    generator = SessionGenerator(session)

    def generate(instruction, video):
        answers.append((Path(video).name.startswith("control_"), generator.generate(instruction, video)))
        return answers[-1][1]

    run_grid(generate, _needles(), SyntheticHaystack(0, OBJ), KeywordScorer(), settings, tmp_path, progress=False)
    assert session.encoded == 6 + 2  # six test videos, one control video per length
    controls = [media for is_control, media in answers if is_control]
    assert len(controls) == 6 and len(set(controls)) == 2  # each length's control answered from its one encoding


def test_a_uniform_model_is_sampled_at_the_papers_one_frame_per_second_unless_told_otherwise():
    from llava.eval.niavh.cli import niavh_sampling, parse_args
    from llava.video.sampling import FrameSampling

    uniform, rated = FrameSampling(num_frames=24, max_frames=512), FrameSampling(fps=2.0, max_frames=64)
    default = niavh_sampling(parse_args([]), uniform)
    assert (default.fps, default.max_frames) == (1.0, 512)
    assert niavh_sampling(parse_args(["--num-frames", "16"]), uniform) == FrameSampling(num_frames=16, max_frames=512)
    assert niavh_sampling(parse_args([]), rated) == rated
    assert niavh_sampling(parse_args(["--video-fps", "0.5"]), uniform).fps == 0.5
