"""Bad and unusual inputs through every layer and front end (the cases of docs/robustness.md that the other test
folders do not already show): each ends in a clear error (one `error:` line and exit code 1, a 4xx answer, a
warning in the page) or is handled correctly, never a traceback, never a partly written result file."""

from __future__ import annotations

import ast
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from llava.errors import CheckpointError, VideoError
from llava.model.builder import load_model_weights, load_pretrained_model
from llava.model.checkpoint import load_tower_weights
from llava.video.decode import load_image, load_video, load_video_fps, open_video
from llava.video.transforms import VisualProcessor

from .conftest import (
    BAD_CASES,
    CHECKPOINT_CASES,
    CHECKPOINT_PROBLEM,
    GOOD_CASES,
    PROBLEM,
    VFR_PTS_MS,
    assert_one_error_line,
)

REPO = Path(__file__).resolve().parents[2]
FAST = ["--device", "cpu", "--max-new-tokens", "3"]


@pytest.fixture(autouse=True)
def empty_stdin(monkeypatch):
    """The chat and streaming CLIs read questions from stdin: none here."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def listing(folder: Path) -> list[str]:
    """Every file under `folder` (relative), or [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ================================================================ the decoder and the preprocessing (all front ends)
@pytest.mark.parametrize("case", GOOD_CASES)
def test_unusual_valid_videos_decode_to_rgb_frames(media, case):
    frames, seconds = load_video(media[case], num_frames=4)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 4 and frames.shape[3] == 3
    assert np.all(np.diff(seconds) >= 0)  # a one-frame video repeats its frame: times never go back
    pixels = VisualProcessor(size=32).video(frames)
    assert pixels.shape == (4, 3, 32, 32) and torch.isfinite(pixels).all()


def test_one_frame_video_gives_that_frame_at_any_sampling(media):
    frames, seconds = load_video(media["one_frame"], num_frames=8)
    assert frames.shape == (8, 32, 32, 3) and np.all(seconds == 0.0)
    frames, seconds = load_video_fps(media["one_frame"], fps=1.0, multiple_of=8)
    assert frames.shape[0] == 8 and np.all(seconds == 0.0)


def test_variable_frame_rate_sampling_is_monotonic_and_inside_the_video(media):
    last = VFR_PTS_MS[-1] / 1000
    with open_video(media["vfr"]) as video:
        assert video.num_frames == len(VFR_PTS_MS)
        streamed = [t for t, _ in video.iter_frames()]
        sampled, seconds = load_video_fps(video, fps=2.0)
        _, uniform = load_video(video, num_frames=5)
    for stamps in (streamed, seconds, uniform):
        assert np.all(np.diff(stamps) > 0) and stamps[0] == 0.0 and stamps[-1] <= last + 1e-6
    assert sampled.shape[0] == len(seconds) > 1
    np.testing.assert_allclose(streamed, np.asarray(VFR_PTS_MS) / 1000, atol=1e-3)  # the presentation times
    np.testing.assert_allclose(video.times, np.asarray(VFR_PTS_MS) / 1000, atol=1e-3)


def test_8k_frames_decode_and_preprocess_to_224_in_bounded_memory(video_8k):
    """Two 7680x4320 frames: decoded, and preprocessed one frame at a time (peak memory measured in a child)."""
    script = textwrap.dedent("""
        import json, resource, sys
        import torch
        torch.set_num_threads(1)
        from llava.video.decode import load_video
        from llava.video.transforms import VisualProcessor
        frames, seconds = load_video(sys.argv[1], num_frames=4)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        pixels = VisualProcessor(size=224).video(frames)
        extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"frames": list(frames.shape), "pixels": list(pixels.shape), "extra_mb": extra_mb,
                          "finite": bool(torch.isfinite(pixels).all()), "seconds": seconds.tolist(),
                          "left": float(pixels[0, :, :, 0].mean()), "right": float(pixels[0, :, :, -1].mean())}))
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(video_8k)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["frames"] == [4, 4320, 7680, 3] and got["pixels"] == [4, 3, 224, 224] and got["finite"]
    assert got["seconds"] == [0.0, 0.0, 0.0, 0.25]  # int(linspace(0, 1, 4)) = 0, 0, 0, 1 at 4 fps
    assert got["left"] > got["right"]  # the centre crop keeps the middle: bright on its left, dark on its right
    assert got["extra_mb"] < 1500, got  # one 8K frame of float pixels at a time (all four at once: ~3 GB)


def test_pixels_are_uint8_so_non_finite_values_cannot_enter():
    """Decoders only produce uint8; the processor refuses anything else (floats could hold NaN or inf)."""
    with pytest.raises(ValueError, match="uint8"):
        VisualProcessor(size=32).video(np.full((2, 32, 32, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="uint8"):
        VisualProcessor(size=32).image(np.full((32, 32, 3), np.inf, np.float32))


def test_paths_the_os_refuses_are_video_errors(tmp_path):
    long_name = tmp_path / ("x" * 300 + ".mp4")  # ENAMETOOLONG from stat()
    for load in (load_video, load_image):
        with pytest.raises(VideoError, match="cannot access"):
            load(long_name)
        with pytest.raises(VideoError, match="no such"):
            load(tmp_path / "nul\x00byte.mp4")


def _patched_mp4(tmp_path: Path, old: bytes, new: bytes) -> Path:
    """A valid 4-frame mp4 titled TITLEMARKER, with the bytes `old` replaced by `new` (same length)."""
    import av

    path = tmp_path / "source.mp4"
    with av.open(str(path), "w") as container:
        container.metadata["title"] = "TITLEMARKER"
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for level in range(4):
            frame = np.full((32, 32, 3), 50 * level, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    assert len(old) == len(new) and old in data
    out = tmp_path / "patched.mp4"
    out.write_bytes(data.replace(old, new))
    return out


def test_metadata_that_is_not_utf8_does_not_stop_the_video(tmp_path):
    """Found by the fuzzer: a non-UTF-8 tag made PyAV raise UnicodeDecodeError at open."""
    path = _patched_mp4(tmp_path, b"TITLEMARKER", b"\x80\x81\xfe\xffTITLEMA")
    with open_video(path) as video:
        assert video.get_frames([0, 3]).shape == (2, 32, 32, 3)


def test_unknown_codec_is_a_video_error(tmp_path):
    """Found by the fuzzer: a stream FFmpeg has no decoder for (here the avc1 fourcc renamed) raised AttributeError."""
    path = _patched_mp4(tmp_path, b"avc1", b"zzzz")
    with pytest.raises(VideoError, match="patched.mp4.*cannot decode its video stream"):
        load_video(path, num_frames=2)


# ================================================================ checkpoints (every front end loads through these)
@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_checkpoint_faults_are_checkpoint_errors(checkpoints, case):
    with pytest.raises(CheckpointError) as info:
        load_pretrained_model(checkpoints[case], device="cpu")
    assert CHECKPOINT_PROBLEM[case] in str(info.value) and "\n" not in str(info.value).strip()


def test_non_finite_weights_name_the_parameter(checkpoints):
    with pytest.raises(CheckpointError, match=r"non-finite values in bridge\.read_memory_emb$"):
        load_model_weights(checkpoints["non_finite"])


class _Marker:
    """Unpickling this would create the file `path`: a stand-in for arbitrary code in a checkpoint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_pickled_code_in_a_tower_checkpoint_is_never_run(tmp_path):
    tower, marker = tmp_path / "LanguageBind_Video_merge", tmp_path / "code-was-run"
    tower.mkdir()
    (tower / "config.json").write_text("{}")
    torch.save({"vision_model.embeddings.patch_embedding.weight": torch.zeros(2), "payload": _Marker(marker)},
               tower / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pickled objects other than tensors"):
        load_tower_weights(tower)
    assert not marker.exists()
    (tower / "pytorch_model.bin").write_bytes(pickle.dumps(_Marker(marker)))  # a bare pickle, not a torch zip
    with pytest.raises(CheckpointError):
        load_tower_weights(tower)
    assert not marker.exists()
    torch.save({"vision_model.w": torch.ones(2), "text_model.w": torch.ones(1)}, tower / "pytorch_model.bin")
    assert list(load_tower_weights(tower)) == ["vision_model.w"]  # plain tensors still load


def test_no_code_path_loads_pickles_or_remote_code():
    """Over llava/: every torch.load passes weights_only=True, nothing unpickles, nothing trusts remote code."""
    problems = []
    for file in sorted((REPO / "llava").rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: k.value for k in node.keywords}
            where = f"{file.relative_to(REPO)}:{node.lineno}"
            if name == "torch.load":
                safe = keywords.get("weights_only")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    problems.append(f"{where}: torch.load without weights_only=True")
            if name.split(".")[-1] in ("load", "loads") and name.split(".")[0] in ("pickle", "dill", "joblib"):
                problems.append(f"{where}: {name}")
            remote = keywords.get("trust_remote_code")
            if remote is not None and not (isinstance(remote, ast.Constant) and remote.value is False):
                problems.append(f"{where}: trust_remote_code")
    assert problems == []
    text = "\n".join(f.read_text(encoding="utf-8") for f in (REPO / "llava").rglob("*.py"))
    assert "trust_remote_code=True" not in text and "weights_only=False" not in text


# ================================================================ llava/serve/cli.py
def cli_run(checkpoint, *args):
    from llava.serve import cli

    return cli.main(["--model-path", str(checkpoint), *args, "--query", "What is in it?", *FAST])


@pytest.mark.parametrize("case", BAD_CASES)
def test_cli_bad_video_is_one_error_line(tiny_checkpoint, media, capsys, case):
    code = cli_run(tiny_checkpoint, "--video-file", str(media[case]))
    assert_one_error_line(capsys, code, str(media[case]), PROBLEM[case])


@pytest.mark.parametrize("case", GOOD_CASES)
def test_cli_answers_about_unusual_valid_videos(tiny_checkpoint, media, capsys, case):
    code = cli_run(tiny_checkpoint, "--video-file", str(media[case]))
    out, err = capsys.readouterr()
    assert code == 0 and "error" not in err and len(out.splitlines()) == 1


def test_cli_answers_about_an_8k_video(tiny_checkpoint, video_8k, capsys):
    code = cli_run(tiny_checkpoint, "--video-file", str(video_8k), "--num-frames", "2")
    out, err = capsys.readouterr()
    assert code == 0 and "error" not in err and len(out.splitlines()) == 1


def test_cli_bad_image_is_one_error_line(tiny_checkpoint, media, capsys):
    code = cli_run(tiny_checkpoint, "--image-file", str(media["text"]))
    assert_one_error_line(capsys, code, str(media["text"]), "cannot read image")


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_cli_checkpoint_faults_are_one_error_line(checkpoints, tiny_video, capsys, case):
    code = cli_run(checkpoints[case], "--video-file", str(tiny_video))
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])


# ================================================================ llava/serve/cli_streaming.py
def streaming_run(checkpoint, video, out: Path):
    from llava.serve import cli_streaming

    return cli_streaming.main(["--model-path", str(checkpoint), "--video-file", str(video), "--fps", "4",
                               "--output", str(out / "history.json"), "--save-state", str(out / "state.pt"), *FAST])


@pytest.mark.parametrize("case", BAD_CASES)
def test_streaming_bad_video_is_one_error_line_and_writes_nothing(tiny_checkpoint, media, tmp_path, capsys, case):
    code = streaming_run(tiny_checkpoint, media[case], tmp_path / "out")
    assert_one_error_line(capsys, code, str(media[case]), PROBLEM[case])
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("case", GOOD_CASES)
def test_streaming_unusual_valid_videos_write_whole_results(tiny_checkpoint, media, tmp_path, capsys, case):
    assert streaming_run(tiny_checkpoint, media[case], tmp_path) == 0
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["ended"] == "finished" and record["video"] == str(media[case]) and record["history"]
    assert listing(tmp_path) == ["history.json", "state.pt"]  # and no temp file left behind


@pytest.mark.parametrize("case", ["corrupted_weights", "config_mismatch", "non_finite"])
def test_streaming_checkpoint_faults_write_nothing(checkpoints, tiny_video, tmp_path, capsys, case):
    code = streaming_run(checkpoints[case], tiny_video, tmp_path / "out")
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])
    assert listing(tmp_path / "out") == []


