"""What the parity tests of the full tiny models compute: a golden checkpoint loaded with this project's
released-layout loader (float32, CPU), fed the golden inputs, every intermediate named as in the golden
outputs.safetensors (see golden/README.md, sections model_default/ and model_mem/)."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from llava.model.builder import load_model_weights
from llava.model.videollamb import VideoLLaMBForCausalLM

GOLDEN = Path(__file__).parent / "golden"
TOLERANCE = 2e-5  # max |diff| of float32 tensors (golden/README.md)


def golden_inputs() -> dict[str, torch.Tensor]:
    """The video (T, 3, H, W) and image (3, H, W) as the original received them (float16 values, as float32),
    and the token ids with their placeholders."""
    raw = load_file(GOLDEN / "model_default" / "inputs.safetensors")
    return {
        "video": raw["video_TCHW_float16"].float(),
        "image": raw["image_CHW_float16"].float(),
        "input_ids_video": raw["input_ids_video"],
        "input_ids_image": raw["input_ids_image"],
    }


def golden_outputs(variant: str) -> dict[str, torch.Tensor]:
    return load_file(GOLDEN / f"model_{variant}" / "outputs.safetensors")


def golden_meta(variant: str) -> dict:
    return json.loads((GOLDEN / f"model_{variant}" / "meta.json").read_text())


def load_golden_model(folder: Path) -> VideoLLaMBForCausalLM:
    model, _ = load_model_weights(folder, dtype=torch.float32)
    return model.eval()


@torch.no_grad()
def computed_outputs(model: VideoLLaMBForCausalLM) -> dict:
    """Every output the golden files hold, computed by `model`, under the golden names, plus "cuts" and
    "segment_frame_indices" (as meta.json has them)."""
    inputs = golden_inputs()
    trace = model.trace_video(inputs["video"])
    outputs = {
        "cuts": trace.boundaries,
        "segment_frame_indices": trace.segment_frames,
        "video_tower_hidden": trace.tower_hidden,
        "image_tower_hidden": model.image_tower.encode_images(inputs["image"][None]),
        "video_mem_tilde": torch.stack([step.memory_tilde[0] for step in trace.steps]),
        "video_mem_retrieved": torch.stack([step.state.memory[0] for step in trace.steps]),
        "video_segment_inputs_pooled": torch.stack([step.inputs[0, -1] for step in trace.steps]),
        "video_projected": trace.projected[-1],
        "image_projected": model.encode_images([inputs["image"]])[0],
        "logits_video": model(input_ids=inputs["input_ids_video"][None], videos=[inputs["video"]]).logits[0],
        "logits_image": model(input_ids=inputs["input_ids_image"][None], images=[inputs["image"]]).logits[0],
    }
    outputs |= {f"video_projected_segment{s}": tokens for s, tokens in enumerate(trace.projected)}
    return outputs


def max_diff(ours: torch.Tensor, golden: torch.Tensor) -> float:
    assert ours.shape == golden.shape, f"shape {tuple(ours.shape)}, golden {tuple(golden.shape)}"
    return (ours.float() - golden.float()).abs().max().item()
