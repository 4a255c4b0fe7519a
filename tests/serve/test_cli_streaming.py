"""python -m llava.serve.cli_streaming on flat-colour videos with a sharpened tiny model: captions at the cuts,
questions typed while it runs, the history file, save and resume, Ctrl-C, and user errors."""

import io
import json
import os
import re
import signal
import threading
import time

import pytest
import torch

from llava.errors import VideoError
from llava.model.builder import load_pretrained_model
from llava.serve import cli_streaming, chat_session, stream_source
from llava.serve.cli_streaming import QuestionReader
from llava.serve.streaming_session import StreamingSession
from llava.video.decode import open_video
from llava.video.write import write_mp4

from .test_cli import assert_user_error
from .test_streaming_session import flat_scenes, sharpen

FPS = 4.0
NUM_SCENES = 5  # flat colours, 4 frames each at 4 fps: cuts at exactly 1, 2, 3 and 4 s; the video ends at 4.75 s
FAST = ["--device", "cpu", "--max-new-tokens", "4", "--video-fps", str(FPS)]
LINE = re.compile(r"^\(Video Time = ([0-9.]+)s\) (User|Assistant): (.*)$")


@pytest.fixture(scope="module")
def sharp_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny random checkpoint with a tower that sees scene changes, saved for --model-path."""
    folder = tmp_path_factory.mktemp("sharp-ckpt")
    tokenizer, model, _, _ = load_pretrained_model(tiny_checkpoint, device="cpu")
    sharpen(model).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def flat_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("flat") / "flat.mp4"
    return write_mp4((frame for _, frame in flat_scenes(NUM_SCENES)), path, fps=FPS)


@pytest.fixture(autouse=True)
def empty_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def run(checkpoint, video, *extra):
    return cli_streaming.main(["--model-path", str(checkpoint), "--video-file", str(video), *FAST, *extra])


def said(out: str) -> list[tuple[float, str, str]]:
    """The (time, role, text) of every `(Video Time = ...)` line printed."""
    lines = [LINE.match(line) for line in out.splitlines() if line.startswith("(Video Time")]
    assert all(lines), out
    return [(float(m[1]), m[2], m[3]) for m in lines]


def reference_captions(checkpoint, video):
    """The engine's own captions over the same decoded frames: (segment end time, text)."""
    tokenizer, model, processor, _ = load_pretrained_model(checkpoint, device="cpu")
    session = StreamingSession(model, tokenizer, processor)
    session.settings.max_new_tokens = 4
    with open_video(video) as reader:
        events = [e for t, frame in reader.iter_frames(FPS) for e in session.push(frame, t)]
    return [(e.time, e.text) for e in events + session.finish()]


def test_captions_are_printed_as_scenes_end_within_a_frame_of_the_cut(sharp_checkpoint, flat_video, capsys):
    assert run(sharp_checkpoint, flat_video) == 0
    captions = said(capsys.readouterr().out)
    assert {role for _, role, _ in captions} == {"Assistant"}
    expected = reference_captions(sharp_checkpoint, flat_video)
    assert [text for _, _, text in captions] == [text for _, text in expected]
    *at_cuts, (last_time, _, _) = captions
    assert len(at_cuts) >= 2  # the random tower finds most of the four colour changes
    cuts = [float(c) for c in range(1, NUM_SCENES)]
    for (t, _, _), (segment_end, _) in zip(at_cuts, expected):
        assert any(c <= t < c + 1 / FPS for c in cuts), t  # said when the first frame of the new scene is seen
        assert t == pytest.approx(segment_end + 1 / FPS)
    assert last_time == pytest.approx(NUM_SCENES - 1 / FPS)  # the last scene is captioned when the video ends


def test_static_cache_gives_the_same_captions(sharp_checkpoint, flat_video, capsys):
    assert run(sharp_checkpoint, flat_video, "--static-cache") == 0
    captions = [text for _, _, text in said(capsys.readouterr().out)]
    assert captions == [text for _, text in reference_captions(sharp_checkpoint, flat_video)]


