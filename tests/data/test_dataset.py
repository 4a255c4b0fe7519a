"""SupervisedDataset, DataCollator and ModalityGroupedSampler on real mp4s, PNGs and a real tokenizer."""

from __future__ import annotations

import json
import math
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llava.constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX, VIDEO_TOKEN_INDEX
from llava.conversation import VICUNA_SYSTEM
from llava.data import shapes_dataset
from llava.data.dataset import (
    DataCollator,
    DataConfig,
    SupervisedDataset,
    allowed_bad,
    load_rows,
    row_messages,
    validate_row,
)
from llava.data.sampler import ModalityGroupedSampler
from llava.errors import ConfigError, DataError
from llava.train.sentencepiece_tokenizer import train_tokenizer

FRAMES, SIZE = 4, 32


def turns(*texts: str) -> list[dict]:
    """Alternating human / gpt turns."""
    return [{"from": ("human", "gpt")[i % 2], "value": t} for i, t in enumerate(texts)]


def extra_rows() -> list[dict]:
    """Image, text, multi-turn and oddly tagged rows to go with the synthetic video rows."""
    return [
        {"id": "img_red", "image": "images/red.png", "conversations": turns("What colour is it? <image>", "red")},
        {"id": "img_blue", "image": "images/blue.png", "conversations": turns("Which colour?", "blue")},
        {"id": "text_one", "conversations": turns("Say hello.", "hello there")},
        {"id": 7, "conversations": turns("Count to three.", "one two three", "And back?", "three two one")},
        {"id": "vid_tag_end", "video": "videos/synth_000000.mp4",
         "conversations": turns("Describe the video.\n<video>", "a red circle", "More?", "no")},
        {"id": "vid_no_tag", "video": "videos/synth_000001.mp4",
         "conversations": turns("What was shown?", "shapes")},
    ]


