"""The synthetic world: real mp4 files that decode to what truth.json says, and questions that agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from llava.data import shapes_dataset as syn
from llava.data import shapes_world
from llava.video.write import write_mp4

TOL = 40  # per-channel tolerance of h264/yuv420p round trips on flat colours


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def load(path: Path):
    return json.loads(path.read_text())


def close(pixel: np.ndarray, rgb) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= TOL))


@pytest.fixture(scope="module")
def train_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    syn.main(["--out", str(out), "--num-videos", "6", "--seed", "7", "--max-scenes", "5", "--mc-ratio", "0.5",
              "--quiet"])
    return out


@pytest.fixture(scope="module")
def mc_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mc")
    syn.main(["--out", str(out), "--num-videos", "4", "--seed", "3", "--format", "mc", "--quiet"])
    return out


def test_videos_decode_to_truth(train_set):
    truth = load(train_set / "truth.json")
    assert truth["seed"] == 7 and len(truth["videos"]) == 6
    for video in truth["videos"]:
        frames = decode(train_set / video["video"])
        assert len(frames) == video["num_frames"]
        assert frames[0].shape == (64, 64, 3)
        scenes = video["scenes"]
        assert scenes[0]["start_frame"] == 0 and scenes[-1]["end_frame"] == video["num_frames"] - 1
        for scene in scenes:
            spec_scene = shapes_world.Scene.from_truth(scene)
            assert scene["caption"] == f"a {scene['colour']} {scene['shape']}"
            assert 8 <= scene["end_frame"] - scene["start_frame"] + 1 <= 16  # 2-4 s at 4 fps
            assert scene["start"] == scene["start_frame"] / 4 and scene["end"] == (scene["end_frame"] + 1) / 4
            for t, index in enumerate(range(scene["start_frame"], scene["end_frame"] + 1)):
                frame = frames[index]
                assert close(frame[0, 0], shapes_world.BACKGROUNDS[scene["background"]]), (video["name"], index)
                cx, cy = spec_scene.sprite.center(t, 64)
                assert close(frame[int(cy), int(cx)], shapes_world.COLOURS[scene["colour"]]), (video["name"], index)


def test_cuts_at_truth_boundaries_and_scenes_differ(train_set):
    for video in load(train_set / "truth.json")["videos"]:
        frames = decode(train_set / video["video"])
        corner = np.array([f[0, 0].astype(int) for f in frames])
        changes = [i for i in range(1, len(frames)) if np.abs(corner[i] - corner[i - 1]).max() > TOL]
        assert changes == [s["start_frame"] for s in video["scenes"][1:]]
        for a, b in zip(video["scenes"], video["scenes"][1:]):
            assert a["end_frame"] + 1 == b["start_frame"]
            assert a["background"] != b["background"]
            assert (a["colour"], a["shape"]) != (b["colour"], b["shape"])


def test_decoded_frames_match_rendering(train_set):
    video = load(train_set / "truth.json")["videos"][0]
    spec = shapes_world.VideoSpec.from_truth(video)
    rendered = list(shapes_world.render_frames(spec))
    decoded = decode(train_set / video["video"])
    assert len(rendered) == len(decoded)
    diffs = [np.abs(r.astype(int) - d.astype(int)).mean() for r, d in zip(rendered, decoded)]
    assert max(diffs) < 6


def open_answer(question: str, scenes: list[dict]) -> str:
    """The answer computed from truth alone, independently of the generator's code."""
    captions = [s["caption"] for s in scenes]
    words = {syn.number_word(i): i for i in range(1, 21)}
    if question == syn.TEMPLATES["caption"] or question == syn.TEMPLATES["last_scene"]:
        return captions[-1]
    if question == syn.TEMPLATES["first_scene"]:
        return captions[0]
    if question == syn.TEMPLATES["count"]:
        return syn.number_word(len(scenes))
    if m := re.fullmatch(r"What was in scene (.+)\?", question):
        return captions[words[m.group(1)] - 1]
    m = re.fullmatch(r"Which came first, (a \w+ \w+) or (a \w+ \w+)\?", question)
    assert m, question
    a, b = m.groups()
    assert a != b and a in captions and b in captions
    return a if captions.index(a) < captions.index(b) else b