# ================================================================ llava/serve/api.py
@pytest.fixture(scope="module")
def api(tiny_checkpoint, media):
    from llava.serve.api import ApiSettings, create_app
    from llava.serve.chat_session import ChatSession

    session = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    settings = ApiSettings(model_id="tiny", allowed_dirs=(media["text"].parent,), default_max_tokens=3,
                           download_timeout=2)
    with TestClient(create_app(session, settings), raise_server_exceptions=False) as client:
        yield client


def chat(api, content, **extra):
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 3, **extra}
    return api.post("/v1/chat/completions", json=body)


def video_question(url: str) -> list[dict]:
    return [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "What is in it?"}]


def assert_api_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.mark.parametrize("case", BAD_CASES)
def test_api_bad_video_is_400_naming_the_problem(api, media, case):
    response = chat(api, video_question(media[case].as_uri()))
    code = "media_not_found" if case in ("missing", "empty_dir") else "invalid_media"
    error = assert_api_error(response, 400, code)
    assert code == "media_not_found" or PROBLEM[case] in error["message"]


@pytest.mark.parametrize("case", ["one_frame", "unicode", "gray", "rotated", "vfr"])
def test_api_answers_about_unusual_valid_videos(api, media, case):
    response = chat(api, video_question(media[case].as_uri()))  # the unicode name travels percent-encoded
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.parametrize("body, code", [
    (b"[" * 100_000, "invalid_json"),  # nested too deeply for the JSON parser
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "invalid_parameter"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', "invalid_parameter"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}', "invalid_parameter"),
    (b'{"messages": [{"role": "user", "content": [{"type": ["text"]}]}]}', "invalid_content_part"),
    (b'{"messages": [{"role": "user", "content": [{"type": {"a": 1}}]}]}', "invalid_content_part"),
    (b'{"messages": [{"role": ["user"], "content": "hi"}]}', "invalid_role"),
    (b'{"messages": [{"role": "user"}]}', "invalid_content"),
    (b'{"messages": "hi"}', "missing_messages"),
    (b"\xff\xfe not utf-8", "invalid_json"),
])
def test_api_malformed_bodies_are_400(api, body, code):
    response = api.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_api_error(response, 400, code)


