"""Check a training data file before a run: malformed rows, missing or undecodable media, counts per modality.

    python -m llava.data.shapes_dataset --out /tmp/shapes --num-videos 3 --quiet
    python -m llava.data.check --data_path /tmp/shapes/train.json --x_folder /tmp/shapes --num-frames 4

Prints every bad row (id, path, reason) and a table of rows per modality; exits 0 when every row is fine,
1 when any is bad or the file itself is missing or invalid (one line, no traceback). Videos are decoded as training
samples them, with training's flags: --num_frames uniformly (4 by default: a quick check), or --video_fps up to
--max_frames (default --num_frames); pass a run's own flags to decode exactly the frames it will read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from llava.data.dataset import load_rows, media_path, row_label, row_modality, split_rows, training_sampling
from llava.errors import ConfigError, DataError, VideoError, report_error
from llava.progress import progress_bar
from llava.video.decode import load_image
from llava.video.sampling import FrameSampling, sample_video

MODALITIES = ("video", "image", "text")
CHECK_FRAMES = 4  # frames decoded per video unless told otherwise: a quick check


@dataclass
class Report:
    """What a check found: rows per modality, and the bad rows as (id, path, reason)."""

    total: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODALITIES, 0))
    unreadable: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODALITIES, 0))
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    malformed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _keep_nothing(frames: np.ndarray) -> torch.Tensor:
    """A transform for checking: the frames were decoded; none is kept (a 4K file costs no memory here)."""
    return torch.zeros(len(frames))


def _media_problem(modality: str, path: str, sampling: FrameSampling) -> str | None:
    """Why the media file at `path` cannot be used, or None when it decodes."""
    try:
        if modality == "video":
            sample_video(path, sampling, transform=_keep_nothing)
        else:
            load_image(path)
    except VideoError as error:
        return str(error)
    return None


def check_rows(
    rows: list, x_folder: str, sampling: FrameSampling | int = CHECK_FRAMES, progress: bool = True
) -> Report:
    """Validate every row (the dataset's own rules) and decode every media file (videos as `sampling` says, or
    that many frames uniformly); a `Report` of what failed."""
    if isinstance(sampling, int):
        sampling = FrameSampling(num_frames=sampling)
    report = Report(total=len(rows))
    kept, malformed = split_rows(rows)
    report.malformed = len(malformed)
    report.problems.extend((label, "-", f"malformed: {reason}") for label, reason in malformed)
    for index in kept:
        report.rows[row_modality(rows[index])] += 1
    media = [i for i in kept if row_modality(rows[i]) != "text"]
    seen: dict[tuple[str, str], str | None] = {}  # a file shared by several rows is decoded once
    for index in progress_bar(media, desc="decoding media", unit="row", quiet=not progress):
        row, modality = rows[index], row_modality(rows[index])
        path = media_path(row, x_folder)
        assert path is not None  # a media row has a path
        key = (modality, path)
        if key not in seen:
            seen[key] = _media_problem(modality, path, sampling)
        problem = seen[key]
        if problem is not None:
            report.unreadable[modality] += 1
            report.problems.append((row_label(row, index), path, problem))
    return report


def format_report(report: Report) -> str:
    """The bad rows, then a table: modality, rows, readable, unreadable; then malformed and total."""
    lines = [f"BAD  {label}  {path}  {reason}" for label, path, reason in report.problems]
    if lines:
        lines.append("")
    lines.append(f"{'modality':<10}{'rows':>8}{'ok':>8}{'bad':>8}")
    for modality in MODALITIES:
        rows, bad = report.rows[modality], report.unreadable[modality]
        lines.append(f"{modality:<10}{rows:>8}{rows - bad:>8}{bad:>8}")
    lines.append(f"{'malformed':<10}{report.malformed:>8}{0:>8}{report.malformed:>8}")
    bad_total = len(report.problems)
    lines.append(f"{'total':<10}{report.total:>8}{report.total - bad_total:>8}{bad_total:>8}")
    lines.append("all rows are fine" if report.ok else f"{bad_total} of {report.total} rows are bad")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llava.data.check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data_path", "--data-path", dest="data_path", required=True, help="conversation JSON (a list) or JSON lines"
    )
    parser.add_argument(
        "--x_folder", "--x-folder", dest="x_folder", default="", help="folder that relative media paths are joined to"
    )
    parser.add_argument(
        "--num_frames",
        "--num-frames",
        dest="num_frames",
        type=int,
        default=CHECK_FRAMES,
        help=f"frames decoded per video, uniformly (default {CHECK_FRAMES})",
    )
    parser.add_argument(
        "--video_fps",
        "--video-fps",
        dest="video_fps",
        type=float,
        default=None,
        help="decode frames at this rate instead, as training with --video_fps does",
    )
    parser.add_argument(
        "--max_frames",
        "--max-frames",
        dest="max_frames",
        type=int,
        default=None,
        help="with --video_fps, the most frames decoded (default: --num_frames, as training)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Check the data file; print the report; 0 when every row is fine, else 1."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sampling = training_sampling(args.num_frames, args.video_fps, args.max_frames)
    except ConfigError as error:
        parser.error(str(error))
    try:
        rows = load_rows(args.data_path)
    except DataError as error:
        return report_error(error)
    if not rows:
        print(f"error: {args.data_path}: the file holds no rows", file=sys.stderr)
        return 1
    report = check_rows(rows, args.x_folder, sampling, progress=not args.quiet)
    print(format_report(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
