"""The demo-model recipe (`llava.train.tiny_demo`) end to end at toy size: data, tokenizer, tower pretraining,
two curriculum stages through `llava.train.train`, and a shipped folder that loads and answers."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from llava.model.builder import load_pretrained_model
from llava.data.world import VideoSpec
from llava.train.tiny_demo import (ATTRIBUTES, NO_FLASH, Stage, frame_labels, make_data, main, run, sampled_frames,
                                   tower_folders)
from llava.video.transforms import VisualProcessor


SCENE_ATTRIBUTES = ("colour", "shape", "background")


def test_frame_labels_follow_the_scene_truth(tmp_path):
    folder = make_data(tmp_path / "data", Stage(2, 2, 2, 1), seed=3)
    truth = json.loads((folder / "truth.json").read_text())["videos"]
    clips = frame_labels([folder], 8, VisualProcessor(size=48))
    for video, (pixels, labels) in zip(truth, clips):
        assert pixels.shape == (8, 3, 48, 48)
        first, last = video["scenes"][0], video["scenes"][-1]
        for attribute in SCENE_ATTRIBUTES:  # uniform sampling starts in the first scene, ends in the last
            assert ATTRIBUTES[attribute][int(labels[attribute][0])] == first[attribute]
            assert ATTRIBUTES[attribute][int(labels[attribute][-1])] == last[attribute]
        for attribute in ("flash_colour", "flash_shape"):  # nothing is flashed in these videos
            assert {ATTRIBUTES[attribute][int(i)] for i in labels[attribute]} == {NO_FLASH}


def test_a_flashed_object_is_sampled_and_labelled(tmp_path):
    folder = make_data(tmp_path / "data", Stage(3, 4, 3, 1, kinds="caption,brief_object", fps=2.0), seed=4)
    truth = json.loads((folder / "truth.json").read_text())["videos"]
    clips = frame_labels([folder], 4, VisualProcessor(size=48))
    for video, (_, labels) in zip(truth, clips):
        flash = video["flash"]
        chosen = sampled_frames(VideoSpec.from_truth(video), 4)
        shown = [i for i, f in enumerate(chosen) if flash["start_frame"] <= f <= flash["end_frame"]]
        assert len(shown) == 1  # four frames of a 6 s+ video would miss a 1-1.5 s flash; its middle is put in
        colours = [ATTRIBUTES["flash_colour"][int(i)] for i in labels["flash_colour"]]
        shapes = [ATTRIBUTES["flash_shape"][int(i)] for i in labels["flash_shape"]]
        assert colours[shown[0]] == flash["colour"] and shapes[shown[0]] == flash["shape"]
        assert [c for i, c in enumerate(colours) if i != shown[0]] == [NO_FLASH] * (len(chosen) - 1)


def test_the_tower_learns_from_the_last_plain_stage_and_every_flashing_one():
    flashing = "caption,brief_object"
    curriculum = [Stage(1, 2, 1, 1), Stage(2, 3, 1, 1), Stage(2, 3, 1, 1, kinds=flashing)]
    assert tower_folders(curriculum, [Path("a"), Path("b"), Path("c")]) == [Path("b"), Path("c")]


def test_the_recipe_writes_a_loadable_demo_model(tmp_path):
    needle = Stage(2, 3, 6, 2, kinds="caption,brief_object", fps=1.0, video_fps=1.0, num_frames=16)
    curriculum = [Stage(1, 2, 6, 2), Stage(2, 3, 6, 2), needle]
    out = tmp_path / "out"
    summary = run(tmp_path / "work", out, seed=0, tower_steps=2, curriculum=curriculum)
    assert len(summary["stage_losses"]) == 3 and all(loss > 0 for loss in summary["stage_losses"])
    assert 0.0 <= summary["tower_attribute_accuracy"] <= 1.0
    assert (out / "model.safetensors").is_file()
    assert not (out / "training_args.bin").exists()  # a pickle is never shipped
    tokenizer, model, processor, _ = load_pretrained_model(out, device="cpu")
    bridge = model.config.bridge_config
    assert model.config.num_frames == 24  # a stage sampled at a frame rate leaves the uniform default alone
    assert bridge.llm_input == "memory_and_last_segment" and bridge.memory_init_std > 0
    # the tower was frozen after pretraining: the stages left it as pretraining left it
    pretrained = load_pretrained_model(tmp_path / "work" / "stage_tower", device="cpu")[1]
    for (name, a), b in zip(model.video_tower.state_dict().items(), pretrained.video_tower.state_dict().values()):
        assert torch.equal(a, b), name


def test_main_reports_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "work").write_text("a file where a folder must go")
    assert main(["--work", str(tmp_path / "work"), "--out", str(tmp_path / "out"), "--tower-steps", "1"]) == 1
    assert capsys.readouterr().err.startswith("error:")