MC_RE = re.compile(r"<video>\n(.+)\nA\. (.+)\nB\. (.+)\nC\. (.+)\nD\. (.+)\n"
                   r"Answer with the option's letter from the given choices directly\.")


def test_train_rows_agree_with_truth(train_set):
    rows = load(train_set / "train.json")
    videos = {v["video"]: v for v in load(train_set / "truth.json")["videos"]}
    kinds_seen, mc_seen = set(), 0
    for row in rows:
        assert set(row) >= {"id", "video", "kind", "conversations"}
        human, gpt = row["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<video>\n")
        scenes = videos[row["video"]]["scenes"]
        kinds_seen.add(row["kind"])
        if m := MC_RE.fullmatch(human["value"]):
            mc_seen += 1
            options = list(m.groups()[1:])
            assert len(set(options)) == 4
            assert options[syn.LETTERS.index(gpt["value"])] == open_answer(m.group(1), scenes)
        else:
            assert "\n" not in human["value"][len("<video>\n"):]
            assert gpt["value"] == open_answer(human["value"][len("<video>\n"):], scenes)
    assert kinds_seen == set(syn.KINDS)
    assert 0 < mc_seen < len(rows)  # --mc-ratio 0.5 mixes both


def test_mc_format_files_join(mc_set):
    questions, answers = load(mc_set / "test_q.json"), load(mc_set / "test_a.json")
    videos = {Path(v["video"]).name: v for v in load(mc_set / "truth.json")["videos"]}
    assert not (mc_set / "train.json").exists()
    by_id = {a["question_id"]: a for a in answers}
    assert len(by_id) == len(answers) == len(questions) == 4 * len(syn.KINDS)
    positions = set()
    for q in questions:
        assert (mc_set / "videos" / q["video_name"]).is_file()
        answer = by_id[q["question_id"]]
        assert answer["type"] == q["type"] and q["type"] in syn.KINDS
        assert list(q["option"]) == [f"option {i}" for i in range(4)]
        options = list(q["option"].values())
        assert len(set(options)) == 4
        assert options[answer["answer"]] == open_answer(q["question"], videos[q["video_name"]]["scenes"])
        positions.add(answer["answer"])
    assert len(positions) > 1


def test_mc_prompt_exact():
    prompt = syn.mc_prompt("How many scenes are there?", ["one", "two", "three", "four"])
    assert prompt == ("How many scenes are there?\nA. one\nB. two\nC. three\nD. four\n"
                      "Answer with the option's letter from the given choices directly.")


def test_determinism(tmp_path, train_set):
    args = ["--num-videos", "6", "--seed", "7", "--max-scenes", "5", "--mc-ratio", "0.5", "--quiet"]
    syn.main(["--out", str(tmp_path / "again"), *args])
    for name in ("train.json", "truth.json"):
        assert (tmp_path / "again" / name).read_bytes() == (train_set / name).read_bytes()
    video = "videos/synth_000002.mp4"
    again, first = decode(tmp_path / "again" / video), decode(train_set / video)
    assert len(again) == len(first) and all(np.array_equal(a, b) for a, b in zip(again, first))
    syn.main(["--out", str(tmp_path / "other"), *args[:2], "--seed", "8", *args[4:]])
    assert (tmp_path / "other" / "truth.json").read_bytes() != (train_set / "truth.json").read_bytes()


def test_option_reply_answers_the_same_lettered_rows_with_the_options_words(tmp_path, train_set):
    args = ["--num-videos", "6", "--seed", "7", "--max-scenes", "5", "--mc-ratio", "0.5", "--quiet"]
    syn.main(["--out", str(tmp_path / "words"), *args, "--mc-reply", "option"])
    lettered, worded = load(train_set / "train.json"), load(tmp_path / "words" / "train.json")
    assert [r["conversations"][0] for r in worded] == [r["conversations"][0] for r in lettered]
    mc_rows = 0
    for letter_row, word_row in zip(lettered, worded):
        reply, words = letter_row["conversations"][1]["value"], word_row["conversations"][1]["value"]
        if "options" in letter_row:
            mc_rows += 1
            assert words == letter_row["options"][syn.LETTERS.index(reply)] == letter_row["answer_text"]
        else:
            assert words == reply
    assert mc_rows > 0
    assert load(tmp_path / "words" / "truth.json")["mc_reply"] == "option"


