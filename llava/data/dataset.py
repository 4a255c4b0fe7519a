"""LLaVA conversation data (video / image / text rows): read, validate, tokenise and mask, collate.

    >>> config = DataConfig("data/shapes/train.json", x_folder="data/shapes", num_frames=16)   # or video_fps=1.0
    >>> dataset = SupervisedDataset(config, tokenizer)          # malformed rows logged and skipped here
    >>> sampler = ModalityGroupedSampler(dataset.modalities, batch_size=8, world_size=4)
    >>> loader = DataLoader(dataset, batch_size=8, sampler=sampler, collate_fn=DataCollator(tokenizer))

A row (a JSON list of them, or JSON lines):
    {"id": "...", "video": "rel/path.mp4" | "image": "rel/path.jpg" | neither (text only),
     "conversations": [{"from": "human", "value": "<video>\\nQ"}, {"from": "gpt", "value": "A"}, ...]}

Media paths are joined to `x_folder` (absolute paths are kept). The media tag is moved to the start of the first
human turn (added there when missing). Only the assistant replies are supervised. A media file that cannot be
read makes `__getitem__` return None (logged by id; the collator drops it) and, past `max_bad_fraction` of the
rows, a `DataError` that stops training: a failing row is never swapped for another one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import Dataset

from llava.constants import DEFAULT_IMAGE_TOKEN, DEFAULT_VIDEO_TOKEN, IGNORE_INDEX
from llava.conversation import DEFAULT_TEMPLATE, get_template
from llava.data.option_judgement import judgement_labels
from llava.data.sampler import ModalityGroupedSampler
from llava.data.video_cache import VideoCache
from llava.errors import ConfigError, DataError, VideoError
from llava.mm_utils import tokenize_prompt
from llava.video.decode import load_image
from llava.video.sampling import FrameSampling, sample_video
from llava.video.transforms import VisualProcessor

__all__ = [
    "DataConfig",
    "training_sampling",
    "SupervisedDataset",
    "DataCollator",
    "ModalityGroupedSampler",
    "load_rows",
    "validate_row",
    "split_rows",
    "row_modality",
    "row_label",
    "media_path",
    "row_messages",
    "tokenize_row",
    "allowed_bad",
]

logger = logging.getLogger(__name__)

ROLES = ("human", "gpt")  # "from" values, in the order of the template's roles (user, assistant)
MEDIA_TAGS = {"video": DEFAULT_VIDEO_TOKEN, "image": DEFAULT_IMAGE_TOKEN}
SHOW_IDS = 5  # ids named in an error message


def training_sampling(num_frames: int, video_fps: float | None = None, max_frames: int | None = None) -> FrameSampling:
    """Training's frame flags as a `FrameSampling`: num_frames uniformly, or video_fps frames per second up to
    max_frames, which defaults to num_frames (training's cap on a rate has always been --num_frames)."""
    return FrameSampling(num_frames, video_fps, num_frames if max_frames is None else max_frames)


@dataclass
class DataConfig:
    """Where the data is and how a row becomes a sample.

    max_bad_fraction: share of rows that may be malformed (at load) or unreadable (at training) before a
    `DataError` stops everything; see `allowed_bad`.
    video_cache_mb: each video's sampled, preprocessed frames are kept in memory up to this many megabytes per
    process (0: none), so rows sharing a video, and later epochs, do not decode it again (`VideoCache`).
    """

    data_path: str
    x_folder: str = ""
    num_frames: int = FrameSampling.num_frames  # frames sampled uniformly; with video_fps, the cap by default
    video_fps: float | None = FrameSampling.fps  # sample at this rate instead (the needle benchmark's 1 fps)
    max_frames: int | None = None  # with video_fps, the most frames sampled (None: num_frames)
    conv_template: str = DEFAULT_TEMPLATE
    max_length: int = 2048
    image_size: int = 224
    pad_images: bool = True
    max_bad_fraction: float = 0.01
    video_cache_mb: float = 0.0  # keep videos' pixels in memory up to this size, per process (`VideoCache`)
    judge_options: bool = False  # also train each lettered option and each row's `judgements` (option_judgement)

    def __post_init__(self) -> None:
        self.sampling.describe()  # a bad num_frames, video_fps or max_frames is a ConfigError now, not at a video
        if self.video_cache_mb < 0:
            raise ConfigError(f"video_cache_mb must be at least 0 (0: no cache), got {self.video_cache_mb}")

    @property
    def sampling(self) -> FrameSampling:
        """How each video is sampled (see `training_sampling`)."""
        return training_sampling(self.num_frames, self.video_fps, self.max_frames)


# --- reading and validating rows ---------------------------------------------------------------------------
def load_rows(path: str | os.PathLike[str]) -> list[Any]:
    """The rows of a JSON list file, or of a JSON-lines file (.jsonl, or several JSON values one per line).

    A missing, unreadable or invalid file, or one whose top level is not a list, raises `DataError`.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such data file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{file}: cannot read ({error})") from None
    if file.suffix == ".jsonl":
        return _json_lines(file, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # several top-level values: JSON lines in a .json file
            return _json_lines(file, text)
        raise DataError(f"{file}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    except RecursionError:
        raise DataError(f"{file}: invalid JSON: nested too deeply") from None
    if not isinstance(data, list):
        raise DataError(f"{file}: expected a JSON list of rows (or JSON lines), got a {type(data).__name__}")
    return data


def _json_lines(file: Path, text: str) -> list[Any]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{file}: invalid JSON on line {number}: {error.msg}") from None
            except RecursionError:
                raise DataError(f"{file}: invalid JSON on line {number}: nested too deeply") from None
    return rows


def row_label(row: Any, index: int) -> str:
    """How a row is named in messages: its id, or "#index" when it has none."""
    if isinstance(row, dict) and isinstance(row.get("id"), (str, int)) and not isinstance(row.get("id"), bool):
        return str(row["id"])
    return f"#{index}"


def row_modality(row: dict) -> str:
    """ "video", "image" or "text" for a row that passed `validate_row`."""
    if row.get("video") is not None:
        return "video"
    if row.get("image") is not None:
        return "image"
    return "text"


def _conversation_problem(turns: Any) -> str | None:
    """Why `turns` is not a valid conversation (human first, alternating, ending with gpt), or None."""
    if not isinstance(turns, list) or not turns:
        return "'conversations' must be a non-empty list"
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            return f"turn {number} is not a {{'from', 'value'}} object"
        if not isinstance(turn["value"], str):
            return f"turn {number} 'value' is {type(turn['value']).__name__}, not a string"
        if turn["from"] not in ROLES:
            return f"turn {number} is from {turn['from']!r} (valid: {', '.join(ROLES)})"
        if turn["from"] != ROLES[number % 2]:
            return f"turn {number} is from {turn['from']!r}: turns must alternate human, gpt, ..."
    if turns[-1]["from"] != ROLES[1]:
        return "the last turn is from human: nothing to learn after it"
    return None


def validate_row(row: Any) -> str | None:
    """Why a row is malformed, or None when it is fine. Cheap: opens no file."""
    if not isinstance(row, dict):
        return f"row is a {type(row).__name__}, not an object"
    if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
        return "missing or invalid 'id'"
    for key in MEDIA_TAGS:
        value = row.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            return f"'{key}' must be a non-empty path string"
    if row.get("video") is not None and row.get("image") is not None:
        return "row has both 'video' and 'image'"
    if "conversations" not in row:
        return "missing 'conversations'"
    problem = _conversation_problem(row["conversations"])
    if problem:
        return problem
    modality = row_modality(row)
    for key, tag in MEDIA_TAGS.items():
        if key != modality and any(tag in turn["value"] for turn in row["conversations"]):
            return f"a turn holds {tag} but the row has no '{key}'"
    return _judgements_problem(row.get("judgements", []))


def _judgements_problem(judgements: Any) -> str | None:
    """Why a row's 'judgements' (texts of its question to judge, `llava.data.option_judgement`) are malformed."""
    valid = isinstance(judgements, list) and all(
        isinstance(j, dict) and isinstance(j.get("text"), str) and j["text"] and isinstance(j.get("right"), bool)
        for j in judgements
    )
    return None if valid else "'judgements' must be a list of objects with a non-empty 'text' and a boolean 'right'"


def allowed_bad(total: int, fraction: float) -> int:
    """How many bad rows out of `total` are tolerated: 0 when fraction <= 0, else max(1, fraction * total)."""
    return 0 if fraction <= 0 else max(1, int(fraction * total + 1e-9))


def split_rows(rows: Sequence[Any]) -> tuple[list[int], list[tuple[str, str]]]:
    """(indices of valid rows, [(label, reason)] of malformed rows), in file order."""
    kept, bad = [], []
    for index, row in enumerate(rows):
        problem = validate_row(row)
        if problem is None:
            kept.append(index)
        else:
            bad.append((row_label(row, index), problem))
    return kept, bad


def media_path(row: dict, x_folder: str | os.PathLike[str] = "") -> str | None:
    """The row's video or image path joined to `x_folder` (absolute paths kept); None for a text row."""
    modality = row_modality(row)
    if modality == "text":
        return None
    path = Path(os.path.expanduser(row[modality]))
    return str(path if path.is_absolute() else Path(x_folder) / path)


# --- rows to tokens ---------------------------------------------------------------------------------------
def row_messages(row: dict) -> list[tuple[str, str]]:
    """[(from, text)] with the media tag removed everywhere and put at the start of the first human turn."""
    modality = row_modality(row)
    messages = [(turn["from"], turn["value"]) for turn in row["conversations"]]
    if modality == "text":
        return messages
    tag = MEDIA_TAGS[modality]
    messages = [(role, text.replace(tag, "").strip() if tag in text else text) for role, text in messages]
    role, text = messages[0]
    messages[0] = (role, f"{tag}\n{text}")
    return messages


def tokenize_row(
    row: dict, tokenizer, conv_template: str, max_length: int, judge_options: bool = False
) -> tuple[Tensor, Tensor]:
    """input_ids and labels (L,) of a valid row: only assistant replies supervised, cut to `max_length`.

    With `judge_options`, a lettered question answered by a letter also gets a target at the end of each option
    line, and each text the row names in `judgements` one at its end (`llava.data.option_judgement`). A cut never
    removes the media placeholder: a `max_length` too short to keep it raises `DataError`.
    """
    conversation = get_template(conv_template)
    messages = row_messages(row)
    for role, text in messages:
        conversation.append_message(conversation.roles[ROLES.index(role)], text)
    prompt, spans = conversation.render()
    judged = judgement_labels(prompt, messages, tokenizer, row.get("judgements", ())) if judge_options else None
    ids, labels = tokenize_prompt(prompt, tokenizer, spans, judged)
    assert labels is not None  # given spans, tokenize_prompt labels every token
    if len(ids) > max_length:
        placeholders = [i for i, token in enumerate(ids) if token < 0]
        if placeholders and placeholders[-1] >= max_length:
            raise DataError(
                f"row {row['id']}: max_length {max_length} would cut the media placeholder at token "
                f"{placeholders[-1]}; raise max_length"
            )
        ids, labels = ids[:max_length], labels[:max_length]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)


