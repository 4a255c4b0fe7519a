"""The options the serving front ends share, turned into a session the way the API server and the gradio demo do."""

import pytest

from llava.serve import api, gradio_demo
from llava.serve.options import chat_session_from_options


@pytest.mark.parametrize("front_end", [api, gradio_demo], ids=["api", "gradio_demo"])
def test_session_from_options_follows_every_shared_option(front_end, tiny_checkpoint):
    base = ["--model-path", str(tiny_checkpoint), "--device", "cpu"]
    default = chat_session_from_options(front_end.parse_args(base))
    flagged = chat_session_from_options(
        front_end.parse_args([*base, "--num-frames", "4", "--conv-mode", "plain", "--static-cache"])
    )
    assert default.num_frames == default.model.config.num_frames and flagged.num_frames == 4
    assert (default.conv_mode, flagged.conv_mode) == ("llava_v1", "plain")
    assert default.model.language_model.generation_config.cache_implementation is None
    assert flagged.model.language_model.generation_config.cache_implementation == "static"
    assert str(flagged.device) == "cpu"


def test_api_static_cache_serves_one_generation_at_a_time(capsys):
    assert api.parse_args([]).max_concurrency == 2
    assert api.parse_args(["--static-cache"]).max_concurrency == 1
    assert api.parse_args(["--max-concurrency", "3"]).max_concurrency == 3
    with pytest.raises(SystemExit) as exit_info:
        api.parse_args(["--static-cache", "--max-concurrency", "2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--static-cache runs one generation at a time" in err and "Traceback" not in err


REQUIRED = {"cli": ["--video-file", "a.mp4"], "cli_streaming": [], "api": [], "gradio_demo": [],
            "videoqa": ["--benchmark", "synthetic", "--question-file", "q.json", "--answer-file", "a.json",
                        "--output-dir", "out"]}


@pytest.mark.parametrize("name", list(REQUIRED))
def test_every_front_end_has_the_verbose_flag(name):
    from llava.eval import videoqa
    from llava.serve import cli, cli_streaming

    front_end = {"cli": cli, "cli_streaming": cli_streaming, "api": api, "gradio_demo": gradio_demo,
                 "videoqa": videoqa}[name]
    assert front_end.parse_args(REQUIRED[name]).verbose is False
    assert front_end.parse_args([*REQUIRED[name], "--verbose"]).verbose is True
