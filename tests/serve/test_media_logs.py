"""FFmpeg's own log lines (written from C to file descriptor 2, hence capfd) are silent by default in every front end,
so a broken video ends in the one `error:` line alone, and they are shown with --verbose."""

from pathlib import Path

import pytest

from llava.errors import VideoError
from llava.logs import set_media_logging
from llava.serve import api, cli, cli_streaming, gradio_demo
from llava.video.decode import load_video

FAST = ["--device", "cpu", "--max-new-tokens", "2"]


@pytest.fixture(autouse=True)
def silent_after():
    """FFmpeg's logging is one setting per process: put the default back for the tests that follow."""
    yield
    set_media_logging(False)


@pytest.fixture(scope="module")
def truncated(tmp_path_factory, tiny_video) -> Path:
    """The first half of an mp4 whose index (moov) comes last: FFmpeg logs "moov atom not found"."""
    data = tiny_video.read_bytes()
    path = tmp_path_factory.mktemp("logs") / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture(scope="module")
def flipped(tmp_path_factory, tiny_video) -> Path:
    """The video with the bytes of the middle of its coded frames inverted: FFmpeg logs while decoding them."""
    data = bytearray(tiny_video.read_bytes())
    start, end = data.index(b"mdat") + 4, len(data)
    if b"moov" in data[start:]:
        end = data.index(b"moov", start) - 4
    middle, span = (start + end) // 2, (end - start) // 6
    data[middle - span : middle + span] = bytes(b ^ 0xFF for b in data[middle - span : middle + span])
    path = tmp_path_factory.mktemp("logs") / "flipped.mp4"
    path.write_bytes(bytes(data))
    return path


def stderr_lines(capfd) -> list[str]:
    return [line for line in capfd.readouterr().err.splitlines() if line.strip()]


def ffmpeg_speaks(capfd, broken: Path) -> bool:
    """Whether reading `broken` now puts anything on file descriptor 2."""
    capfd.readouterr()
    with pytest.raises(VideoError):
        load_video(broken, num_frames=2)
    return bool(stderr_lines(capfd))


def cli_run(checkpoint: Path, video: Path, *extra: str) -> int:
    return cli.main(["--model-path", str(checkpoint), "--video-file", str(video), "--query", "hi", *FAST, *extra])


def test_set_media_logging_turns_ffmpeg_lines_on_and_off(truncated, capfd):
    set_media_logging(True)
    assert ffmpeg_speaks(capfd, truncated)
    set_media_logging(False)
    assert not ffmpeg_speaks(capfd, truncated)


def test_chat_cli_broken_video_prints_the_error_line_alone(tiny_checkpoint, truncated, capfd):
    set_media_logging(True)  # as an earlier caller in this process may have left it: main() decides
    capfd.readouterr()
    code = cli_run(tiny_checkpoint, truncated)
    assert code == 1
    (line,) = stderr_lines(capfd)
    assert line.startswith("error: ") and str(truncated) in line


def test_chat_cli_verbose_shows_ffmpeg_lines(tiny_checkpoint, truncated, capfd):
    capfd.readouterr()
    assert cli_run(tiny_checkpoint, truncated, "--verbose") == 1
    lines = stderr_lines(capfd)
    assert len(lines) > 1 and lines[-1].startswith("error: ")
    assert any("moov atom not found" in line for line in lines[:-1])  # FFmpeg's own words


def test_chat_cli_damaged_frames_are_silent_unless_verbose(tiny_checkpoint, flipped, capfd):
    """The container opens; FFmpeg complains while decoding the damaged frames (answered about or refused)."""
    capfd.readouterr()
    code = cli_run(tiny_checkpoint, flipped)
    lines = stderr_lines(capfd)
    assert lines == [] if code == 0 else (code == 1 and len(lines) == 1 and lines[0].startswith("error: "))
    cli_run(tiny_checkpoint, flipped, "--verbose")
    assert [line for line in stderr_lines(capfd) if not line.startswith("error: ")]


def test_streaming_cli_broken_video_prints_the_error_line_alone(tiny_checkpoint, truncated, capfd, tmp_path):
    args = ["--model-path", str(tiny_checkpoint), "--video-file", str(truncated), "--output", str(tmp_path / "h.json"),
            *FAST]
    set_media_logging(True)
    capfd.readouterr()
    assert cli_streaming.main(args) == 1
    (line,) = stderr_lines(capfd)
    assert line.startswith("error: ") and str(truncated) in line
    assert cli_streaming.main([*args, "--verbose"]) == 1
    lines = stderr_lines(capfd)
    assert len(lines) > 1 and lines[-1].startswith("error: ")


def test_api_and_gradio_mains_set_ffmpeg_logging(tiny_checkpoint, truncated, capfd, monkeypatch):
    """The servers' mains (serving stubbed out) leave FFmpeg silent, or speaking with --verbose."""
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    monkeypatch.setattr(gradio_demo, "serve", lambda demo, settings, **kwargs: None)
    for main in (api.main, gradio_demo.main):
        base = ["--model-path", str(tiny_checkpoint), "--device", "cpu"]
        assert main([*base, "--verbose"]) == 0
        assert ffmpeg_speaks(capfd, truncated)
        assert main(base) == 0
        assert not ffmpeg_speaks(capfd, truncated)
