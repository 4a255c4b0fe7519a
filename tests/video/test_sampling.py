"""FrameSampling and sample_video: one record of how frames are chosen, one function that chooses them."""

import json

import numpy as np
import pytest
import torch

from llava.errors import ConfigError
from llava.model.config import VideoLLaMBConfig
from llava.video.decode import load_video, load_video_fps
from llava.video.sampling import STREAM_FPS, FrameSampling, sample_video
from llava.video.timeline import uniform_indices
from tests.video.conftest import FPS, NUM_FRAMES


def test_uniform_sampling_is_load_video(clip):
    frames, seconds = sample_video(clip, FrameSampling(num_frames=7))
    expected, expected_seconds = load_video(clip, num_frames=7)
    assert np.array_equal(frames, expected) and np.array_equal(seconds, expected_seconds)


def test_rate_sampling_is_load_video_fps_with_the_cap(clip):
    frames, seconds = sample_video(clip, FrameSampling(fps=2.0))
    assert len(frames) == NUM_FRAMES / FPS * 2 and np.allclose(np.diff(seconds), 0.5)
    capped, capped_seconds = sample_video(clip, FrameSampling(fps=5.0, max_frames=4))
    expected, expected_seconds = load_video_fps(clip, fps=5.0, max_frames=4)
    assert np.array_equal(capped, expected) and np.array_equal(capped_seconds, expected_seconds)


def test_transform_is_applied_while_decoding(clip):
    shapes = []

    def transform(frames):
        shapes.append(frames.shape)
        return torch.zeros(len(frames))

    out, _ = sample_video(clip, FrameSampling(num_frames=3), transform=transform)
    assert len(out) == 3 and shapes


def test_override_follows_the_same_rules_everywhere():
    rate = FrameSampling(num_frames=24, fps=1.0, max_frames=320)
    assert rate.override() == rate
    assert rate.override(num_frames=8) == FrameSampling(num_frames=8, max_frames=320)  # a count: uniform sampling
    assert rate.override(max_frames=64) == FrameSampling(num_frames=24, fps=1.0, max_frames=64)
    uniform = FrameSampling(num_frames=24)
    assert uniform.override(fps=2.0) == FrameSampling(num_frames=24, fps=2.0)
    with pytest.raises(ConfigError, match="not both"):
        uniform.override(num_frames=4, fps=1.0)


def test_stream_rate_and_records():
    assert FrameSampling().stream_fps == STREAM_FPS and FrameSampling(fps=2.0).stream_fps == 2.0
    assert FrameSampling(num_frames=24).record() == {"num_frames": 24}
    assert FrameSampling(fps=1.0, max_frames=9).record() == {"video_fps": 1.0, "max_frames": 9}


@pytest.mark.parametrize("bad", [dict(num_frames=0), dict(fps=0.0), dict(fps=float("nan")), dict(fps=-1.0),
                                 dict(max_frames=0), dict(num_frames=2.5)])
def test_bad_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        FrameSampling(**bad)