@pytest.mark.parametrize("url, status, code", [
    ("file://{allowed}/" + "x" * 300 + ".mp4", 400, "invalid_url"),  # the OS refuses the name
    ("file:///tmp/nul%00byte.mp4", 400, "invalid_url"),
    ("file://[::1/x.mp4", 400, "invalid_url"),
    ("http://[::1/x.mp4", 400, "download_failed"),  # httpx.InvalidURL
    ("http://127.0.0.1:9/x.mp4", 400, "download_failed"),  # nothing listens on the discard port
    ("data:video/mp4;base64,", 400, "invalid_data_url"),
    ("data:video/mp4;base64,AAAAGGZ0eXBtcDQy", 400, "invalid_media"),  # a truncated mp4 header
])
def test_api_unusable_media_urls_are_4xx(api, media, url, status, code):
    url = url.replace("{allowed}", str(media["text"].parent))
    assert_api_error(chat(api, video_question(url)), status, code)


@pytest.mark.parametrize("case", ["corrupted_weights", "config_mismatch", "non_finite"])
def test_api_main_checkpoint_faults_are_one_error_line(checkpoints, capsys, case):
    from llava.serve import api as api_module

    code = api_module.main(["--model-path", str(checkpoints[case]), "--device", "cpu"])
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])


# ================================================================ llava/serve/gradio_demo.py
@pytest.fixture(scope="module")
def handlers(tiny_checkpoint):
    from llava.serve.chat_session import ChatSession, GenerationSettings
    from llava.serve.gradio_demo import ChatHandlers
    from llava.serve.gradio_parts import DemoSettings

    base = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    settings = DemoSettings(generation=GenerationSettings(max_new_tokens=3), stream_max_new_tokens=3)
    return ChatHandlers(base.fork, settings), base, settings


