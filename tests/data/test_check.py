"""python -m llava.data.check: exit codes and a report that names every bad row."""

from __future__ import annotations

import json

import pytest

from llava.data.check import main
from tests.data.test_dataset import bad_media_rows, clean_rows, malformed_rows, world  # noqa: F401  (fixture)


def test_clean_data_exits_zero(world, capsys):  # noqa: F811
    code = main(["--data_path", str(world / "clean.json"), "--x_folder", str(world), "--num-frames", "2",
                 "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "all rows are fine" in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert lines["video"] == ["20", "20", "0"] and lines["image"] == ["2", "2", "0"]
    assert lines["text"] == ["2", "2", "0"] and lines["total"] == ["24", "24", "0"]


def test_bad_rows_are_named_and_exit_one(world, capsys):  # noqa: F811
    rows = clean_rows(world) + malformed_rows() + bad_media_rows()
    rows.append({"id": "gone_image", "image": "images/none.png", "conversations": rows[-1]["conversations"]})
    path = world / "check_bad.json"
    path.write_text(json.dumps(rows))
    code = main(["--data-path", str(path), "--x-folder", str(world)])
    captured = capsys.readouterr()
    assert code == 1
    for row in malformed_rows()[:-1] + bad_media_rows():
        assert row["id"] in captured.out
    assert f"#{len(clean_rows(world)) + len(malformed_rows()) - 1}" in captured.out  # the row without an id
    assert "missing.mp4" in captured.out and "corrupt.mp4" in captured.out and "none.png" in captured.out
    assert "gone_image" in captured.out
    total = [line.split() for line in captured.out.splitlines() if line.startswith("total")][0]
    bad = len(malformed_rows()) + len(bad_media_rows()) + 1
    assert total[1:] == [str(len(rows)), str(len(rows) - bad), str(bad)]
    assert "decoding media" not in captured.err  # no progress bar: stderr is not a terminal (tests/test_progress.py)


@pytest.mark.parametrize("content", [None, "[{not json", '{"id": 1}', "[]"])
def test_missing_or_invalid_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    assert main(["--data_path", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "data.json" in captured.err and "Traceback" not in captured.err


def test_videos_are_decoded_with_trainings_sampling_flags(world, monkeypatch, capsys):  # noqa: F811
    """--video_fps / --max_frames decode what training with the same flags reads (one sampling function)."""
    from llava.data import check
    from llava.video.sampling import FrameSampling

    used = []
    real = check.sample_video
    monkeypatch.setattr(check, "sample_video", lambda path, sampling, **kw: used.append(sampling) or real(
        path, sampling, **kw))
    args = ["--data_path", str(world / "clean.json"), "--x_folder", str(world), "--quiet"]
    assert main([*args, "--video_fps", "1", "--num_frames", "5"]) == 0
    assert set(used) == {FrameSampling(num_frames=5, fps=1.0, max_frames=5)}  # training's cap: --num_frames
    used.clear()
    assert main([*args, "--video-fps", "2", "--max-frames", "3"]) == 0
    assert set(used) == {FrameSampling(num_frames=4, fps=2.0, max_frames=3)}
    for bad in (["--num_frames", "0"], ["--video_fps", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *bad])
        assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
