"""A model trained at 1 fps is served at 1 fps: `llava.train.train --video_fps 1` records the rate (and its cap) in
the checkpoint's config, and every front end (chat CLI, streaming CLI, gradio demo, API, videoqa, NIAVH) samples
that way by default, or as its shared flags say. A checkpoint written before these fields samples uniformly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest

from llava.eval import videoqa
from llava.eval.niavh import cli as niavh
from llava.serve import api, cli, cli_streaming, gradio_demo
from llava.serve.options import chat_session_from_options
from llava.train.train import main as train
from llava.video.sampling import STREAM_FPS, FrameSampling, sample_video

CAP = 20  # --num_frames with --video_fps: the most frames sampled at the rate (more than any video here lasts)


@pytest.fixture(scope="module")
def at_one_fps(tmp_path_factory, train_args) -> tuple:
    """A tiny model trained two steps at 1 fps (at most CAP frames) with the vicuna_v1 template, the uniform count
    it kept, and a video."""
    out = tmp_path_factory.mktemp("one-fps")
    base = train_args(out)
    config = json.loads(Path(base[base.index("--model_config") + 1]).read_text())
    assert train(train_args(out, "--max_steps", "2", "--video_fps", "1", "--num_frames", str(CAP), "--version", "vicuna_v1")) == 0
    data_dir = base[base.index("--x_folder") + 1]
    truth = json.loads(Path(data_dir, "truth.json").read_text())["videos"]
    # a video whose count of frames at 1 fps differs from the model's uniform count
    video = next(v for v in truth if math.ceil(v["duration"] - 1e-9) not in (config["num_frames"], 1))
    return out, config["num_frames"], f"{data_dir}/{video['video']}", video["duration"]


def test_training_records_the_rate_and_its_cap(at_one_fps):
    out, num_frames, _, _ = at_one_fps
    saved = json.loads((out / "config.json").read_text())
    assert (saved["video_fps"], saved["max_frames"], saved["num_frames"]) == (1.0, CAP, num_frames)
    assert saved["conv_template"] == "vicuna_v1"


def front_end_args(out, video) -> dict:
    common = ["--model-path", str(out), "--device", "cpu"]
    bench = ["--question-file", "q.json", "--answer-file", "a.json", "--output", "o"]
    return {
        "cli": cli.parse_args([*common, "--video-file", video]),
        "cli_streaming": cli_streaming.parse_args([*common, "--video-file", video]),
        "gradio_demo": gradio_demo.parse_args(common),
        "api": api.parse_args(common),
        "videoqa": videoqa.parse_args([*common, "--benchmark", "egoschema", *bench]),
        "niavh": niavh.parse_args(common),
    }


def test_every_front_end_serves_it_at_one_fps(at_one_fps):
    out, num_frames, video, _ = at_one_fps
    trained = FrameSampling(num_frames=num_frames, fps=1.0, max_frames=CAP)
    for name, args in front_end_args(out, video).items():
        session = chat_session_from_options(args)
        if name == "videoqa":  # a rate model keeps its rate; the benchmark's 16 frames are for uniform models
            session.sampling = videoqa.benchmark_sampling(args, session.model.config.frame_sampling)
        assert session.sampling == trained, name
        assert session.sampling.stream_fps == 1.0, name
        assert session.conv_mode == "vicuna_v1", name  # the template it was trained with
    _, stream_fps = cli_streaming.open_session(front_end_args(out, video)["cli_streaming"])
    assert stream_fps == 1.0
    _, record = niavh._generator(front_end_args(out, video)["niavh"])
    assert (record["video_fps"], record["max_frames"]) == (1.0, CAP) and "num_frames" not in record


def test_the_chat_engine_encodes_one_frame_per_second(at_one_fps):
    out, _, video, duration = at_one_fps
    session = chat_session_from_options(cli.parse_args(["--model-path", str(out), "--device", "cpu",
                                                        "--video-file", video]))
    session.load_video(video)
    frames, seconds = sample_video(video, session.sampling)
    assert len(frames) == math.ceil(duration - 1e-9)  # one frame per second the video lasts (under the cap)
    assert np.allclose(np.diff(seconds), 1.0, atol=0.3)
    with torch.inference_mode():
        (expected,) = session.model.encode_videos([session.processor.video(frames)])
    assert torch.allclose(session.media, expected, atol=1e-5)  # the engine encoded exactly those frames


def test_the_gradio_streaming_tab_reads_at_one_fps(at_one_fps, monkeypatch):
    out, _, _, _ = at_one_fps
    built = {}
    monkeypatch.setattr(gradio_demo, "serve", lambda app, settings, **kwargs: built.update(settings=settings))
    assert gradio_demo.main(["--model-path", str(out), "--device", "cpu"]) == 0
    assert built["settings"].stream_fps == 1.0


def test_the_same_flags_override_it_everywhere(at_one_fps):
    out, _, video, _ = at_one_fps
    for name, args in front_end_args(out, video).items():
        if name == "cli_streaming":
            flagged = cli_streaming.parse_args(["--model-path", str(out), "--device", "cpu", "--video-fps", "2"])
            assert chat_session_from_options(flagged).sampling.stream_fps == 2.0
            continue
        args.num_frames = 3
        session = chat_session_from_options(args)
        if name == "videoqa":
            session.sampling = videoqa.benchmark_sampling(args, session.model.config.frame_sampling)
        assert session.sampling == FrameSampling(num_frames=3, max_frames=CAP), name


def test_a_checkpoint_without_the_fields_samples_uniformly(at_one_fps, tmp_path):
    out, num_frames, video, _ = at_one_fps
    old = tmp_path / "old"
    shutil.copytree(out, old)
    config = json.loads((old / "config.json").read_text())
    del config["video_fps"], config["max_frames"]
    (old / "config.json").write_text(json.dumps(config))
    session = chat_session_from_options(cli.parse_args(["--model-path", str(old), "--device", "cpu",
                                                        "--video-file", video]))
    assert session.sampling == FrameSampling(num_frames=num_frames) and session.sampling.stream_fps == STREAM_FPS