@pytest.mark.parametrize("case", BAD_CASES)
def test_gradio_bad_video_is_a_message_in_the_page(handlers, media, case):
    from llava.serve.gradio_demo import stream_captions

    chat_handlers, base, settings = handlers
    user, chatbot, status, video, _ = chat_handlers.load_video(str(media[case]), None)
    assert status.startswith("⚠️") and f"{media[case].name}: this video cannot be read" in status
    assert PROBLEM[case] in status and user.session.media is None and video is None
    assert chatbot[0]["role"] == "assistant" and "cannot be read" in chatbot[0]["content"]
    *_, (log, last) = list(stream_captions(base.fork, settings)(str(media[case])))
    assert log == "" and last.startswith("⚠️") and "cannot be read" in last


@pytest.mark.parametrize("case", ["one_frame", "unicode", "alpha"])
def test_gradio_unusual_valid_videos_are_answered(handlers, media, case):
    chat_handlers, _, _ = handlers
    user, chatbot, status, _, _ = chat_handlers.load_video(str(media[case]), None)
    assert status.startswith("Loaded video") and user.session.media is not None
    *_, (chatbot, box, user) = list(chat_handlers.send("What is in it?", user))
    assert [m["role"] for m in chatbot] == ["user", "assistant"] and box == ""


