"""python -m llava.serve.cli on a tiny random checkpoint: one-shot, interactive, images, flags and user errors."""

import io

import pytest

from llava.serve import cli, chat_session, options
from llava.serve.chat_session import ChatSession, GenerationSettings

GREEDY = GenerationSettings(max_new_tokens=6, temperature=0.0)
FAST = ["--device", "cpu", "--max-new-tokens", "6", "--temperature", "0"]


class SpySession(ChatSession):
    """A ChatSession that remembers every instance and how many messages each turn started from."""

    created: list["SpySession"] = []

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        session = super().from_pretrained(*args, **kwargs)
        session.history_before_turn = []
        cls.created.append(session)
        return session

    def ask(self, question, settings=None):
        self.history_before_turn.append(len(self.conversation.messages))
        return super().ask(question, settings)


@pytest.fixture
def spy(monkeypatch):
    monkeypatch.setattr(SpySession, "created", [])
    monkeypatch.setattr(options, "ChatSession", SpySession)  # the CLI opens its session through serve/options
    return SpySession.created


def reference(checkpoint, video, questions, **kwargs):
    session = ChatSession.from_pretrained(checkpoint, device="cpu", **kwargs)
    session.load_video(video)
    return [session.ask(q, GREEDY) for q in questions]


def assert_user_error(capsys, code, *fragments):
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0]


def test_query_prints_the_session_answer(tiny_checkpoint, tiny_video, capsys):
    question = "What was in the first scene?"
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", question, *FAST])
    out = capsys.readouterr().out
    assert code == 0
    (expected,) = reference(tiny_checkpoint, tiny_video, [question])
    assert out == expected + "\n"


def test_interactive_two_turns_keep_history(tiny_checkpoint, tiny_video, capsys, monkeypatch, spy):
    questions = ["What was in the first scene?", "How many scenes are there?"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(questions) + "\n\n"))
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), *FAST])
    out = capsys.readouterr().out
    assert code == 0
    first, second = reference(tiny_checkpoint, tiny_video, questions)
    assert out.count("USER: ") == 3  # two questions, then the empty line that ends the chat
    assert f"ASSISTANT: {first}\n" in out and f"ASSISTANT: {second}\n" in out
    (session,) = spy
    assert session.history_before_turn == [0, 2]  # the second turn is asked on top of the first
    prompt = session.conversation.get_prompt()
    assert questions[0] in prompt and questions[1] in prompt and prompt.index(questions[0]) < prompt.index(questions[1])


@pytest.mark.parametrize("ending", ["exit\n", ""])  # "exit" and EOF end the chat too
def test_interactive_ends_on_exit_or_eof(tiny_checkpoint, tiny_video, capsys, monkeypatch, ending):
    monkeypatch.setattr("sys.stdin", io.StringIO("Describe the video.\n" + ending))
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), *FAST])
    assert code == 0
    assert capsys.readouterr().out.count("ASSISTANT: ") == 1


def test_image_file(tiny_checkpoint, tiny_image, capsys, spy):
    args = ["--model-path", str(tiny_checkpoint), "--image-file", str(tiny_image), "--query", "Describe it."]
    code = cli.main([*args, *FAST])
    assert code == 0
    assert spy[0].media_token == "<image>" and spy[0].media is not None
    assert capsys.readouterr().err.count("error:") == 0


def test_num_frames_and_ablation_flags(tiny_checkpoint, tiny_video, spy):
    base = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", "Describe it.", *FAST]
    assert cli.main(base) == 0
    assert cli.main([*base, "--num-frames", "4", "--ablate-memory"]) == 0
    default, flagged = spy
    assert default.num_frames == default.model.config.num_frames == 8
    assert default.model.memory_ablation is False
    assert flagged.num_frames == 4
    assert flagged.model.memory_ablation is True


def test_missing_video_file(tiny_checkpoint, tmp_path, capsys):
    missing = tmp_path / "nope.mp4"
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(missing), "--query", "hi", *FAST])
    assert_user_error(capsys, code, str(missing))


def test_corrupt_video_file(tiny_checkpoint, tmp_path, capsys):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n")
    code = cli.main(["--model-path", str(tiny_checkpoint), "--video-file", str(fake), "--query", "hi", *FAST])
    assert_user_error(capsys, code, str(fake))


def test_missing_model_folder(tiny_video, tmp_path, capsys):
    missing = tmp_path / "no-model"
    code = cli.main(["--model-path", str(missing), "--video-file", str(tiny_video), "--query", "hi", *FAST])
    assert_user_error(capsys, code, str(missing))


