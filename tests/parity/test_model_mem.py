"""The Mem variant (VideoLLaMB-Mem, MM-NIAVH) against the original: its golden checkpoint, whose config.json has
the same keys as the default's, is recognised by its segment position table, loads with the Mem settings and gives
every intermediate the original computed, within the golden tolerance (golden/README.md, model_mem/). Converted
to this project's format it reloads as the Mem variant, and it answers through ChatSession."""

import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from llava.errors import CheckpointError
from llava.model.builder import load_model_weights
from llava.model.convert import main as convert_main
from llava.serve.chat_session import ChatSession, GenerationSettings
from tests.parity.model_parity import (
    GOLDEN,
    TOLERANCE,
    computed_outputs,
    golden_inputs,
    golden_meta,
    golden_outputs,
    load_golden_model,
    max_diff,
)

MEM_FOLDER = GOLDEN / "model_mem" / "videollamb-mem-llava-tiny"
GOLDEN_NAMES = sorted(golden_outputs("mem"))


@pytest.fixture(scope="module")
def mem_model():
    return load_golden_model(MEM_FOLDER)


@pytest.fixture(scope="module")
def computed(mem_model):
    return computed_outputs(mem_model)


def video_logits(model) -> torch.Tensor:
    inputs = golden_inputs()
    with torch.no_grad():
        return model(input_ids=inputs["input_ids_video"][None], videos=[inputs["video"]]).logits[0]


def test_a_released_mem_checkpoint_loads_as_the_mem_variant_with_its_settings():
    model, report = load_model_weights(MEM_FOLDER)
    bridge, config = model.config.bridge_config, model.config
    assert report.layout == "released"
    assert (bridge.variant, bridge.readout_mode) == ("mem", "memories")
    assert (bridge.scenetilling_k, bridge.scenetilling_max_cuts, bridge.pool_size) == (None, 7, 14)
    assert bridge.max_segment_positions == 1024 and config.rate_sampling == "release_mem"
    with safe_open(str(MEM_FOLDER / "model.safetensors"), "pt") as stored:
        positions = stored.get_tensor("model.mm_projector.abs_vid_pe.weight")
    assert positions.abs().max() > 0
    assert torch.equal(model.bridge.segment_position_emb.weight, positions)


def test_the_golden_file_holds_every_output_the_readme_names():
    assert len(GOLDEN_NAMES) == 9 and {"image_projected", "video_mem_retrieved"} <= set(GOLDEN_NAMES)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_every_output_matches_the_original(computed, name):
    """image_projected among them: the original adds no segment position to an image (with one it differs by ~1)."""
    assert max_diff(computed[name], golden_outputs("mem")[name]) <= TOLERANCE


def test_scenetilling_cuts_and_segment_frames_match_the_original(computed):
    meta = golden_meta("mem")
    assert computed["cuts"] == meta["cuts"]
    assert computed["segment_frame_indices"] == meta["segment_frame_indices"]


def test_the_llm_reads_the_memories_of_every_segment(computed):
    memories = torch.cat(list(computed["video_mem_retrieved"]))  # (S * 32, d): [M_1; ...; M_S]
    assert computed["video_projected"].shape[0] == memories.shape[0] == 128


def test_convert_writes_a_checkpoint_that_reloads_as_mem_with_identical_logits(tmp_path, mem_model):
    assert convert_main(["--src", str(MEM_FOLDER), "--dst", str(tmp_path / "ours")]) == 0
    converted, report = load_model_weights(tmp_path / "ours", dtype=torch.float32)
    bridge = converted.config.bridge_config
    assert report.layout == "videollamb"
    assert (bridge.variant, bridge.scenetilling_k, bridge.scenetilling_max_cuts) == ("mem", None, 7)
    assert bridge.pool_size == 14
    assert converted.config.rate_sampling == "release_mem"
    assert torch.equal(video_logits(converted.eval()), video_logits(mem_model))


def test_the_mem_model_answers_through_a_chat_session():
    session = ChatSession.from_pretrained(MEM_FOLDER, device="cpu", dtype=torch.float32)
    session.load_pixels(golden_inputs()["video"])
    assert session.media.shape == (128, 64)
    answer = session.ask("What is the man doing?", GenerationSettings(max_new_tokens=4))
    assert isinstance(answer, str)
    session.load_pixels(golden_inputs()["video"][:2])  # a video of at most 3 frames: read as images, 32 tokens each
    assert session.media.shape == (64, 64)
    assert isinstance(session.ask("And now?", GenerationSettings(max_new_tokens=4)), str)


def test_a_weight_neither_mapped_nor_known_unused_is_an_error_naming_it(tmp_path):
    folder = tmp_path / "mem"
    shutil.copytree(MEM_FOLDER, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.mm_projector.stray.weight"] = torch.zeros(2, 2)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 weights match nothing.*model\.mm_projector\.stray\.weight"):
        load_model_weights(folder)
