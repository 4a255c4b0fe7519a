"""Frame decoding, sampling and pixel preprocessing against the original (golden/README.md, section frames/):
decord's frames, the release's transform (no antialias) and the indices each of the original's loaders asked for,
on the three golden videos, all downscaled to 224 px."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llava.model.config import VideoLLaMBConfig
from llava.video.decode import open_video
from llava.video.sampling import FrameSampling, sample_video

GOLDEN = Path(__file__).parent / "golden"
META = json.loads((GOLDEN / "frames" / "frames.json").read_text())
VIDEOS = sorted(META["videos"])
TOLERANCE = 2e-5  # max |diff| of float32 tensors (golden/README.md)
POSITIONS = META["stored_positions_of_8"]  # [0, 4, 7] of the uniform-8 output


def released_config() -> VideoLLaMBConfig:
    return VideoLLaMBConfig.from_released_dict(
        json.loads((GOLDEN / "model_default" / "videollamb-llava-tiny" / "config.json").read_text())
    )


RELEASED = released_config()
# golden `indices` key -> the sampling of this project that claims to reproduce it, or why none does
SAMPLINGS: dict[str, FrameSampling | str] = {
    "videollamb_processing_video_uniform_8": RELEASED.frame_sampling.override(num_frames=8),
    "videollamb_processing_video_uniform_16": RELEASED.frame_sampling,
    "videollamb_processing_video_fps1": RELEASED.frame_sampling.override(fps=1.0),
    "mmniavh_vid_utils_load_video_fps1": FrameSampling(fps=1.0, max_frames=512, rate_rule="release_mem"),
    "videollamb_vid_utils_load_video_fps1_max16": FrameSampling(fps=1.0, max_frames=16, rate_rule="release_mem"),
    "mmniavh_processing_video_fps1": "NIAVH's processing_video (count rounded UP to a multiple of 8) is no path "
    "the Mem checkpoint's own code takes (its videollamb_modeling.py calls vid_utils.load_video): not offered",
}


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / "frames" / f"{name}.safetensors")


def video_path(name: str) -> Path:
    return GOLDEN / META["videos"][name]["file"]


def as_tchw(pixel_values: torch.Tensor) -> torch.Tensor:
    """The original's (C, T, H, W) -> this project's (T, C, H, W)."""
    return pixel_values.permute(1, 0, 2, 3)


def test_released_checkpoints_sample_and_resize_as_the_release_and_this_projects_as_they_were_trained():
    assert (RELEASED.resize_antialias, RELEASED.rate_sampling) == (False, "release_videollamb")
    assert RELEASED.frame_sampling == FrameSampling(num_frames=16, rate_rule="release_videollamb")
    own = VideoLLaMBConfig()
    assert (own.resize_antialias, own.rate_sampling) == (True, "presentation_time")


@pytest.mark.parametrize("name", VIDEOS)
def test_the_decoder_gives_decords_frames(name):
    meta, stored = META["videos"][name], golden(name)
    with open_video(video_path(name)) as video:
        assert (video.num_frames, video.fps) == (meta["num_frames_decord"], meta["avg_fps_decord"])
        every = video.get_frames(np.arange(video.num_frames))
    digests = [hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()[:16] for frame in every]
    assert digests == meta["frame_sha256_16"]
    assert np.array_equal(every[stored["frame_indices"].numpy()], stored["decoded_uint8_THWC"].numpy())


@pytest.mark.parametrize("name", VIDEOS)
def test_the_released_transform_gives_the_originals_pixels(name):
    stored = golden(name)
    want = as_tchw(stored["pixel_values"])
    got = RELEASED.visual_processor.video(stored["decoded_uint8_THWC"])
    assert (got - want).abs().max().item() <= TOLERANCE
    # this project's own resize (antialiased) is a different input: the setting matters on these videos
    own = VideoLLaMBConfig(vision_config={"image_size": 224}).visual_processor.video(stored["decoded_uint8_THWC"])
    assert (own - want).abs().max().item() > 100 * TOLERANCE


@pytest.mark.parametrize("name", VIDEOS)
def test_loading_and_transforming_the_file_end_to_end(name):
    want = as_tchw(golden(name)["pixel_values"])
    sampling = RELEASED.frame_sampling.override(num_frames=8)
    pixels, _ = sample_video(video_path(name), sampling, transform=RELEASED.visual_processor.video)
    assert pixels.shape == (8, 3, 224, 224)
    assert (pixels[POSITIONS] - want).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("key", sorted(SAMPLINGS))
@pytest.mark.parametrize("name", VIDEOS)
def test_sampled_indices_are_the_originals(name, key):
    sampling = SAMPLINGS[key]
    if isinstance(sampling, str):
        pytest.skip(sampling)
    want = META["videos"][name]["indices"][key]
    with open_video(video_path(name)) as video:
        assert sampling.indices(video.times, video.fps).tolist() == want
        frames, seconds = sample_video(video, sampling)  # the file is sampled the same way
        assert np.array_equal(seconds, video.times[want]) and len(frames) == len(want)


def test_every_golden_loader_is_claimed_or_skipped_with_a_reason():
    assert {key for name in VIDEOS for key in META["videos"][name]["indices"]} == set(SAMPLINGS)