@pytest.mark.parametrize("case", ["corrupted_weights", "non_finite"])
def test_gradio_main_checkpoint_faults_are_one_error_line(checkpoints, capsys, case):
    from llava.serve import gradio_demo

    code = gradio_demo.main(["--model-path", str(checkpoints[case]), "--port", "7999", "--device", "cpu"])
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])


# ================================================================ llava/train/train.py
@pytest.fixture(scope="module")
def train_folder(tmp_path_factory, tokenizer, tiny_checkpoint):
    """A tiny fresh-model config (the tokenizer is the tiny checkpoint's), and one valid video row."""
    from llava.model.presets import tiny_config

    folder = tmp_path_factory.mktemp("train")
    tiny_config(vocab_size=len(tokenizer)).to_json_file(str(folder / "tiny.json"))
    (folder / "tokenizer").symlink_to(tiny_checkpoint)
    row = {"id": "ok", "video": "clip.mp4",
           "conversations": [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "red"}]}
    return folder, row


def train_run(folder: Path, data: Path, out: Path, *model: str) -> int:
    from llava.train.train import main

    model = model or ("--model_config", str(folder / "tiny.json"))
    return main([*model, "--tokenizer_path", str(folder / "tokenizer"), "--data_path", str(data),
                 "--x_folder", str(folder), "--num_frames", "4", "--output_dir", str(out), "--use_cpu", "True",
                 "--max_steps", "1", "--per_device_train_batch_size", "1", "--save_strategy", "no",
                 "--report_to", "none", "--disable_tqdm", "True"])


BAD_DATA = {
    "empty_file": ("", "invalid JSON at line 1 column 1"),
    "invalid_json": ('[{"id": "a", ', "invalid JSON at line 1"),
    "nested_too_deeply": ("[" * 100_000, "nested too deeply"),
    "not_a_list": ('{"id": "a"}', "expected a JSON list"),
    "empty_list": ("[]", "holds no rows"),
    "not_utf8": (b"\xff\xfe[]", "cannot read"),
    "missing_keys": ('[{"id": "a"}, {"conversations": []}]', "2 of 2 rows are malformed"),
    "wrong_types": ('[{"id": true, "conversations": "hi"}, {"id": 1.5}, 7]', "3 of 3 rows are malformed"),
    "non_finite": ('[{"id": NaN, "conversations": [{"from": "human", "value": Infinity}]}]', "malformed"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_train_bad_data_file_is_one_error_line_and_saves_nothing(train_folder, tmp_path, capsys, case):
    folder, _ = train_folder
    content, problem = BAD_DATA[case]
    data = tmp_path / "rows.json"
    data.write_bytes(content if isinstance(content, bytes) else content.encode())
    code = train_run(folder, data, tmp_path / "out")
    assert_one_error_line(capsys, code, problem)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_train_missing_data_file_and_bad_model_config(train_folder, tmp_path, capsys):
    folder, row = train_folder
    assert_one_error_line(capsys, train_run(folder, tmp_path / "nope.json", tmp_path / "out"), "no such data file")
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([row]))
    (tmp_path / "bad.json").write_text("{not json")
    for config, problem in ((tmp_path / "bad.json", "cannot read it"), (tmp_path / "none.json", "cannot read it")):
        code = train_run(folder, data, tmp_path / "out", "--model_config", str(config))
        assert_one_error_line(capsys, code, "--model_config", problem)
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("fps", ["0", "-1", "nan"])
def test_train_bad_frame_rate_is_one_error_line(train_folder, tmp_path, capsys, fps):
    folder, row = train_folder
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([row]))
    code = train_run(folder, data, tmp_path / "out", "--model_config", str(folder / "tiny.json"), "--video_fps", fps)
    assert_one_error_line(capsys, code, "video_fps must be a positive number")
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("case", ["no_config", "corrupted_weights", "config_mismatch", "non_finite"])
def test_train_checkpoint_faults_are_one_error_line(train_folder, checkpoints, tmp_path, capsys, case):
    folder, row = train_folder
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([row]))
    code = train_run(folder, data, tmp_path / "out", "--model_name_or_path", str(checkpoints[case]))
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_rows_with_non_finite_numbers_are_malformed_rows():
    from llava.data.dataset import validate_row

    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]
    assert "id" in validate_row({"id": float("nan"), "conversations": turns})
    assert "not a string" in validate_row({"id": "a", "conversations": [{"from": "human", "value": float("inf")}]})
    assert "path string" in validate_row({"id": "a", "video": float("nan"), "conversations": turns})


