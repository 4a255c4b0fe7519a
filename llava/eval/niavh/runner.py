"""The NIAVH loop: for every modality x length x depth, build (or reuse) the test video, ask, score, save.

Any model plugs in through `generate(instruction, video_path) -> str`, as in the original harness; the model
samples the video's frames itself. `SessionGenerator` wraps a `ChatSession` that way (it samples as its `sampling`
says: the checkpoint's config, or what the command line changed).

    records = run_grid(SessionGenerator(session).generate, needles, SyntheticHaystack(exclude=obj),
                       MultipleChoiceScorer(), RunSettings(lengths=(8, 16), depths=(0, 50, 100)), "runs/niavh")

Test videos are cached in CACHE/ under a key of everything they are made of (haystack source, length, depth,
needle identity, fps, size, needle duration), so changing the needle never reuses a stale video. Each cell's
result is written atomically to OUT/cells/ under a key that adds the model and the scoring; a cell whose file
exists is not asked again, so an interrupted run resumes where it stopped.

With `control`, every question is also asked of the same haystack without the needle (one control video per
length): a model that names the needle there too is guessing, not finding. The cell then records
`control_score` and `net_score` (its score less the control's, floored at the scale's bottom).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from llava.atomic import write_json_atomic
from llava.eval.niavh.grid import Placement, place
from llava.eval.niavh.haystack import Haystack
from llava.eval.niavh.needles import Needle, Probe, insert_needle
from llava.eval.niavh.scoring import Scorer
from llava.progress import progress_bar
from llava.video.write import write_mp4

Generate = Callable[[str, Path], str]
Locate = Callable[[str, Path, str], tuple[float, float, float] | None]  # (instruction, video, answer) -> best evidence


@dataclass(frozen=True)
class RunSettings:
    lengths: tuple[int | float, ...]
    depths: tuple[int | float, ...]
    fps: float = 1.0  # frame rate of the test videos
    size: int = 224  # test video frames are size x size
    needle_duration: float = 1.0  # seconds
    control: bool = False  # also ask each question of the haystack without the needle
    model: Mapping[str, Any] = field(default_factory=lambda: {"name": "model"})  # name + what changes answers


def _digest(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _cell_stem(modality: str, placement: Placement) -> str:
    return f"{modality}_L{placement.length:g}_D{placement.depth:g}"


def video_key(haystack: Haystack, needle: Needle, placement: Placement, size: int, needle_duration: float) -> str:
    return _digest(
        {
            "haystack": haystack.identity,
            "length": placement.length,
            "depth": placement.depth,
            "needle": needle.identity,
            "fps": placement.fps,
            "size": size,
            "needle_duration": needle_duration,
        }
    )[:16]


def build_test_video(
    cache_dir: Path, haystack: Haystack, needle: Needle, placement: Placement, size: int, needle_duration: float = 1.0
) -> Path:
    """The cell's test video (built once, then reused from the cache)."""
    key = video_key(haystack, needle, placement, size, needle_duration)
    path = Path(cache_dir) / f"{_cell_stem(needle.modality, placement)}_{key}.mp4"
    if not path.is_file():
        frames = haystack.frames(placement.num_frames, placement.fps, size)
        frames = insert_needle(frames, needle, placement.start_frame, placement.needle_frames, placement.fps)
        write_mp4(frames, path, placement.fps)
    return path


def build_control_video(cache_dir: Path, haystack: Haystack, placement: Placement, size: int) -> Path:
    """The haystack alone at the cell's length (built once per length, then reused from the cache)."""
    key = _digest(
        {"haystack": haystack.identity, "length": placement.length, "fps": placement.fps, "size": size, "control": True}
    )[:16]
    path = Path(cache_dir) / f"control_L{placement.length:g}_{key}.mp4"
    if not path.is_file():
        write_mp4(haystack.frames(placement.num_frames, placement.fps, size), path, placement.fps)
    return path


def cell_path(
    output_dir: Path, haystack: Haystack, needle: Needle, placement: Placement, scorer: Scorer, settings: RunSettings
) -> Path:
    """Where the cell's result goes: its key adds the model, the scoring and the question to the video's."""
    key = _digest(
        {
            "video": video_key(haystack, needle, placement, settings.size, settings.needle_duration),
            "model": dict(settings.model),
            "scoring": scorer.name,
            "probe": asdict(needle.probe()),
            "control": settings.control,
        }
    )[:12]
    return Path(output_dir) / "cells" / f"{_cell_stem(needle.modality, placement)}_{key}.json"


def read_cell(path: Path) -> dict[str, Any] | None:
    """A finished cell's record, or None when it was never written (or cannot be read: it is redone)."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "score" in record else None


def control_fields(
    generate: Generate, control_video: Path, probe: Probe, scorer: Scorer, scored: Mapping[str, Any]
) -> dict[str, Any]:
    """The same question about the haystack without the needle, and the score net of it."""
    control = scorer.score(probe, lambda instruction: generate(instruction, control_video))
    net = max(scored["score"] - control["score"], scorer.score_range[0])
    return {
        "control_score": control["score"],
        "control_response": control["model_response"],
        "net_score": net,
        "control_video": str(control_video),
    }


def localisation_fields(locate: Locate, video: Path, asked: tuple[str, str], placement: Placement) -> dict[str, Any]:
    """Where the answer (the first one the scorer asked for) rests, and whether that span holds the needle: the
    best evidence span overlaps at least half the needle's time."""
    best = locate(asked[0], video, asked[1])
    if best is None:
        return {"evidence": None, "needle_localised": None}
    start, end, score = best
    overlap = max(0.0, min(end, placement.end_seconds) - max(start, placement.start_seconds))
    needle = placement.end_seconds - placement.start_seconds
    return {
        "evidence": {"start": round(start, 3), "end": round(end, 3), "score": round(score, 4)},
        "needle_localised": float(overlap >= needle / 2),
    }