def test_the_config_records_the_sampling_and_old_configs_sample_uniformly(tmp_path):
    config = VideoLLaMBConfig(num_frames=24, video_fps=1.0, max_frames=320)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["num_frames"], saved["video_fps"], saved["max_frames"]) == (24, 1.0, 320)
    assert VideoLLaMBConfig.from_pretrained(tmp_path).frame_sampling == FrameSampling(24, 1.0, 320)
    for key in ("video_fps", "max_frames"):  # a checkpoint written before these fields existed
        del saved[key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert VideoLLaMBConfig.from_pretrained(tmp_path).frame_sampling == FrameSampling(num_frames=24)


@pytest.mark.parametrize("sampling", [FrameSampling(num_frames=7), FrameSampling(fps=2.0), FrameSampling(fps=3.0),
                                      FrameSampling(fps=5.0, max_frames=4), FrameSampling(fps=20.0),
                                      FrameSampling(fps=1.0, rate_rule="release_videollamb"),
                                      FrameSampling(fps=6.0, rate_rule="release_videollamb"),
                                      FrameSampling(fps=2.0, max_frames=5, rate_rule="release_mem")])
def test_indices_of_decoded_frames_agree_with_sampling_the_file(clip, sampling):
    from llava.video.decode import open_video

    with open_video(clip) as video:
        every = video.get_frames(np.arange(video.num_frames))
        chosen = sampling.indices(video.times, video.fps)
        expected, seconds = sample_video(video, sampling)
        assert np.array_equal(every[chosen], expected) and np.array_equal(video.times[chosen], seconds)


# the clip: NUM_FRAMES = 30 frames at FPS = 10, 3 seconds; n = ceil(3 s x fps), then each rule's rounding and cap
@pytest.mark.parametrize(("fps", "max_frames", "rule", "count"), [
    (1.0, 512, "release_videollamb", 8),  # n = 3: at least 8
    (4.0, 512, "release_videollamb", 8),  # n = 12: rounded down to 8
    (6.0, 512, "release_videollamb", 16),  # n = 18: rounded down to 16
    (6.0, 12, "release_videollamb", 12),  # n = 16, then the cap
    (1.0, 512, "release_mem", 3),  # n = 3: no rounding
    (4.0, 512, "release_mem", 12),
    (4.0, 5, "release_mem", 5),
])
def test_release_rate_rules_spread_a_count_by_index_over_the_whole_video(clip, fps, max_frames, rule, count):
    sampling = FrameSampling(fps=fps, max_frames=max_frames, rate_rule=rule)
    frames, seconds = sample_video(clip, sampling)
    expected, expected_seconds = load_video(clip, num_frames=count)
    assert np.array_equal(frames, expected) and np.array_equal(seconds, expected_seconds)
    assert sampling.indices(np.arange(NUM_FRAMES) / FPS, FPS).tolist() == uniform_indices(NUM_FRAMES, count).tolist()


def test_a_rate_rule_is_kept_by_overrides_recorded_and_validated():
    rule = FrameSampling(num_frames=16, rate_rule="release_videollamb")
    assert rule.override(fps=1.0) == FrameSampling(num_frames=16, fps=1.0, rate_rule="release_videollamb")
    recorded = rule.override(fps=1.0).record()
    assert recorded == {"video_fps": 1.0, "max_frames": 512, "rate_sampling": "release_videollamb"}
    assert rule.override(num_frames=8).record() == {"num_frames": 8}  # uniform sampling: no rule applies
    with pytest.raises(ConfigError, match="rate_sampling"):
        FrameSampling(fps=1.0, rate_rule="by_index")


def test_the_config_records_the_release_choices_and_old_configs_keep_this_projects(tmp_path):
    released = VideoLLaMBConfig.from_released_dict({"model_type": "llava_llama", "num_frames": 16})
    assert (released.rate_sampling, released.resize_antialias, released.conv_template) == (
        "release_videollamb", False, "vicuna_v1")
    assert released.bridge_config.scenetilling_precision == "feature_dtype"
    assert not released.visual_processor.resize_antialias and released.frame_sampling.rate_rule == "release_videollamb"
    released.rate_sampling = "release_mem"  # what the loader does for a Mem checkpoint
    assert released.frame_sampling.override(fps=1.0).rate_rule == "release_mem"
    released.save_pretrained(tmp_path)
    again = VideoLLaMBConfig.from_pretrained(tmp_path)
    assert (again.rate_sampling, again.resize_antialias, again.conv_template) == ("release_mem", False, "vicuna_v1")
    assert again.bridge_config.scenetilling_precision == "feature_dtype"
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("rate_sampling", "resize_antialias", "conv_template"):  # a config saved before these fields
        del saved[key]
    del saved["bridge_config"]["scenetilling_precision"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    old = VideoLLaMBConfig.from_pretrained(tmp_path)
    assert (old.rate_sampling, old.resize_antialias, old.conv_template) == ("presentation_time", True, "llava_v1")
    assert old.bridge_config.scenetilling_precision == "float64" and old.visual_processor.resize_antialias


def test_bad_release_settings_are_config_errors():
    with pytest.raises(ConfigError, match="rate_sampling"):
        VideoLLaMBConfig(rate_sampling="by_index")
    with pytest.raises(ConfigError, match="conv_template"):
        VideoLLaMBConfig(conv_template="vicuna_v2")
    with pytest.raises(ConfigError, match="scenetilling_precision"):
        VideoLLaMBConfig(bridge_config={"scenetilling_precision": "float16"})
    config = VideoLLaMBConfig()
    config.rate_sampling = "release_niavh"  # an assignment is checked where the sampling is built
    with pytest.raises(ConfigError, match="rate_sampling"):
        config.frame_sampling.describe()
