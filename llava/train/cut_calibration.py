"""Choose SceneTilling's offline threshold for a freshly pretrained tower, on synthetic videos of known scenes.

    calibrate_cut_threshold(model, Path("runs/tiny-demo/data_calibration"))  # sets bridge_config.scenetilling_alpha

Offline SceneTilling cuts where a frame's depth exceeds mean + alpha * std of the video's depths
(`BridgeConfig.scenetilling_alpha`). Where a tower's features vary within a scene (a moving object changes its
tokens), a low alpha cuts inside scenes; where they barely do, a high alpha misses cuts between similar scenes.
The tower decides which, so a recipe that pretrains its own tower picks alpha after it: among a few candidates,
the one whose cuts fall exactly where the sampled frames' scene changes in the most of the folder's videos
(a `llava.data.shapes_dataset` folder, whose truth says each frame's scene; videos that flash no object, since a
flash is cut like a scene of its own). Only offline cuts are calibrated; a stream decides each cut from the frames
seen so far with its own setting (`stream_scenetilling_alpha`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from llava.model.stream import offline_boundaries
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.shapes_frames import encoded_videos

CANDIDATE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def cuts_match_scenes(boundaries: list[int], scene_of: list[int]) -> bool:
    """Whether segments ending at `boundaries` (the last frame of each) change exactly where the frames' scene
    (`scene_of`, one index per frame) changes."""
    cuts = set(boundaries[:-1])
    return all((i in cuts) == (scene_of[i] != scene_of[i + 1]) for i in range(len(scene_of) - 1))


@torch.no_grad()
def calibrate_cut_threshold(
    model: VideoLLaMBForCausalLM, folder: Path, alphas: tuple[float, ...] = CANDIDATE_ALPHAS, videos: int = 200
) -> dict[float, float]:
    """Share of the folder's first `videos` videos, sampled as the model samples them, whose offline cuts match
    their scenes exactly, for each alpha; sets the model's `scenetilling_alpha` to the best (the first of equals)."""
    config = model.config.bridge_config
    exact = dict.fromkeys(alphas, 0)
    count = 0
    for frames, times, spec in encoded_videos(model, folder, videos):
        scene_of = [spec.scene_index_at(int(round(t * spec.fps))) for t in times]
        for alpha in alphas:
            exact[alpha] += cuts_match_scenes(
                offline_boundaries(frames, replace(config, scenetilling_alpha=alpha)), scene_of
            )
        count += 1
    shares = {alpha: matched / count for alpha, matched in exact.items()}
    config.scenetilling_alpha = max(alphas, key=lambda alpha: shares[alpha])
    return shares
