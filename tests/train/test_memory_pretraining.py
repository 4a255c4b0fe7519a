"""Memory pretraining (`llava.train.memory_pretraining`): the record's targets follow the truth, the bridge alone
learns to keep the record (the probe leaves it as it was), and the command writes a loadable checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from llava.data.shapes_world import ALL_CAPTIONS, VideoSpec
from llava.model.builder import load_pretrained_model
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.memory_pretraining import NONE, fit_record_head, main, memory_clips, truth_targets

from .conftest import synthetic_folder


@pytest.fixture(scope="module")
def memory_data(tmp_path_factory):
    """8 videos of 1-4 scenes at the tiny model's 32 px."""
    return synthetic_folder(tmp_path_factory, "memory", "--num-videos", "8", "--seed", "7", "--min-scenes", "1",
                            "--max-scenes", "4", "--size", "32")


def test_targets_name_every_scene_in_order_then_none(memory_data):
    for video in json.loads((memory_data / "truth.json").read_text())["videos"]:
        spec = VideoSpec.from_truth(video)
        captions = [scene.caption for scene in spec.scenes]
        objects, scenes = truth_targets(spec, positions=3)
        assert {ALL_CAPTIONS[i] for i in objects.nonzero().flatten().tolist()} == set(captions)
        named = [ALL_CAPTIONS[i] if i != NONE else None for i in scenes.tolist()]
        assert named == (captions + [None] * 3)[:3]


def test_the_bridge_learns_the_record_and_nothing_else_changes(tiny_checkpoint, memory_data):
    model = VideoLLaMBForCausalLM.from_pretrained(tiny_checkpoint).eval()
    clips = memory_clips(model, memory_data, positions=4)
    assert len(clips) == 8 and all(clip.segments for clip in clips)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    untrained = fit_record_head(model, clips, clips, steps=0)["held_out"]
    report = fit_record_head(model, clips, clips, steps=300, batch=8, lr=3e-3)
    learned = report["held_out"]  # scored on the videos it trained on: can the memory hold their record at all?
    assert all(score >= 0.9 for score in learned.values())
    assert untrained["scene_objects"] < 0.5
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("bridge.") for k in changed)
    assert all(p.requires_grad for p in model.bridge.parameters())


def test_the_probe_leaves_the_bridge_as_it_was(tiny_checkpoint, memory_data):
    model = VideoLLaMBForCausalLM.from_pretrained(tiny_checkpoint).eval()
    clips = memory_clips(model, memory_data, positions=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = fit_record_head(model, clips[:6], clips[6:], steps=3, train_bridge=False)
    assert report["bridge_trained"] is False
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_the_command_writes_a_checkpoint_that_loads(tiny_checkpoint, memory_data, tmp_path, capsys):
    out = tmp_path / "pretrained"
    argv = ["--model", str(tiny_checkpoint), "--data", str(memory_data), "--output", str(out), "--steps", "2",
            "--batch", "4", "--held-out", "2", "--positions", "4"]
    assert main(argv) == 0
    report = json.loads((out / "memory_pretraining.json").read_text())
    assert report["steps"] == 2 and report["bridge_trained"] and set(report["held_out"]) == {
        "objects_shown", "objects_absent", "scene_objects", "scene_counts"}
    _, model, _, _ = load_pretrained_model(out, device="cpu")
    source = VideoLLaMBForCausalLM.from_pretrained(tiny_checkpoint)
    bridge = [k for k in source.state_dict() if k.startswith("bridge.")]
    assert any(not torch.equal(model.state_dict()[k], source.state_dict()[k]) for k in bridge)
    probe = tmp_path / "probe"
    assert main([*argv[:5], str(probe), *argv[6:], "--probe"]) == 0
    assert [p.name for p in probe.iterdir()] == ["memory_probe.json"]
    capsys.readouterr()


def test_too_many_held_out_videos_is_one_error_line(tiny_checkpoint, memory_data, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["--model", str(tiny_checkpoint), "--data", str(memory_data), "--output", str(out),
                 "--held-out", "8"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "--held-out" in err[0]
    assert not out.exists()