def test_missing_demo_model_says_how_to_build_it(tiny_video, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(chat_session, "DEMO_CHECKPOINT", tmp_path / "videollamb-tiny-shapes")
    code = cli.main(["--video-file", str(tiny_video), "--query", "hi", *FAST])
    assert_user_error(capsys, code, "make demo-model", "scripts/train_tiny_demo.sh")


@pytest.mark.parametrize("flag", ["--load-4bit", "--load-8bit"])
def test_quantised_loading_answers_on_the_cpu(tiny_checkpoint, tiny_video, capsys, flag):
    """bitsandbytes runs on the CPU too: the quantized session answers as the library's does."""
    question = "What was in the first scene?"
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", question, flag]
    code = cli.main([*args, *FAST])
    out = capsys.readouterr().out
    assert code == 0
    (expected,) = reference(tiny_checkpoint, tiny_video, [question], **{flag[2:].replace("-", "_"): True})
    assert out == expected + "\n"


def test_both_quantisations_are_one_error_line(tiny_checkpoint, tiny_video, capsys):
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", "hi"]
    code = cli.main([*args, "--load-4bit", "--load-8bit", *FAST])
    assert_user_error(capsys, code, "choose one")


@pytest.mark.parametrize("media", [[], ["--video-file", "a.mp4", "--image-file", "b.png"]])
def test_exactly_one_media_flag(media, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--query", "hi", *media])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "Traceback" not in err and "--video-file" in err and "--image-file" in err


def test_static_cache_flag_loads_a_static_kv_cache_and_answers_the_same(tiny_checkpoint, tiny_video, capsys, spy):
    question = "Describe the video in one sentence."
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", question, *FAST]
    assert cli.main(args) == 0
    assert cli.main([*args, "--static-cache"]) == 0
    dynamic, static = spy
    assert dynamic.model.language_model.generation_config.cache_implementation is None
    generation = static.model.language_model.generation_config
    assert generation.cache_implementation == "static"
    assert generation.max_cache_len == static.model.config.text_config.max_position_embeddings
    first, second = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert first == second == reference(tiny_checkpoint, tiny_video, [question])[0]


# ---------------------------------------------------------------- bad media fail before the model loads
def write_audio_only(path):
    """An mp4 holding one AAC audio stream and no video stream."""
    import av
    import numpy as np

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory, tiny_video):
    """name -> a video file the chat CLI must refuse: missing, no video stream, text, truncated."""
    folder = tmp_path_factory.mktemp("bad-media")
    data = tiny_video.read_bytes()
    (folder / "text.mp4").write_text("this is not a video\n" * 20)
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return {"missing": folder / "missing.mp4", "audio_only": write_audio_only(folder / "audio_only.mp4"),
            "text": folder / "text.mp4", "truncated": folder / "truncated.mp4"}


@pytest.mark.parametrize("case", ["missing", "audio_only", "text", "truncated"])
def test_bad_video_is_reported_before_the_model_loads(bad_media, tmp_path, capsys, case):
    """--model-path names no checkpoint: had the model been loaded first, the error would name the checkpoint."""
    no_model = tmp_path / "no-such-checkpoint"
    code = cli.main(["--model-path", str(no_model), "--video-file", str(bad_media[case]), "--query", "hi", *FAST])
    assert_user_error(capsys, code, str(bad_media[case]))
    capsys.readouterr()
    assert cli.main(["--model-path", str(no_model), "--video-file", str(bad_media[case]), *FAST]) == 1
    out, err = capsys.readouterr()
    assert str(no_model) not in err and "USER:" not in out  # and the interactive chat never started


def test_bad_image_is_reported_before_the_model_loads(bad_media, tmp_path, capsys):
    no_model = tmp_path / "no-such-checkpoint"
    code = cli.main(["--model-path", str(no_model), "--image-file", str(bad_media["text"]), "--query", "hi", *FAST])
    line = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(line) == 1 and str(bad_media["text"]) in line[0] and str(no_model) not in line[0]


def test_the_opened_video_is_the_one_encoded(tiny_checkpoint, tiny_video, spy):
    """The reader opened for the probe is the one the frames are read from: the same tokens as a fresh load."""
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(tiny_video), "--query", "Describe it.", *FAST]
    assert cli.main(args) == 0
    fresh = ChatSession.from_pretrained(tiny_checkpoint, device="cpu")
    fresh.load_video(tiny_video)
    assert spy[0].media.shape == fresh.media.shape and (spy[0].media == fresh.media).all()