def malformed_rows() -> list[dict]:
    """One row per validation rule, each with an id that names its fault."""
    return [
        {"id": "bad_no_conv", "video": "videos/synth_000000.mp4"},
        {"id": "bad_value_type", "conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]},
        {"id": "bad_not_alternating", "conversations": turns("q", "a")[:1] * 2 + turns("q", "a")[1:]},
        {"id": "bad_gpt_first", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]},
        {"id": "bad_both", "video": "v.mp4", "image": "i.png", "conversations": turns("q", "a")},
        {"id": "bad_video_type", "video": ["v.mp4"], "conversations": turns("q", "a")},
        {"id": "bad_stray_tag", "conversations": turns("<video>\nq", "a")},
        {"id": "bad_empty_conv", "conversations": []},
        {"video": "videos/synth_000000.mp4", "conversations": turns("q", "a")},  # no id: named "#index"
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A data root with 3 synthetic videos (18 rows), 2 PNGs, text rows, and a corrupt 'mp4'."""
    root = tmp_path_factory.mktemp("world")
    shapes_dataset.main(["--out", str(root), "--num-videos", "3", "--max-scenes", "3", "--seed", "5", "--quiet"])
    (root / "images").mkdir()
    for name, rgb in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        Image.fromarray(np.full((30, 40, 3), rgb, dtype=np.uint8)).save(root / "images" / f"{name}.png")
    (root / "videos" / "corrupt.mp4").write_text("this is not a video\n")
    rows = json.loads((root / "train.json").read_text()) + extra_rows()
    (root / "clean.json").write_text(json.dumps(rows))
    return root


@pytest.fixture(scope="module")
def tokenizer(world, tmp_path_factory):
    rows = json.loads((world / "clean.json").read_text()) + malformed_rows()
    texts = [VICUNA_SYSTEM, "USER: ASSISTANT:"] + [
        str(t.get("value")) for r in rows for t in r.get("conversations", []) if isinstance(t, dict)
    ]
    return train_tokenizer(texts, tmp_path_factory.mktemp("tok"), vocab_size=320)


def make_dataset(world: Path, tokenizer, rows: list | None = None, name: str = "clean.json", **overrides):
    if rows is not None:
        (world / name).write_text(json.dumps(rows))
    settings = {"num_frames": FRAMES, "image_size": SIZE} | overrides
    config = DataConfig(str(world / name), x_folder=str(world), **settings)
    return SupervisedDataset(config, tokenizer)


def clean_rows(world: Path) -> list[dict]:
    return json.loads((world / "clean.json").read_text())


def supervised_runs(labels: torch.Tensor) -> list[list[int]]:
    """Maximal runs of supervised (non-ignored) label ids."""
    runs, current = [], []
    for token in labels.tolist():
        if token == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(token)
    return runs + ([current] if current else [])


# --- tokenising and masking -----------------------------------------------------------------------------------
def test_labels_supervise_exactly_the_assistant_replies(world, tokenizer):
    dataset = make_dataset(world, tokenizer)
    assert len(dataset) == len(clean_rows(world))
    for index, row in enumerate(dataset.rows):
        sample = dataset[index]
        ids, labels = sample["input_ids"], sample["labels"]
        assert ids.dtype == labels.dtype == torch.long and ids.shape == labels.shape
        supervised = labels != IGNORE_INDEX
        assert torch.equal(labels[supervised], ids[supervised])
        answers = [t["value"] for t in row["conversations"] if t["from"] == "gpt"]
        decoded = [tokenizer.decode(run, skip_special_tokens=False).strip() for run in supervised_runs(labels)]
        assert decoded == [a + "</s>" for a in answers], row["id"]
        assert ids[0].item() == tokenizer.bos_token_id


@pytest.mark.parametrize("row_id", ["synth_000000_caption", "vid_tag_end", "vid_no_tag"])
def test_video_placeholder_once_at_start_of_first_human_turn(world, tokenizer, row_id):
    dataset = make_dataset(world, tokenizer)
    index = next(i for i, r in enumerate(dataset.rows) if str(r["id"]) == row_id)
    ids = dataset[index]["input_ids"].tolist()
    assert ids.count(VIDEO_TOKEN_INDEX) == 1 and ids.count(IMAGE_TOKEN_INDEX) == 0
    at = ids.index(VIDEO_TOKEN_INDEX)
    assert tokenizer.decode(ids[1:at]).strip().endswith("USER:")
    assert "ASSISTANT" not in tokenizer.decode(ids[1:at])
    question = dataset.rows[index]["conversations"][0]["value"].replace("<video>", "").strip()
    assert tokenizer.decode(ids[at + 1 :]).strip().startswith(question)


def test_video_fps_samples_at_that_rate_up_to_num_frames(world, tokenizer):
    truth = json.loads((world / "truth.json").read_text())["videos"][0]
    index = next(i for i, row in enumerate(clean_rows(world)) if row.get("video") == truth["video"])
    seconds = truth["duration"]
    at_one_fps = make_dataset(world, tokenizer, video_fps=1.0, num_frames=64)[index]["video"]
    assert at_one_fps.shape[0] == math.ceil(seconds - 1e-9)  # one frame per whole second the video lasts
    capped = make_dataset(world, tokenizer, video_fps=1.0, num_frames=3)[index]["video"]
    assert capped.shape[0] == 3
    assert make_dataset(world, tokenizer, video_fps=1.0, num_frames=64, max_frames=2)[index]["video"].shape[0] == 2
    assert make_dataset(world, tokenizer)[index]["video"].shape[0] == FRAMES


@pytest.mark.parametrize("settings", [{"video_fps": 0.0}, {"video_fps": float("nan")}, {"num_frames": 0},
                                      {"max_frames": 0, "video_fps": 1.0}])
def test_bad_sampling_settings_are_config_errors(world, tokenizer, settings):
    with pytest.raises(ConfigError, match=next(iter(settings))):
        make_dataset(world, tokenizer, **settings)


def test_image_and_text_rows(world, tokenizer):
    dataset = make_dataset(world, tokenizer)
    by_id = {str(r["id"]): i for i, r in enumerate(dataset.rows)}
    image = dataset[by_id["img_red"]]
    assert image["image"].shape == (3, SIZE, SIZE) and image["video"] is None
    assert image["input_ids"].tolist().count(IMAGE_TOKEN_INDEX) == 1
    assert VIDEO_TOKEN_INDEX not in image["input_ids"].tolist()
    video = dataset[by_id["vid_no_tag"]]
    assert video["video"].shape == (FRAMES, 3, SIZE, SIZE) and video["video"].dtype == torch.float32
    text = dataset[by_id["7"]]
    assert text["video"] is None and text["image"] is None and text["id"] == "7"
    assert not (text["input_ids"] < 0).any()
    counts = Counter(dataset.modalities)
    assert counts == {"video": 20, "image": 2, "text": 2}


def test_row_messages_moves_the_tag():
    row = {"id": 1, "video": "v.mp4", "conversations": turns("Look <video> here", "ok", "again <video>", "yes")}
    assert row_messages(row) == [("human", "<video>\nLook  here"), ("gpt", "ok"), ("human", "again"),
                                 ("gpt", "yes")]
    untagged = {"id": 2, "image": "i.png", "conversations": turns("What?", "a cat")}
    assert row_messages(untagged)[0] == ("human", "<image>\nWhat?")
    text = {"id": 3, "conversations": turns("hi", "hello")}
    assert row_messages(text) == [("human", "hi"), ("gpt", "hello")]


def test_truncation_keeps_the_placeholder(world, tokenizer):
    full = make_dataset(world, tokenizer)[0]["input_ids"].tolist()
    at = full.index(VIDEO_TOKEN_INDEX)
    sample = make_dataset(world, tokenizer, max_length=at + 3)[0]
    assert len(sample["input_ids"]) == len(sample["labels"]) == at + 3
    assert sample["input_ids"].tolist() == full[: at + 3]
    with pytest.raises(DataError, match="max_length"):
        make_dataset(world, tokenizer, max_length=at)[0]


# --- validation -------------------------------------------------------------------------------------------------
def test_malformed_rows_are_skipped_and_named(world, tokenizer, caplog):
    rows = clean_rows(world) + malformed_rows()
    with caplog.at_level(logging.WARNING, logger="llava.data.dataset"):
        dataset = make_dataset(world, tokenizer, rows, name="mixed.json", max_bad_fraction=0.5)
    assert len(dataset) == len(clean_rows(world))
    for row in malformed_rows()[:-1]:
        assert f"malformed row {row['id']}:" in caplog.text
    assert f"malformed row #{len(rows) - 1}:" in caplog.text
    assert "alternate" in caplog.text and "both 'video' and 'image'" in caplog.text
    assert caplog.text.count("malformed row") == len(malformed_rows())


def test_validate_row_reasons():
    assert validate_row({"id": "a", "conversations": turns("q", "a")}) is None
    assert "conversations" in validate_row({"id": "a"})
    assert "id" in validate_row({"conversations": turns("q", "a")})
    assert "not an object" in validate_row(["id"])
    assert "last turn" in validate_row({"id": "a", "conversations": turns("q", "a", "q2")})
    judged = {"id": "a", "conversations": turns("q", "a")}
    assert validate_row({**judged, "judgements": [{"text": "q", "right": False}]}) is None
    for bad in ({"text": "q"}, {"text": "", "right": True}, {"text": "q", "right": "yes"}, "q"):
        assert "judgements" in validate_row({**judged, "judgements": [bad]})
    assert "judgements" in validate_row({**judged, "judgements": {"text": "q", "right": True}})


def test_too_many_malformed_rows_raise(world, tokenizer):
    rows = clean_rows(world) + malformed_rows()
    with pytest.raises(DataError, match=rf"{len(malformed_rows())} of {len(rows)} rows are malformed") as info:
        make_dataset(world, tokenizer, rows, name="mixed2.json")
    assert "bad_no_conv" in str(info.value)


def test_allowed_bad_rule():
    assert allowed_bad(100, 0.01) == 1 and allowed_bad(10, 0.01) == 1 and allowed_bad(1000, 0.01) == 10
    assert allowed_bad(1000, 0.0) == 0


def test_missing_invalid_and_jsonl_files(world, tokenizer, tmp_path):
    with pytest.raises(DataError, match="nope.json"):
        SupervisedDataset(DataConfig(str(tmp_path / "nope.json")), tokenizer)
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": 1,')
    with pytest.raises(DataError, match="broken.json.*invalid JSON"):
        SupervisedDataset(DataConfig(str(broken)), tokenizer)
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(DataError, match="JSON list"):
        load_rows(tmp_path / "obj.json")
    lines = tmp_path / "rows.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in clean_rows(world)) + "\n")
    assert load_rows(lines) == clean_rows(world)
    assert len(SupervisedDataset(DataConfig(str(lines), x_folder=str(world)), tokenizer)) == len(clean_rows(world))


# --- unreadable media -----------------------------------------------------------------------------------------
def bad_media_rows() -> list[dict]:
    return [
        {"id": "gone_video", "video": "videos/missing.mp4", "conversations": turns("q", "a")},
        {"id": "corrupt_video", "video": "videos/corrupt.mp4", "conversations": turns("q", "a")},
    ]


def test_unreadable_media_returns_none_and_is_named(world, tokenizer, caplog):
    rows = clean_rows(world) + bad_media_rows()
    dataset = make_dataset(world, tokenizer, rows, name="badmedia.json", max_bad_fraction=0.5)
    assert dataset.modalities[-2:] == ["video", "video"]  # no media opened to know this
    with caplog.at_level(logging.WARNING, logger="llava.data.dataset"):
        assert dataset[len(dataset) - 2] is None
        assert dataset[len(dataset) - 1] is None
    assert "gone_video" in caplog.text and "corrupt_video" in caplog.text
    assert "missing.mp4" in caplog.text and "corrupt.mp4" in caplog.text
    assert dataset[0] is not None  # the next row is its own row, not a substitute
    assert set(dataset.bad_media) == {"gone_video", "corrupt_video"}


def test_too_many_unreadable_rows_raise(world, tokenizer):
    rows = clean_rows(world) + bad_media_rows()  # 26 rows, 1% -> one bad row allowed
    dataset = make_dataset(world, tokenizer, rows, name="badmedia2.json")
    assert dataset[len(dataset) - 2] is None
    assert dataset[len(dataset) - 2] is None  # the same row again is not a new bad row
    with pytest.raises(DataError, match=rf"2 of {len(rows)} rows unreadable.*gone_video, corrupt_video"):
        dataset[len(dataset) - 1]


# --- collator -----------------------------------------------------------------------------------------------------
def test_collator_pads_masks_and_drops_none(world, tokenizer):
    dataset = make_dataset(world, tokenizer)
    by_id = {str(r["id"]): i for i, r in enumerate(dataset.rows)}
    samples = [dataset[by_id[k]] for k in ("text_one", "vid_tag_end", "img_red", "vid_no_tag")]
    batch = DataCollator(tokenizer)([samples[0], None, *samples[1:]])
    lengths = [len(s["input_ids"]) for s in samples]
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (4, max(lengths))
    assert batch["attention_mask"].dtype == torch.long
    for b, sample in enumerate(samples):
        n = lengths[b]
        assert torch.equal(batch["input_ids"][b, :n], sample["input_ids"])
        assert torch.equal(batch["labels"][b, :n], sample["labels"])
        assert (batch["input_ids"][b, n:] == tokenizer.pad_token_id).all()
        assert (batch["labels"][b, n:] == IGNORE_INDEX).all()
        assert batch["attention_mask"][b].tolist() == [1] * n + [0] * (max(lengths) - n)
    assert [v.shape for v in batch["videos"]] == [(FRAMES, 3, SIZE, SIZE)] * 2
    assert torch.equal(batch["videos"][0], samples[1]["video"]) and torch.equal(batch["videos"][1], samples[3]["video"])
    assert len(batch["images"]) == 1 and torch.equal(batch["images"][0], samples[2]["image"])


def test_collator_all_none_gives_an_empty_batch(tokenizer):
    batch = DataCollator(tokenizer)([None, None])
    assert batch["input_ids"].shape == (0, 0) and batch["labels"].shape == (0, 0)
    assert batch["attention_mask"].shape == (0, 0) and batch["videos"] == [] and batch["images"] == []


def test_collator_needs_a_pad_token():
    class NoPad:
        pad_token_id = None

    with pytest.raises(ConfigError, match="pad"):
        DataCollator(NoPad())


# --- sampler ------------------------------------------------------------------------------------------------------
MODALITY_MIXES = [
    ["video"] * 23 + ["image"] * 9 + ["text"] * 5,
    ["text"] * 3 + ["video"] * 16 + ["image"] * 8,  # multiples of 4 and 8: no leftovers for batch 4 / world 2
    ["image"] * 7,
]


def global_batches(order: list[int], batch_size: int, world_size: int) -> list[list[int]]:
    """What accelerate does: device batches of `batch_size`; global step k = device batches kW .. kW+W-1."""
    device = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [sum(device[k : k + world_size], []) for k in range(0, len(device), world_size)]


@pytest.mark.parametrize("modalities", MODALITY_MIXES)
@pytest.mark.parametrize("world_size", [1, 2])
def test_sampler_yields_every_index_once_in_single_modality_batches(modalities, world_size):
    batch_size = 4
    sampler = ModalityGroupedSampler(modalities, batch_size=batch_size, world_size=world_size, seed=3)
    group = batch_size * world_size
    leftovers = sum(1 for n in Counter(modalities).values() if n % group)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(modalities))) and len(sampler) == len(modalities)
        groups = sampler.groups()
        assert all(len({modalities[i] for i in g}) == 1 for g in groups)
        full = sum(1 for g in groups if len(g) == group)
        batches = global_batches(order, batch_size, world_size)
        assert all(len({modalities[i] for i in b}) == 1 for b in batches[:full])  # every full group is pure
        mixed = sum(1 for b in batches if len({modalities[i] for i in b}) > 1)
        assert mixed <= max(0, leftovers - 1)  # only the epoch's tail of leftovers may mix
        if leftovers == 0:
            assert mixed == 0


def test_sampler_is_deterministic_per_seed_and_epoch():
    modalities = MODALITY_MIXES[0]
    a = ModalityGroupedSampler(modalities, batch_size=4, world_size=2, seed=1)
    b = ModalityGroupedSampler(modalities, batch_size=4, world_size=2, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    b.set_epoch(1)
    assert list(a) == list(b) != first
    assert list(ModalityGroupedSampler(modalities, batch_size=4, world_size=2, seed=9)) != first


def test_sampler_with_dataloader(world, tokenizer):
    dataset = make_dataset(world, tokenizer)
    sampler = ModalityGroupedSampler(dataset.modalities, batch_size=2, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=DataCollator(tokenizer))
    rows = 0
    for batch in loader:
        rows += batch["input_ids"].shape[0]
        kinds = {len(batch["videos"]) > 0, len(batch["images"]) > 0}
        assert kinds != {True}  # never videos and images in one batch (counts are even here: no tail)
    assert rows == len(dataset)