# ================================================================ llava/eval/videoqa.py
def write_bench(folder: Path, names: list[str]) -> tuple[Path, Path]:
    questions = [{"video_name": name, "question_id": f"q{i}", "question": "What colour?",
                  "option": {"option 0": "red", "option 1": "blue"}} for i, name in enumerate(names)]
    answers = [{"question_id": f"q{i}", "answer": i % 2} for i in range(len(names))]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_q.json").write_text(json.dumps(questions, ensure_ascii=False))
    (folder / "test_a.json").write_text(json.dumps(answers))
    return folder / "test_q.json", folder / "test_a.json"


def videoqa_run(checkpoint, q_file: Path, a_file: Path, video_dir: Path, out: Path) -> int:
    from llava.eval import videoqa

    return videoqa.main(["--benchmark", "synthetic", "--model-path", str(checkpoint), "--question-file", str(q_file),
                         "--answer-file", str(a_file), "--video-dir", str(video_dir), "--output-dir", str(out),
                         "--device", "cpu", "--max-new-tokens", "3", "--quiet"])


def test_videoqa_bad_and_unusual_videos_are_recorded_and_the_run_completes(tiny_checkpoint, media, tmp_path):
    cases = [*BAD_CASES, *GOOD_CASES]
    q_file, a_file = write_bench(tmp_path / "bench", [media[case].name for case in cases])
    out = tmp_path / "out"
    assert videoqa_run(tiny_checkpoint, q_file, a_file, media["text"].parent, out) == 0
    rows = {row["video_name"]: row for row in map(json.loads, (out / "merge.jsonl").read_text().splitlines())}
    for case in BAD_CASES:
        row = rows[media[case].name]
        assert row["pred"] is None and row["correct"] is False and row["error"], row
    for case in GOOD_CASES:
        assert "error" not in rows[media[case].name] and rows[media[case].name]["output"] is not None
    scores = json.loads((out / "scores.json").read_text())
    assert scores["num_questions"] == len(cases) and len(scores["error_ids"]) == len(BAD_CASES)
    assert listing(out) == ["chunk_0_of_1.jsonl", "merge.jsonl", "run.json", "scores.json"]


BAD_QUESTIONS = {
    "invalid_json": ("[{", "not a readable JSON file"),
    "nested_too_deeply": ("[" * 100_000, "not a readable JSON file"),
    "not_a_list": ('{"question_id": 1}', "expected a JSON list of objects"),
    "missing_key": ('[{"question_id": "q0", "video_name": "a.mp4", "question": "?"}]', "row 0 lacks option"),
    "options_a_string": ('[{"question_id": "q0", "video_name": "a.mp4", "question": "?", "option": "red"}]',
                         "option must be"),
    "option_empty_key": (json.dumps([{"question_id": "q0", "video_name": "a.mp4", "question": "?",
                                      "option": {"": "red", "option 1": "blue"}}]), "option must be"),
}


@pytest.mark.parametrize("case", list(BAD_QUESTIONS))
def test_videoqa_bad_question_file_is_one_error_line_and_writes_nothing(tiny_checkpoint, media, tmp_path, capsys,
                                                                        case):
    q_file, a_file = write_bench(tmp_path / "bench", ["a.mp4"])
    q_file.write_text(BAD_QUESTIONS[case][0])
    code = videoqa_run(tiny_checkpoint, q_file, a_file, media["text"].parent, tmp_path / "out")
    assert_one_error_line(capsys, code, BAD_QUESTIONS[case][1])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("answer, problem", [('"1"', "is not an option index"), ("NaN", "is not an option index"),
                                             ("7", "is not an option index"), ("true", "is not an option index")])
