"""The videos of a `llava.data.shapes_dataset` folder as a model sees them: sampled as it samples, through its
preprocessing and its (frozen) video tower, each with its truth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import Tensor

from llava.data.shapes_world import VideoSpec
from llava.model.stream import FrameTokens
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.video.sampling import sample_video


@torch.no_grad()
def encoded_videos(
    model: VideoLLaMBForCausalLM, folder: Path, videos: int | None = None
) -> Iterator[tuple[FrameTokens, np.ndarray, VideoSpec]]:
    """(frame tokens, the sampled frames' seconds, truth) of the folder's first `videos` videos (all: None)."""
    processor, sampling = model.config.visual_processor, model.config.frame_sampling
    for video in json.loads((folder / "truth.json").read_text())["videos"][:videos]:
        pixels, times = sample_video(folder / video["video"], sampling, transform=processor.video)
        yield model.encode_video_frames([cast(Tensor, pixels)])[0], times, VideoSpec.from_truth(video)
