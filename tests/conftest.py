"""Fixtures shared by several test folders: a tiny random checkpoint (real sentencepiece tokenizer), a tiny
synthetic video and a small image, each built once per session."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava.data.shapes_dataset import main as synth
from llava.model.presets import tiny_config
from llava.train.sentencepiece_tokenizer import train_tokenizer
from llava.model.videollamb import VideoLLaMBForCausalLM

CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "USER: What was in the first scene? ASSISTANT: a red circle</s>",
    "USER: How many scenes are there? ASSISTANT: three</s>",
    "Describe the video in one sentence. a blue square on a gray background",
]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread per test process: the machines that run the suite have 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    """A real sentencepiece tokenizer trained on a tiny corpus, loaded as a transformers Llama tokenizer."""
    return train_tokenizer(CORPUS * 20, tmp_path_factory.mktemp("tok"), vocab_size=320)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("tiny-ckpt")
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(tiny_config(vocab_size=len(tokenizer))).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth(["--out", str(out), "--num-videos", "1", "--seed", "0", "--size", "32", "--quiet"])
    return out / "videos" / "synth_000000.mp4"


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "square.png"
    pixels = np.full((40, 32, 3), 90, dtype=np.uint8)
    pixels[8:24, 8:24] = (200, 30, 30)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Real-world video formats, rendered and encoded by tests/media_corpus.py: a mapping name -> CorpusFile.

    Lazy: a file is encoded the first time its name is looked up (then kept for the session), so a test that
    needs one file pays for that file only; the whole corpus takes ~13 s on 2 cores. Every frame carries a
    marker spelling its id (`media_corpus.read_marker`); a CorpusFile has `path`, `kind` ("video", "gif",
    "frames"), `notes` (what it is), `tags` (properties), `width`/`height` (upright size), `ids` (the marker
    shown at each display index), `intended_times`, `rotation` and `source_frame(i)` (the rendered upright
    frame). The reference decode is `media_corpus.reference` / `iter_reference`. Entries (see each `notes`):

    h264_720p_bframes (mp4, 60 frames), hevc_1080p_10bit (mp4), h264_4k (3840x2160, 5 frames), vp9_webm,
    av1_10bit_mkv, mjpeg_avi (full range), prores4444_alpha_mov, ffv1_gray_mkv, rotate90_mp4, rotate180_mov,
    rotate270_mkv, vfr_mkv (25 fps then 4 fps), mpegts_start_1_4s, editlist_mp4 (3 discarded frames),
    concat_gaps_mp4 (timestamp gaps at the joins), long_gop_480p (12 s, keyframes every 10 s), open_gop_mp4,
    one_frame_mp4, audio_before_video_mp4 (video from 0.5 s), two_video_streams_mkv (the best stream is #1),
    gif, frame_folder_png (a folder of 12 PNGs).
    """
    from tests.media_corpus import Corpus

    return Corpus(tmp_path_factory.mktemp("corpus"))
