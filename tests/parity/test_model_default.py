"""The default variant (VideoLLaMB) against the original: both golden checkpoint folders (towers inside the
checkpoint, and towers only in the LanguageBind folders) load with the released-layout loader and give every
intermediate the original computed, within the golden tolerance (golden/README.md, model_default/)."""

import pytest

from llava.model.builder import load_model_weights
from tests.parity.model_parity import (
    GOLDEN,
    TOLERANCE,
    computed_outputs,
    golden_meta,
    golden_outputs,
    load_golden_model,
    max_diff,
)

FOLDERS = ["videollamb-llava-tiny", "videollamb-llava-tiny-towers-in-folders"]
GOLDEN_NAMES = sorted(golden_outputs("default"))


@pytest.fixture(scope="module", params=FOLDERS)
def computed(request):
    return computed_outputs(load_golden_model(GOLDEN / "model_default" / request.param))


def test_the_golden_file_holds_every_output_the_readme_names():
    assert len(GOLDEN_NAMES) == 13 and {"logits_video", "video_projected_segment3"} <= set(GOLDEN_NAMES)


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_every_output_matches_the_original(computed, name):
    assert max_diff(computed[name], golden_outputs("default")[name]) <= TOLERANCE


def test_scenetilling_cuts_and_segment_frames_match_the_original(computed):
    meta = golden_meta("default")
    assert computed["cuts"] == meta["cuts"]
    assert computed["segment_frame_indices"] == meta["segment_frame_indices"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_loads_as_the_default_variant_with_the_release_settings(folder):
    model, report = load_model_weights(GOLDEN / "model_default" / folder)
    bridge = model.config.bridge_config
    assert report.layout == "released" and bridge.variant == "default"
    assert (bridge.scenetilling_k, bridge.pool_size, bridge.frames_per_segment) == (3, 12, 8)
    assert model.bridge.segment_position_emb is None
    assert len(report.towers_from_folders) == (2 if folder.endswith("in-folders") else 0)