def test_asked_again_writes_the_rows_generate_writes_for_those_settings_without_rendering(tmp_path):
    # one set written open-ended, another of the same seed all lettered in words: asking the first set's videos
    # again with the second's settings gives the second's rows (the brief object included: its flash round-trips)
    common = ["--num-videos", "4", "--seed", "7", "--max-scenes", "5", "--quiet"]
    kinds = [*syn.KINDS, "brief_object"]
    syn.main(["--out", str(tmp_path / "open"), *common, "--kinds", ",".join(kinds)])
    syn.main(["--out", str(tmp_path / "words"), *common, "--kinds", ",".join(kinds), "--mc-ratio", "1",
              "--mc-reply", "option"])
    files = sorted(tmp_path.rglob("*"))
    rows = syn.asked_again(tmp_path / "open", 3, kinds=kinds, mc_ratio=1.0, mc_reply="option")
    assert sorted(tmp_path.rglob("*")) == files  # nothing rendered or written
    words = load(tmp_path / "words" / "train.json")
    assert rows == words[: len(rows)] and len(rows) < len(words)
    first_three = load(tmp_path / "open" / "truth.json")["videos"][:3]
    assert {row["video"] for row in rows} == {video["video"] for video in first_three}
    assert all(row["conversations"][1]["value"] in row["options"] for row in rows)
    assert rows != load(tmp_path / "open" / "train.json")[: len(rows)]  # the open set's own rows differ


def test_video_i_independent_of_count():
    one = shapes_world.sample_video_spec(shapes_world.video_rng(5, 3), "v")
    assert one == shapes_world.sample_video_spec(shapes_world.video_rng(5, 3), "v")
    assert one != shapes_world.sample_video_spec(shapes_world.video_rng(5, 4), "v")


def test_sampling_over_many_videos():
    for i in range(200):
        spec = shapes_world.sample_video_spec(shapes_world.video_rng(11, i), "v", min_scenes=2, max_scenes=6)
        assert 2 <= len(spec.scenes) <= 6
        for a, b in zip(spec.scenes, spec.scenes[1:]):
            assert a.background != b.background and (a.colour, a.shape) != (b.colour, b.shape)
        scene = spec.scenes[0]
        for t in range(scene.num_frames):  # the main shape stays inside the frame
            cx, cy = scene.sprite.center(t, 64)
            r = scene.radius * 64
            assert r - 0.01 <= cx <= 64 - r + 0.01 and r - 0.01 <= cy <= 64 - r + 0.01
            assert 12 <= r <= 18


def test_render_scene_frame_draws_shape():
    scene = shapes_world.sample_scene(np.random.default_rng(0), 0, 8, 4.0)
    frame = shapes_world.render_scene_frame(scene, 3, 64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    shape_pixels = np.all(frame == shapes_world.COLOURS[scene.colour], axis=-1).sum()
    assert 100 < shape_pixels < 64 * 64 // 2
    assert np.array_equal(frame[0, 0], shapes_world.BACKGROUNDS[scene.background])


def test_write_mp4_is_atomic(tmp_path):
    def frames():
        for i in range(5):
            if i == 3:
                raise RuntimeError("source failed")
            yield np.full((32, 32, 3), 40 * i, dtype=np.uint8)

    target = tmp_path / "clip.mp4"
    with pytest.raises(RuntimeError, match="source failed"):
        write_mp4(frames(), target, fps=4)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(ValueError):
        write_mp4([np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)], target, fps=4)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    with pytest.raises(ValueError):
        write_mp4([], target, fps=4)
    assert write_mp4([np.zeros((31, 33, 3), np.uint8)] * 3, target, fps=4) == target
    frames_back = decode(target)
    assert len(frames_back) == 3 and frames_back[0].shape == (32, 34, 3)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # a renamed temp file keeps the permissions an ordinary new file gets
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


