"""The options the serving front ends share, turned into a session the way the API server and the gradio demo do."""

import re
from pathlib import Path

import pytest
import torch

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
    mapped = chat_session_from_options(front_end.parse_args([*base, "--device-map", "auto"]))
    assert {str(p.device) for p in mapped.model.parameters()} == {"cpu"}  # no GPU here: all of it on the CPU
    assert all(torch.equal(a, b) for a, b in zip(default.model.parameters(), mapped.model.parameters(), strict=True))


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


# ================================================================ one set of options, the same everywhere
def _front_ends():
    from llava.eval import videoqa
    from llava.eval.niavh import cli as niavh
    from llava.serve import cli, cli_streaming

    return {"cli": (cli, ["--video-file", "a.mp4"]), "cli_streaming": (cli_streaming, []), "api": (api, []),
            "gradio_demo": (gradio_demo, []),
            "videoqa": (videoqa, REQUIRED["videoqa"][:-2] + ["--output", "out"]), "niavh": (niavh, [])}


SHARED_DEFAULTS = {"model_path": None, "model_base": None, "device": "auto", "dtype": "auto", "conv_mode": None,
                   "static_cache": False, "verbose": False, "num_frames": None, "video_fps": None, "max_frames": None,
                   "temperature": 0.0, "top_p": 1.0, "device_map": None, "load_8bit": False, "load_4bit": False}
ANSWER_LENGTH = {"cli": 256, "api": 256, "gradio_demo": 256, "cli_streaming": 32, "videoqa": 32, "niavh": 32}


@pytest.mark.parametrize("name", list(ANSWER_LENGTH))
def test_every_front_end_has_the_shared_options_with_the_same_defaults(name):
    from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS, GenerationSettings

    module, required = _front_ends()[name]
    args = module.parse_args(required)
    assert {key: getattr(args, key) for key in SHARED_DEFAULTS} == SHARED_DEFAULTS
    assert args.max_new_tokens == ANSWER_LENGTH[name]
    assert ANSWER_LENGTH[name] in (GenerationSettings.max_new_tokens, SHORT_MAX_NEW_TOKENS)  # the two defaults
    flags = ["--model_path", "m", "--model-base", "b", "--device", "cpu", "--dtype", "bfloat16", "--conv_mode", "plain",
             "--static-cache", "--video_fps", "2", "--temperature", "0.5", "--top_p", "0.9", "--max_new_tokens", "7"]
    if name != "cli_streaming":  # a stream is read at a rate: it has no frame count or cap
        flags += ["--max-frames", "9"]
    if name == "api":
        flags += ["--max-concurrency", "1"]
    flagged = module.parse_args([*required, *flags])
    assert (flagged.model_path, flagged.model_base, flagged.device, flagged.dtype, flagged.conv_mode) == (
        "m", "b", "cpu", "bfloat16", "plain")
    assert (flagged.static_cache, flagged.video_fps, flagged.temperature, flagged.top_p, flagged.max_new_tokens) == (
        True, 2.0, 0.5, 0.9, 7)
    if name != "cli_streaming":
        assert module.parse_args([*required, "--num_frames", "5"]).num_frames == 5 and flagged.max_frames == 9
    loading = module.parse_args([*required, "--device_map", "auto", "--load-8bit", "--load_4bit"])
    assert (loading.device_map, loading.load_8bit, loading.load_4bit) == ("auto", True, True)


@pytest.mark.parametrize("name", list(ANSWER_LENGTH))
@pytest.mark.parametrize("bad", [["--video-fps", "0"], ["--max-new-tokens", "0"], ["--temperature", "-1"],
                                 ["--top-p", "0"], ["--num-frames", "4", "--video-fps", "1"], ["--max-frames", "0"],
                                 ["--conv-mode", "nope"], ["--dtype", "int3"],
                                 ["--device-map", "everywhere"]])
def test_shared_options_out_of_range_are_usage_errors(name, bad, capsys):
    module, required = _front_ends()[name]
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args([*required, *bad])
    assert exit_info.value.code == 2 and "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("name, old, new, value, expected", [
    ("cli_streaming", "--fps", "video_fps", "2", 2.0),
    ("gradio_demo", "--stream-fps", "video_fps", "2", 2.0),
    ("niavh", "--sample-fps", "video_fps", "2", 2.0),
    ("niavh", "--fps", "haystack_fps", "2", 2.0),
    ("niavh", "--output-dir", "output", "o", "o"),
    ("videoqa", "--output-dir", "output", "o", "o"),
    ("api", "--default-max-tokens", "max_new_tokens", "9", 9),
])
def test_older_flag_names_still_work_and_are_not_shown(name, old, new, value, expected, capsys):
    from pathlib import Path

    module, required = _front_ends()[name]
    if name == "videoqa":
        required = REQUIRED["videoqa"][:-2]
    got = getattr(module.parse_args([*required, old, value]), new)
    assert (str(got) if isinstance(got, Path) else got) == expected
    with pytest.raises(SystemExit):
        module.parse_args(["--help"])
    flags = capsys.readouterr().out.split("options:", 1)[1]  # the flags' list (the description names old ones)
    assert not re.search(rf"(^|[\s,]){re.escape(old)}([\s,=]|$)", flags, re.M)


def test_the_model_base_and_dtype_reach_the_loader(tiny_checkpoint, tmp_path):
    import torch

    no_tokenizer = tmp_path / "weights-only"
    no_tokenizer.mkdir()
    for file in ("config.json", "model.safetensors"):
        (no_tokenizer / file).write_bytes((tiny_checkpoint / file).read_bytes())
    args = api.parse_args(["--model-path", str(no_tokenizer), "--model-base", str(tiny_checkpoint), "--device", "cpu",
                           "--dtype", "bfloat16"])
    session = chat_session_from_options(args)
    assert next(session.model.parameters()).dtype == torch.bfloat16


GOLDEN = Path(__file__).resolve().parents[1] / "parity" / "golden"


def test_a_released_checkpoint_is_served_with_the_releases_template_and_resize():
    """The front ends' defaults come from the checkpoint: a released one gets vicuna_v1 and the resize without
    antialias; --conv-mode still overrides the template."""
    folder = GOLDEN / "model_default" / "videollamb-llava-tiny"
    released = chat_session_from_options(api.parse_args(["--model-path", str(folder), "--device", "cpu"]))
    assert released.conv_mode == "vicuna_v1" and released.processor.resize_antialias is False
    flagged = chat_session_from_options(
        api.parse_args(["--model-path", str(folder), "--device", "cpu", "--conv-mode", "llava_v1"])
    )
    assert flagged.conv_mode == "llava_v1"