# --- the dataset --------------------------------------------------------------------------------------------
def _ids_preview(labels: Sequence[str]) -> str:
    more = f", ... ({len(labels) - SHOW_IDS} more)" if len(labels) > SHOW_IDS else ""
    return ", ".join(labels[:SHOW_IDS]) + more


class SupervisedDataset(Dataset):
    """Valid rows of a LLaVA conversation file as training samples (see the module docstring).

    Each DataLoader worker holds its own copy, so the unreadable-row count is per worker: with W workers the
    limit can be reached up to W times later than with one. So is the video cache (`config.video_cache_mb`): it
    outlives an epoch only in persistent workers.
    """

    def __init__(self, config: DataConfig, tokenizer, processor: VisualProcessor | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.processor = processor or VisualProcessor(size=config.image_size, pad_images=config.pad_images)
        rows = load_rows(config.data_path)
        if not rows:
            raise DataError(f"{config.data_path}: the file holds no rows")
        kept, malformed = split_rows(rows)
        for label, reason in malformed:
            logger.warning("%s: skipping malformed row %s: %s", config.data_path, label, reason)
        limit = allowed_bad(len(rows), config.max_bad_fraction)
        if not kept or len(malformed) > limit:
            raise DataError(
                f"{config.data_path}: {len(malformed)} of {len(rows)} rows are malformed (allowed {limit}), "
                f"first ids: {_ids_preview([label for label, _ in malformed])}; "
                f"run python -m llava.data.check to list them all"
            )
        self.rows: list[dict] = [rows[i] for i in kept]
        self.bad_media: dict[str, str] = {}  # id -> reason, for rows whose media failed to load
        self.video_cache = VideoCache(config.video_cache_mb)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def modalities(self) -> list[str]:
        """ "video" / "image" / "text" per row, without opening any file (for `ModalityGroupedSampler`)."""
        return [row_modality(row) for row in self.rows]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """{"id", "input_ids" (L,), "labels" (L,), "video" (T,3,S,S) | None, "image" (3,S,S) | None}.

        None when the row's media is missing or does not decode (logged); `DataError` once too many have.
        """
        row = self.rows[index]
        input_ids, labels = tokenize_row(
            row, self.tokenizer, self.config.conv_template, self.config.max_length, self.config.judge_options
        )
        sample = {"id": str(row["id"]), "input_ids": input_ids, "labels": labels, "video": None, "image": None}
        modality = row_modality(row)
        if modality == "text":
            return sample
        path = media_path(row, self.config.x_folder)
        assert path is not None  # not a text row
        try:
            if modality == "video":
                sample["video"] = self._video_pixels(Path(path))  # (T, 3, S, S)
            else:
                sample["image"] = self.processor.image(load_image(path))  # (3, S, S)
        except VideoError as error:
            self._record_bad(str(row["id"]), str(error))
            return None
        return sample

    def _video_pixels(self, path: Path) -> torch.Tensor:
        """The row's frames at model size, resized while they are decoded (or as kept from an earlier row)."""
        sampling = self.config.sampling
        return self.video_cache.get(
            (str(path), sampling),
            lambda: cast(torch.Tensor, sample_video(path, sampling, transform=self.processor.video)[0]),
        )

    def _record_bad(self, row_id: str, reason: str) -> None:
        """Log an unreadable row; raise `DataError` once more rows failed than the config allows."""
        logger.warning("row %s: cannot load its media, skipped: %s", row_id, reason)
        self.bad_media[row_id] = reason
        limit = allowed_bad(len(self), self.config.max_bad_fraction)
        if len(self.bad_media) > limit:
            raise DataError(
                f"{self.config.data_path}: {len(self.bad_media)} of {len(self)} rows unreadable (allowed {limit}), "
                f"first ids: {_ids_preview(list(self.bad_media))}; run python -m llava.data.check to list them all"
            )


# --- batching -------------------------------------------------------------------------------------------------
@dataclass
class DataCollator:
    """Right-pad samples into a batch, dropping the None ones (rows whose media could not be read).

    Returns {"input_ids" (B, L), "labels" (B, L) IGNORE_INDEX on padding, "attention_mask" (B, L) long,
    "videos": [(T, 3, S, S)], "images": [(3, S, S)]}, media in row order. When every sample is None the batch
    has zero rows (input_ids of shape (0, 0), empty media lists): the trainer must skip such a batch.
    """

    tokenizer: Any

    def __post_init__(self) -> None:
        if self.tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token; set tokenizer.pad_token before collating")

    def __call__(self, samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [s for s in samples if s is not None]
        length = max((len(s["input_ids"]) for s in kept), default=0)
        input_ids = torch.full((len(kept), length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(kept), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(kept), length), dtype=torch.long)
        for b, sample in enumerate(kept):
            n = len(sample["input_ids"])
            input_ids[b, :n] = sample["input_ids"]
            labels[b, :n] = sample["labels"]
            attention_mask[b, :n] = 1
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "videos": [s["video"] for s in kept if s["video"] is not None],
            "images": [s["image"] for s in kept if s["image"] is not None],
        }
