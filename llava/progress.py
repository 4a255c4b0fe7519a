"""Progress bars of the long-running commands (evaluation, NIAVH, data checks, dataset generation, benchmarks, long
video decodes).

One rule for all of them: a bar is drawn on stderr when stderr is a terminal, and nothing is written when it is not
(a log file, a pipe, CI), so a command's captured stderr holds its own lines alone; `quiet` (a command's --quiet)
hides it on a terminal too.

    for video in progress_bar(videos, desc="videos", unit="video"):
        ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def shows_progress(quiet: bool = False) -> bool:
    """Whether a bar would be drawn now: stderr is a terminal and the command was not asked to be quiet."""
    return not quiet and sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, *, quiet: bool = False, **kwargs) -> tqdm:
    """A tqdm bar on stderr (tqdm's own keyword arguments: desc, unit, total, initial, leave, ...), disabled unless
    `shows_progress(quiet)`. Iterate it, or call .update() on it in a `with` block."""
    return tqdm(iterable, file=sys.stderr, disable=not shows_progress(quiet), **kwargs)
