"""Cut calibration (`llava.train.cut_calibration`): the share of exact cuts it reports is the one the serving
pipeline's segments give, and the model keeps the best candidate."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from llava.data.shapes_world import VideoSpec
from llava.eval.shapes_scores import cuts_are_scene_changes
from llava.serve.chat_session import ChatSession
from llava.train.cut_calibration import calibrate_cut_threshold, cuts_match_scenes
from llava.video.sampling import sample_video

from .conftest import synthetic_folder


def test_cuts_match_only_where_every_scene_change_is_cut_and_nothing_else():
    scene_of = [0, 0, 1, 1, 1, 2]
    assert cuts_match_scenes([1, 4, 5], scene_of)
    assert not cuts_match_scenes([1, 5], scene_of)  # a change missed
    assert not cuts_match_scenes([1, 3, 4, 5], scene_of)  # a cut inside a scene
    assert cuts_match_scenes([3], [0, 0, 0, 0])


@pytest.fixture(scope="module")
def plain_videos(tmp_path_factory):
    """12 videos of 2-6 scenes at the demo model's 48 px, no flashed object (captions only)."""
    return synthetic_folder(tmp_path_factory, "calibration", "--num-videos", "12", "--seed", "77", "--min-scenes",
                            "2", "--max-scenes", "6", "--kinds", "caption")


def test_the_reported_share_is_what_the_served_segments_give_and_the_best_alpha_is_kept(plain_videos):
    session = ChatSession.from_pretrained(device="cpu")  # the demo model: a trained tower, so the cuts mean something
    model, config = session.model, session.model.config.bridge_config
    shares = calibrate_cut_threshold(model, plain_videos, alphas=(0.0, 0.5, 2.0))
    assert config.scenetilling_alpha == max(shares, key=lambda alpha: shares[alpha])
    assert len(set(shares.values())) > 1  # the threshold matters on these videos
    for alpha, share in shares.items():
        model.config.bridge_config = replace(config, scenetilling_alpha=alpha)
        exact = []
        for video in json.loads((plain_videos / "truth.json").read_text())["videos"]:
            frames, times = sample_video(plain_videos / video["video"], session.sampling)
            session.load_frames(frames, times)
            exact.append(cuts_are_scene_changes(session.segments.spans, times, VideoSpec.from_truth(video)))
        assert share == sum(exact) / len(exact), alpha