def test_questions_typed_while_streaming_are_answered(sharp_checkpoint, flat_video, capsys, monkeypatch, tmp_path):
    questions = ["What was in the first scene?", "How many scenes are there?"]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{questions[0]}\n\n{questions[1]}"))  # blank line, no final newline
    assert run(sharp_checkpoint, flat_video, "--output", str(tmp_path / "h.json")) == 0
    lines = said(capsys.readouterr().out)
    asked = [i for i, (_, role, _) in enumerate(lines) if role == "User"]
    assert [lines[i][2] for i in asked] == questions
    for i in asked:  # each question is followed by its answer, at the same video time
        assert lines[i + 1][1] == "Assistant" and lines[i + 1][0] == lines[i][0]
    history = json.loads((tmp_path / "h.json").read_text())["history"]
    assert [e["text"] for e in history if e["role"] == "User"] == questions


def test_history_json_is_written_whole(sharp_checkpoint, flat_video, capsys, tmp_path):
    out = tmp_path / "new" / "history.json"
    assert run(sharp_checkpoint, flat_video, "--output", str(out), "--prompt", "What is shown?") == 0
    printed = said(capsys.readouterr().out)
    record = json.loads(out.read_text())
    assert record["video"] == str(flat_video) and record["prompt"] == "What is shown?" and record["fps"] == FPS
    assert record["ended"] == "finished"
    assert [(e["time"], e["role"], e["text"]) for e in record["history"]] == printed
    assert os.listdir(out.parent) == ["history.json"]  # no temp file left behind


def test_save_and_resume_continue_the_stream(sharp_checkpoint, flat_video, capsys, tmp_path):
    assert run(sharp_checkpoint, flat_video) == 0
    whole = said(capsys.readouterr().out)
    state = tmp_path / "stream.pt"
    assert run(sharp_checkpoint, flat_video, "--until", "2.1", "--save-state", str(state)) == 0  # stops mid-scene
    first = said(capsys.readouterr().out)
    assert run(sharp_checkpoint, flat_video, "--resume-state", str(state), "--output", str(tmp_path / "h.json")) == 0
    second = said(capsys.readouterr().out)
    assert first and second and first + second == whole
    assert min(e["time"] for e in json.loads((tmp_path / "h.json").read_text())["history"]) > 2.1


class BatchRecordingSession(StreamingSession):
    sizes: list[int] = []

    def push_frames(self, frames, times):
        BatchRecordingSession.sizes.append(len(times))
        return super().push_frames(frames, times)


