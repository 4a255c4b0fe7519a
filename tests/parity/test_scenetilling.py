"""SceneTilling against the original's cuts and depth scores (golden/README.md, section scenetilling/): every case
in every setting, computed in the case's dtype with the release's arithmetic (`precision="feature_dtype"`, what a
released config selects). Exact-tie cases are skipped (torch.topk's pick is implementation-defined); near-tie
cases (a decision margin within 8 ulp) are a test of their own, since only the release's arithmetic reproduces them.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava.model.config import BridgeConfig, VideoLLaMBConfig
from llava.model.stream import FrameTokens, offline_boundaries
from llava.video.scenetilling import release_depth_scores, segment

GOLDEN = Path(__file__).parent / "golden"
CASES = json.loads((GOLDEN / "scenetilling" / "cases.json").read_text())["cases"]
FEATURES = load_file(GOLDEN / "scenetilling" / "cases.safetensors")
SETTINGS = {  # golden setting -> this project's segment() arguments
    "k3": {"k": 3},
    "k7": {"k": 7},
    "thr_a0.5_max15": {"k": None, "alpha": 0.5, "max_cuts": 15},
    "mem_thr_a0.5_max7": {"k": None, "alpha": 0.5, "max_cuts": 7},
}
DEPTH_TOLERANCE = {torch.float32: 2e-5, torch.float16: torch.finfo(torch.float16).eps}


def kind_of(record: dict) -> str:
    return "tie" if record["tie_dependent"] else "near_tie" if record["near_tie"] else "clean"


def rows(kind: str) -> list:
    return [
        pytest.param(case, name, id=f"{case['name']}-{case['kind']}-T{case['T']}-{case['dtype']}-{name}")
        for case in CASES
        for name in SETTINGS
        if kind_of(case["settings"][name]) == kind
    ]


def release_cuts(case: dict, setting: str, precision: str = "feature_dtype") -> list[int]:
    features = FEATURES[case["name"]]
    assert str(features.dtype) == f"torch.{case['dtype']}"  # computed in the case's own dtype
    return segment(features, precision=precision, **SETTINGS[setting])


def test_the_golden_cases_cover_every_kind_length_and_dtype():
    assert len(CASES) == 72 and all(set(SETTINGS) == set(case["settings"]) for case in CASES)
    assert {(c["kind"], c["T"], c["dtype"]) for c in CASES} == {
        (kind, t, dtype)
        for kind in ("random", "scenes", "smooth", "quantised")
        for t in (8, 16, 24, 32, 48, 64, 100, 128, 256)
        for dtype in ("float32", "float16")
    }


@pytest.mark.parametrize("case", CASES, ids=[f"{c['name']}-{c['dtype']}" for c in CASES])
def test_depth_scores_are_the_originals_in_the_cases_dtype(case):
    got = release_depth_scores(FEATURES[case["name"]])
    want = FEATURES[case["name"] + ".depth"]
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=0, atol=DEPTH_TOLERANCE[want.dtype])


@pytest.mark.parametrize(("case", "setting"), rows("clean"))
def test_clean_cases_cut_where_the_original_cuts(case, setting):
    assert release_cuts(case, setting) == case["settings"][setting]["cuts"]


@pytest.mark.parametrize(("case", "setting"), rows("near_tie"))
def test_near_tie_cases_cut_where_the_original_cuts_in_its_arithmetic(case, setting):
    assert release_cuts(case, setting) == case["settings"][setting]["cuts"]


@pytest.mark.parametrize(("case", "setting"), rows("tie"))
def test_exact_tie_cases(case, setting):
    pytest.skip("an exact tie at the top-k boundary: which index torch.topk picks is implementation-defined")


@pytest.mark.parametrize(("case", "setting"), rows("clean"))
def test_this_projects_float64_depths_agree_on_every_clean_case(case, setting):
    assert release_cuts(case, setting, precision="float64") == case["settings"][setting]["cuts"]


def test_a_released_config_segments_in_the_models_dtype_and_this_projects_in_float64():
    """offline_boundaries (the model's one SceneTilling call) follows BridgeConfig.scenetilling_precision: on the
    near-tie cases where float64 depths cut elsewhere, a released config's bridge cuts as the original did."""
    released = VideoLLaMBConfig.from_released_dict(
        json.loads((GOLDEN / "model_default" / "videollamb-llava-tiny" / "config.json").read_text())
    ).bridge_config
    assert released.scenetilling_precision == "feature_dtype" and BridgeConfig().scenetilling_precision == "float64"
    differing = [
        case
        for case in CASES
        if kind_of(case["settings"]["k3"]) == "near_tie"
        and release_cuts(case, "k3", precision="float64") != case["settings"]["k3"]["cuts"]
    ]
    assert differing, "no near-tie case where the float64 depths cut elsewhere: nothing to tell the modes apart"
    for case in differing:
        features = FEATURES[case["name"]]
        frames = FrameTokens(cls=features, patches=features[:, None])
        assert offline_boundaries(frames, released) == case["settings"]["k3"]["cuts"], case["name"]
        assert offline_boundaries(frames, BridgeConfig()) == release_cuts(case, "k3", precision="float64")