def run_cell(
    generate: Generate,
    video: Path,
    needle: Needle,
    placement: Placement,
    scorer: Scorer,
    settings: RunSettings,
    haystack: Haystack,
    control_video: Path | None = None,
    locate: Locate | None = None,
) -> dict[str, Any]:
    """Ask and score one cell; the record follows the original's fields, plus what makes it reproducible; with
    `locate`, where the answer's best evidence lies and whether it holds the needle (`localisation_fields`)."""
    probe = needle.probe()
    began = time.perf_counter()
    asked: list[tuple[str, str]] = []

    def ask(instruction: str) -> str:
        response = generate(instruction, video)
        asked.append((instruction, response))
        return response

    scored = scorer.score(probe, ask)
    if locate is not None and asked:
        scored |= localisation_fields(locate, video, asked[0], placement)
    if control_video is not None:
        scored |= control_fields(generate, control_video, probe, scorer, scored)
    return {
        "model": settings.model.get("name", "model"),
        "model_settings": dict(settings.model),
        "modality": needle.modality,
        "context_length": placement.length,
        "depth_percent": placement.depth,
        "needle": needle.identity,
        "question": probe.question,
        "reference": probe.answer,
        "options": list(probe.options),
        "scoring": scorer.name,
        "score_range": list(scorer.score_range),
        **scored,
        "needle_start_seconds": placement.start_seconds,
        "needle_end_seconds": placement.end_seconds,
        "num_frames": placement.num_frames,
        "trivial": placement.trivial,
        "fps": placement.fps,
        "size": settings.size,
        "haystack": haystack.identity,
        "video": str(video),
        "test_duration_seconds": round(time.perf_counter() - began, 3),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def run_grid(
    generate: Generate,
    needles: Mapping[str, Needle],
    haystack: Haystack,
    scorer: Scorer,
    settings: RunSettings,
    output_dir: str | Path,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    locate: Locate | None = None,
) -> list[dict[str, Any]]:
    """Every cell of needles x lengths x depths, in that order; finished cells are read back, not redone. With
    `locate`, each new cell records its answer's evidence and whether it holds the needle (`run_cell`)."""
    output_dir = Path(output_dir)
    cache_dir = Path(cache_dir) if cache_dir is not None else output_dir / "videos"
    cells = [
        (needle, place(length, depth, settings.fps, settings.needle_duration))
        for needle in needles.values()
        for length in settings.lengths
        for depth in settings.depths
    ]
    records, reused = [], 0
    bar = progress_bar(cells, desc="niavh", unit="cell", quiet=not progress)
    for needle, placement in bar:
        bar.set_postfix_str(_cell_stem(needle.modality, placement), refresh=False)
        path = cell_path(output_dir, haystack, needle, placement, scorer, settings)
        record = read_cell(path)
        if record is None:
            video = build_test_video(cache_dir, haystack, needle, placement, settings.size, settings.needle_duration)
            control = build_control_video(cache_dir, haystack, placement, settings.size) if settings.control else None
            record = run_cell(generate, video, needle, placement, scorer, settings, haystack, control, locate)
            write_json_atomic(record, path)
        else:
            reused += 1
        records.append(record)
    if progress and reused:
        tqdm.write(f"niavh: {reused} of {len(cells)} cells were already done in {output_dir / 'cells'}")
    return records


class SessionGenerator:
    """`generate(instruction, video_path)` over a ChatSession: the video is sampled as the session's `sampling` says
    and encoded once per path, then every instruction is a fresh first turn (greedy unless `settings` sample). The
    last KEEP_ENCODED videos stay encoded, so a length's control video, asked between its cells, is encoded once."""

    KEEP_ENCODED = 2

    def __init__(self, session: Any, settings: Any = None) -> None:
        from llava.serve.chat_session import SHORT_MAX_NEW_TOKENS, GenerationSettings

        self.session = session
        self.settings = settings or GenerationSettings(max_new_tokens=SHORT_MAX_NEW_TOKENS)
        self._encoded: OrderedDict[Path, Any] = OrderedDict()  # path -> the session's (media, segments), newest last

    def _load(self, path: Path) -> None:
        if path in self._encoded:
            self._encoded.move_to_end(path)
            self.session.media, self.session.segments = self._encoded[path]
        else:
            self.session.load_video(path)  # frames reach model size while they are decoded
            self._encoded[path] = (self.session.media, self.session.segments)
            if len(self._encoded) > self.KEEP_ENCODED:
                self._encoded.popitem(last=False)

    def generate(self, instruction: str, video_path: str | Path) -> str:
        self._load(Path(video_path))
        self.session.reset()
        return self.session.ask(instruction, self.settings)

    def locate(self, instruction: str, video_path: str | Path, answer: str) -> tuple[float, float, float] | None:
        """The best evidence (start, end, score) of `answer` to `instruction` about the video (`ChatSession.evidence`),
        None when the video has no segments."""
        self._load(Path(video_path))
        evidence = self.session.evidence(instruction, answer)
        return (evidence[0].start, evidence[0].end, evidence[0].score) if evidence else None