def test_videoqa_answer_of_the_wrong_type_is_one_error_line(tiny_checkpoint, media, tmp_path, capsys, answer,
                                                            problem):
    q_file, a_file = write_bench(tmp_path / "bench", ["a.mp4"])
    a_file.write_text(f'[{{"question_id": "q0", "answer": {answer}}}]')
    code = videoqa_run(tiny_checkpoint, q_file, a_file, media["text"].parent, tmp_path / "out")
    assert_one_error_line(capsys, code, problem)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("record", ["[1, 2]", "{not json", ""])
def test_videoqa_damaged_run_record_is_one_error_line(tiny_checkpoint, media, tmp_path, capsys, record):
    q_file, a_file = write_bench(tmp_path / "bench", [media["one_frame"].name])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run.json").write_text(record)
    code = videoqa_run(tiny_checkpoint, q_file, a_file, media["text"].parent, tmp_path / "out")
    assert_one_error_line(capsys, code, "run.json: unreadable run record")
    assert listing(tmp_path / "out") == ["run.json"]


@pytest.mark.parametrize("case", ["corrupted_weights", "config_mismatch", "non_finite"])
def test_videoqa_checkpoint_faults_write_no_result(checkpoints, media, tmp_path, capsys, case):
    q_file, a_file = write_bench(tmp_path / "bench", [media["one_frame"].name])
    code = videoqa_run(checkpoints[case], q_file, a_file, media["text"].parent, tmp_path / "out")
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])
    assert listing(tmp_path / "out") == []


# ================================================================ llava/eval/niavh
def niavh_run(out: Path, *extra: str, model: Path | None = None) -> int:
    from llava.eval.niavh.cli import main

    model_args = ["--model-path", str(model)] if model is not None else []
    return main([*model_args, "--device", "cpu", "--lengths", "4", "--depths", "0", "--output-dir", str(out),
                 "--size", "32", "--max-new-tokens", "3", "--quiet", *extra])


VIDEO_NEEDLE = ["--modality", "video", "--needle-description", "a grey square", "--distractors", "a;b;c"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_niavh_bad_needle_video_is_one_error_line_and_writes_nothing(media, tmp_path, capsys, case):
    code = niavh_run(tmp_path / "out", *VIDEO_NEEDLE, "--needle-video", str(media[case]))
    expected = "no such file" if case in ("missing", "empty_dir") else PROBLEM[case]
    assert_one_error_line(capsys, code, media[case].name, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["one_frame", "unicode", "rotated", "vfr", "alpha"])
def test_niavh_unusual_valid_needle_videos_are_used(media, case):
    from llava.eval.niavh.cli import build_parser, prepare

    args = build_parser().parse_args([*VIDEO_NEEDLE, "--needle-video", str(media[case]), "--lengths", "4",
                                      "--depths", "0", "--size", "32"])
    needles, _, _, _ = prepare(args)
    frame = np.zeros((32, 32, 3), np.uint8)
    needles["video"].paint(frame, 0, 1.0)
    assert frame.shape == (32, 32, 3)


@pytest.mark.parametrize("case", ["empty_folder", "broken_video"])
def test_niavh_bad_haystack_is_one_error_line_and_writes_no_cell(tiny_checkpoint, media, tmp_path, capsys, case):
    hay = tmp_path / "hay"
    hay.mkdir()
    if case == "broken_video":
        (hay / "clip.mp4").write_bytes(media["text"].read_bytes())
    code = niavh_run(tmp_path / "out", "--modality", "image", "--haystack-dir", str(hay), model=tiny_checkpoint)
    assert_one_error_line(capsys, code, "holds no videos" if case == "empty_folder" else "clip.mp4")
    assert [f for f in listing(tmp_path / "out") if f.endswith(".json")] == []


@pytest.mark.parametrize("case", ["no_weights", "config_mismatch", "non_finite"])
def test_niavh_checkpoint_faults_are_one_error_line(checkpoints, tmp_path, capsys, case):
    code = niavh_run(tmp_path / "out", "--modality", "image", model=checkpoints[case])
    assert_one_error_line(capsys, code, CHECKPOINT_PROBLEM[case])
    assert listing(tmp_path / "out") == []