@pytest.mark.parametrize("mode", ["default", "batch-frames-3", "realtime"])
def test_a_file_goes_batch_frames_at_a_time_unless_paced(sharp_checkpoint, flat_video, capsys, monkeypatch, mode):
    monkeypatch.setattr(cli_streaming, "StreamingSession", BatchRecordingSession)
    monkeypatch.setattr(BatchRecordingSession, "sizes", [])
    extra = {"default": [], "batch-frames-3": ["--batch-frames", "3"], "realtime": ["--realtime"]}[mode]
    assert run(sharp_checkpoint, flat_video, *extra) == 0
    frames = NUM_SCENES * 4
    size = {"default": stream_source.FILE_BATCH_FRAMES, "batch-frames-3": 3, "realtime": 1}[mode]
    assert BatchRecordingSession.sizes == [size] * (frames // size) + [frames % size] * bool(frames % size)
    captions = [text for _, _, text in said(capsys.readouterr().out)]
    assert captions == [text for _, text in reference_captions(sharp_checkpoint, flat_video)]


class InterruptedSession(StreamingSession):
    """Ctrl-C arrives while the frame at 1.5 s is being processed (with the frames read along with it)."""

    batch_end: float | None = None  # the last frame processed with it: the stream stops after that one

    def push_frames(self, frames, times):
        if 1.5 in times:
            signal.raise_signal(signal.SIGINT)
            InterruptedSession.batch_end = times[-1]
        return super().push_frames(frames, times)


def test_ctrl_c_stops_after_the_frame_and_saves_everything(sharp_checkpoint, flat_video, capsys, monkeypatch, tmp_path):
    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(cli_streaming, "StreamingSession", InterruptedSession)
    out, state = tmp_path / "h.json", tmp_path / "s.pt"
    assert run(sharp_checkpoint, flat_video, "--output", str(out), "--save-state", str(state), "--batch-frames",
               "4") == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "error:" not in captured.err
    record = json.loads(out.read_text())
    end = InterruptedSession.batch_end
    assert 1.5 <= end < 1.5 + 4 / FPS  # the file is read 4 frames at a time
    assert record["ended"] == "interrupted" and all(e["time"] <= end for e in record["history"])
    monkeypatch.setattr(cli_streaming, "StreamingSession", StreamingSession)
    assert run(sharp_checkpoint, flat_video, "--resume-state", str(state)) == 0
    assert all(t > end for t, _, _ in said(capsys.readouterr().out))
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is put back


def test_missing_video_is_one_error_line_and_writes_nothing(sharp_checkpoint, tmp_path, capsys):
    missing, out = tmp_path / "nope.mp4", tmp_path / "h.json"
    code = run(sharp_checkpoint, missing, "--output", str(out), "--save-state", str(tmp_path / "s.pt"))
    assert_user_error(capsys, code, str(missing))
    assert os.listdir(tmp_path) == []


def test_corrupt_video_is_one_error_line_and_writes_nothing(sharp_checkpoint, tmp_path, capsys):
    fake, out = tmp_path / "notes.mp4", tmp_path / "h.json"
    fake.write_text("this is not a video\n")
    assert_user_error(capsys, run(sharp_checkpoint, fake, "--output", str(out)), str(fake))
    assert not out.exists()


def failing_source(error: Exception, at: int):
    """An `open_video` whose readers raise `error` when asked for frame number `at` (counted from 0)."""
    def open_failing(source):
        reader = open_video(source)
        frames = reader.iter_frames

        def iter_frames(fps):
            for i, item in enumerate(frames(fps)):
                if i == at:
                    raise error
                yield item

        reader.iter_frames = iter_frames
        return reader

    return open_failing


@pytest.mark.parametrize("error", [VideoError("flat.mp4: decoding failed (corrupt packet)"),
                                   ConnectionResetError(104, "decoding failed: connection reset by peer")],
                         ids=["decode_error", "source_os_error"])
def test_video_failing_midway_keeps_a_whole_history(sharp_checkpoint, flat_video, tmp_path, capsys, monkeypatch,
                                                    error):
    monkeypatch.setattr(cli_streaming, "open_video", failing_source(error, at=10))
    out, state = tmp_path / "h.json", tmp_path / "s.pt"
    out.write_text("previous run\n")
    code = run(sharp_checkpoint, flat_video, "--output", str(out), "--save-state", str(state), "--batch-frames", "4")
    assert_user_error(capsys, code, "decoding failed")
    record = json.loads(out.read_text())  # replaced whole, never half-written
    assert record["ended"] == "error" and "decoding failed" in record["error"]
    assert record["history"] and all(e["time"] < 2.5 for e in record["history"])  # the captions before the failure
    assert sorted(os.listdir(tmp_path)) == ["h.json", "s.pt"]
    # frames 8 and 9 were read in a batch of 4 that the failure cut short: they were still streamed
    assert torch.load(state, weights_only=True)["last_time"] == 9 / FPS


def test_video_failing_before_its_first_frame_writes_nothing(sharp_checkpoint, flat_video, tmp_path, capsys,
                                                             monkeypatch):
    """Nothing was streamed: as with a file that cannot be opened, nothing is written and an older file stays."""
    monkeypatch.setattr(cli_streaming, "open_video", failing_source(VideoError("flat.mp4: no decodable frames"), 0))
    out = tmp_path / "h.json"
    out.write_text("previous run\n")
    code = run(sharp_checkpoint, flat_video, "--output", str(out), "--save-state", str(tmp_path / "s.pt"))
    assert_user_error(capsys, code, "no decodable frames")
    assert out.read_text() == "previous run\n" and os.listdir(tmp_path) == ["h.json"]


def test_unexpected_error_midway_still_keeps_the_history(sharp_checkpoint, flat_video, tmp_path, monkeypatch):
    """A bug (not a user error) shows its traceback, and the history up to it is written first."""
    monkeypatch.setattr(cli_streaming, "open_video", failing_source(RuntimeError("a bug in the reader"), at=10))
    out = tmp_path / "h.json"
    with pytest.raises(RuntimeError, match="a bug in the reader"):
        run(sharp_checkpoint, flat_video, "--output", str(out), "--batch-frames", "4")
    record = json.loads(out.read_text())
    assert record["ended"] == "error" and record["error"] == "RuntimeError: a bug in the reader"
    assert record["history"] and os.listdir(tmp_path) == ["h.json"]


def test_bad_resume_state_and_missing_model(sharp_checkpoint, flat_video, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a state")
    assert_user_error(capsys, run(sharp_checkpoint, flat_video, "--resume-state", str(bad)), "not a saved stream state")
    missing = tmp_path / "no-model"
    assert_user_error(capsys, run(missing, flat_video), str(missing))


def test_flags(capsys):
    args = cli_streaming.parse_args(["--model_path", "m", "--video_file", "v.mp4", "--min-caption-gap", "2"])
    assert (args.model_path, args.video_file, args.min_caption_gap, args.video_fps) == ("m", "v.mp4", 2.0, None)
    assert cli_streaming.parse_args([]).video_file.endswith("playground/demo/shapes.mp4")
    assert cli_streaming.parse_args(["--fps", "2"]).video_fps == 2.0  # the older name of --video-fps
    for bad in (["--video-fps", "0"], ["--fps", "0"], ["--min-caption-gap", "-1"], ["--output", "."],
                ["--batch-frames", "0"], ["--caption-batch", "0"], ["--num-frames", "4"]):
        with pytest.raises(SystemExit) as exit_info:
            cli_streaming.parse_args(bad)
        assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_question_reader_reads_a_pipe_until_eof():
    read_end, write_end = os.pipe()
    os.write(write_end, "first?\n\n  second?  \nthird".encode())
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        reader = QuestionReader(stream)
        reader.wait_for_eof(5.0)
        assert reader.eof.is_set() and reader.drain() == ["first?", "second?", "third"]
        reader.close()


def test_realtime_pacing_follows_the_video_clock_and_stops_on_ctrl_c():
    stop = threading.Event()
    pacer = cli_streaming.Pacer(True, stop)
    start = time.monotonic()
    pacer.wait(10.0)  # the first frame sets the origin
    pacer.wait(10.3)
    assert 0.29 <= time.monotonic() - start < 2.0
    stop.set()
    pacer.wait(60.0)  # a stop request wakes it at once
    assert time.monotonic() - start < 2.0


def test_state_of_another_model_and_missing_demo_model_are_clear_errors(sharp_checkpoint, flat_video, tmp_path,
                                                                          capsys, monkeypatch):
    tokenizer, model, processor, _ = load_pretrained_model(sharp_checkpoint, device="cpu")
    session = StreamingSession(model, tokenizer, processor)
    session.state.bridge.memory = session.state.bridge.memory[:, :1]  # as if saved by a model with fewer memory tokens
    session.save_state(tmp_path / "other.pt")
    code = run(sharp_checkpoint, flat_video, "--resume-state", str(tmp_path / "other.pt"))
    assert_user_error(capsys, code, "saved by a different model")
    monkeypatch.setattr(chat_session, "DEMO_CHECKPOINT", tmp_path / "videollamb-tiny-shapes")
    code = cli_streaming.main(["--video-file", str(flat_video), *FAST])
    assert_user_error(capsys, code, "make demo-model", "scripts/train_tiny_demo.sh")


def test_caption_batch_reaches_the_session_policy(sharp_checkpoint):
    args = cli_streaming.parse_args(["--model-path", str(sharp_checkpoint), "--caption-batch", "3", *FAST])
    session, fps = cli_streaming.open_session(args)
    assert session.policy.caption_batch == 3 and fps == FPS