@pytest.mark.parametrize("bad", [
    ["--min-scenes", "5", "--max-scenes", "3"],
    ["--num-videos", "0"],
    ["--kinds", "caption,colour_of_sky"],
    ["--mc-ratio", "1.5"],
    ["--size", "63"],
])
def test_bad_arguments_exit_2(tmp_path, capsys, bad):
    argv = ["--out", str(tmp_path / "x"), "--num-videos", "2", *bad]
    with pytest.raises(SystemExit) as exit_info:
        syn.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_brief_object_kind_flashes_an_object_of_no_scene(tmp_path, train_set):
    out = tmp_path / "flash"
    syn.main(["--out", str(out), "--num-videos", "4", "--seed", "7", "--max-scenes", "5", "--mc-ratio", "0.5",
              "--kinds", "caption,brief_object", "--quiet"])
    truth, rows = load(out / "truth.json")["videos"], load(out / "train.json")
    plain = load(train_set / "truth.json")["videos"]
    for video, without in zip(truth, plain):
        assert video["scenes"] == without["scenes"]  # the flash has its own random stream
        flash = video["flash"]
        assert flash["caption"] not in {s["caption"] for s in video["scenes"]}
        assert 4 <= flash["end_frame"] - flash["start_frame"] + 1 <= 6  # 1-1.5 s at 4 fps
        question = next(r for r in rows if r["id"] == f"{video['name']}_brief_object")
        assert question["conversations"][0]["value"].startswith("<video>\n" + syn.TEMPLATES["brief_object"])
        assert flash["caption"] in (question["conversations"][1]["value"], question.get("answer_text"))
        frames = decode(out / video["video"])
        centre = frames[flash["start_frame"]][32, 32]
        assert close(centre, shapes_world.COLOURS[flash["colour"]])
        spec = shapes_world.VideoSpec.from_truth(video)
        assert spec.flash == shapes_world.Flash.from_truth(flash) and spec.to_truth() == video
    assert "flash" not in plain[0]  # only on request


def test_flash_is_painted_only_on_its_frames():
    spec = shapes_world.sample_video_spec(shapes_world.video_rng(0, 0), "v", 2, 2, size=64)
    flashed = shapes_world.add_flash(np.random.default_rng(1), spec)
    plain, painted = list(shapes_world.render_frames(spec)), list(shapes_world.render_frames(flashed))
    window = range(flashed.flash.start_frame, flashed.flash.end_frame + 1)
    for index, (a, b) in enumerate(zip(plain, painted)):
        assert np.array_equal(a, b) == (index not in window)


def test_flash_on_a_video_showing_every_object_recolours_the_scenes_of_its_object():
    spec = shapes_world.sample_video_spec(shapes_world.video_rng(3, 0), "long", 80, 80, fps=1.0, size=64)
    every_object = {(c, s) for c in shapes_world.COLOURS for s in shapes_world.SHAPES}
    assert {(s.colour, s.shape) for s in spec.scenes} == every_object  # no object is left free for the flash
    flashed = shapes_world.add_flash(np.random.default_rng(1), spec)
    needle = (flashed.flash.colour, flashed.flash.shape)
    assert needle not in {(s.colour, s.shape) for s in flashed.scenes}
    assert len(flashed.scenes) == len(spec.scenes)
    for previous, scene in zip(flashed.scenes, flashed.scenes[1:]):
        assert (scene.colour, scene.shape) != (previous.colour, previous.shape)  # every cut is still a cut
    changed = [a for a, b in zip(spec.scenes, flashed.scenes) if a != b]
    assert changed and all((a.colour, a.shape) == needle for a in changed)


def test_reserving_a_whole_colour_recolours_every_scene_of_it():
    spec = shapes_world.sample_video_spec(shapes_world.video_rng(3, 0), "long", 80, 80, fps=1.0, size=64)
    assert any(s.colour == "purple" and s.shape != "triangle" for s in spec.scenes)
    pair_only = shapes_world.without_object(spec, ("purple", "triangle"))
    assert any(s.colour == "purple" for s in pair_only.scenes)  # other purple shapes stay
    cleared = shapes_world.without_object(spec, ("purple", "triangle"), whole_colour=True)
    assert all(s.colour != "purple" for s in cleared.scenes)
    assert [s.shape for s in cleared.scenes] == [s.shape for s in spec.scenes]
    for previous, scene in zip(cleared.scenes, cleared.scenes[1:]):
        assert (scene.colour, scene.shape) != (previous.colour, previous.shape)
