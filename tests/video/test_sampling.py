"""FrameSampling and sample_video: one record of how frames are chosen, one function that chooses them."""

import json

import numpy as np
import pytest
import torch

from llava.errors import ConfigError
from llava.model.config import VideoLLaMBConfig
from llava.video.decode import load_video, load_video_fps
from llava.video.sampling import STREAM_FPS, FrameSampling, sample_video
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
                                      FrameSampling(fps=5.0, max_frames=4), FrameSampling(fps=20.0)])
def test_indices_of_decoded_frames_agree_with_sampling_the_file(clip, sampling):
    from llava.video.decode import open_video

    with open_video(clip) as video:
        every = video.get_frames(np.arange(video.num_frames))
        chosen = sampling.indices(video.times, video.fps)
        expected, seconds = sample_video(video, sampling)
        assert np.array_equal(every[chosen], expected) and np.array_equal(video.times[chosen], seconds)
