"""Frames reach RGB through one converter per decoding loop (`upright_rgb`): bit for bit the pixels of a converter
made for each frame (`frame.to_ndarray(format="rgb24")`), on files whose formats, sizes and rotations differ."""

from __future__ import annotations

import av
import numpy as np
import pytest
from av.video.reformatter import VideoReformatter

from llava.video.decode import open_video
from llava.video.pyav_live import PyAVLiveReader
from llava.video.pyav_media import upright_rgb
from tests.media_corpus import iter_reference

# rotated H.264; AV1 10-bit 4:2:0; ProRes 10-bit 4:4:4 with alpha; full-range 4:2:2 MJPEG; gray FFV1
NAMES = ("rotate90_mp4", "av1_10bit_mkv", "prores4444_alpha_mov", "mjpeg_avi", "ffv1_gray_mkv")


def test_one_reformatter_converts_every_frame_as_a_new_one_would(corpus) -> None:
    reformatter = VideoReformatter()  # one for every frame of every file: the format and size change between files
    for name in NAMES:
        with av.open(str(corpus[name].path)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                got = upright_rgb(frame, reformatter)
                want = np.rot90(frame.to_ndarray(format="rgb24"), k=round(frame.rotation / 90) % 4)
                assert got.dtype == np.uint8 and got.shape == want.shape, f"{name}: frame {i}"
                assert np.array_equal(got, want), f"{name}: frame {i} differs"


@pytest.mark.parametrize("name", NAMES)
def test_readers_serve_the_plain_decodes_pixels(corpus, name: str) -> None:
    path = corpus[name].path
    want = np.stack([frame for _, frame in iter_reference(path)])
    with open_video(path) as video:
        assert np.array_equal(video.get_frames(np.arange(video.num_frames)), want), f"{name}: file reader"
    live = np.stack([frame for _, frame in PyAVLiveReader(str(path)).iter_frames()])
    assert np.array_equal(live, want), f"{name}: live reader"
