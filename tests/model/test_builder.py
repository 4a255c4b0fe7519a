"""load_pretrained_model on this project's format and on a tiny checkpoint in the released layout."""

import json

import pytest
import torch
from safetensors.torch import save_file

from llava.errors import CheckpointError
from llava.model.builder import load_model_weights, load_pretrained_model
from llava.model.config import VideoLLaMBConfig
from llava.model.convert import main as convert_main
from llava.model.videollamb import VideoLLaMBForCausalLM
from tests.model.conftest import random_video

# written out independently of llava.model.checkpoint: our name -> the released name
OURS_TO_RELEASED = [
    ("bridge.read_memory_emb", "model.mm_projector.projector.read_memory_emb"),
    ("bridge.layer.", "model.mm_projector.projector.layers.0."),
    ("mm_projector.", "model.mm_projector.projector.proj."),
    ("bridge.retriever.", "model.mm_projector.retrieval.layers.0."),
    ("video_tower.vision_model.", "model.video_tower.video_tower."),
    ("image_tower.vision_model.", "model.image_tower.image_tower."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
]
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=24,
              patch_size=2, num_frames=4)


def released_source_model(vocab_size: int) -> VideoLLaMBForCausalLM:
    """A tiny model whose non-config constants are the released defaults (pool 12, k = 3, 8 frames a segment)."""
    text = dict(model_type="llama", vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512)
    vision = {k: v for k, v in VISION.items() if k != "num_frames"} | {"temporal_window": 4}
    bridge = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_memory_tokens=6)
    torch.manual_seed(0)
    model = VideoLLaMBForCausalLM(VideoLLaMBConfig(text_config=text, vision_config=vision, bridge_config=bridge))
    with torch.no_grad():
        model.bridge.read_memory_emb.normal_()
    return model.eval()


def to_released(name: str) -> str:
    for ours, released in OURS_TO_RELEASED:
        if name.startswith(ours):
            return released + name[len(ours):]
    raise AssertionError(name)


def write_released(model, tokenizer, folder, towers_inside: bool):
    folder.mkdir()
    state = {to_released(k): v.contiguous() for k, v in model.state_dict().items()}
    unused = {"model.mm_projector.projector.memory_tokens": torch.zeros(6, 32),
              "model.mm_projector.projector.layers.0.crossattention.q_proj.weight": torch.zeros(32, 32),
              "model.mm_projector.retrieval.layers.0.selfattention.q_proj.weight": torch.zeros(32, 32)}
    towers = {"video": {}, "image": {}}
    for key in list(state):
        for kind in towers:
            prefix = f"model.{kind}_tower.{kind}_tower."
            if key.startswith(prefix) and not towers_inside:
                towers[kind]["vision_model." + key[len(prefix):]] = state.pop(key)
    save_file(state | unused, str(folder / "model.safetensors"))
    text = model.config.text_config.to_dict()
    config = {k: text[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "num_key_value_heads", "max_position_embeddings")}
    config |= dict(architectures=["LlavaLlamaForCausalLMRMT"], model_type="llava_llama", X=["VIDEO", "IMAGE"],
                   num_frames=16, image_aspect_ratio="pad", mm_video_tower="./LanguageBind_Video_merge",
                   mm_image_tower="./LanguageBind_Image", mm_projector_type="rmt_r_transformer1x", mm_hidden_size=32,
                   mm_num_attention_heads=4, mm_intermediate_size=64, mm_hidden_act="gelu", mm_layer_norm_eps=1e-12,
                   mm_hidden_dropout_prob=0.1, mm_attention_probs_dropout_prob=0.1, mm_vision_select_layer=-2)
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(folder)
    for kind, name in (("video", "LanguageBind_Video_merge"), ("image", "LanguageBind_Image")):
        tower = folder / name
        tower.mkdir()
        (tower / "config.json").write_text(json.dumps({"vision_config": VISION}))
        if not towers_inside:
            save_file({k: v.contiguous() for k, v in towers[kind].items()}, str(tower / "model.safetensors"))


def logits(model, tokenizer):
    ids = [tokenizer.bos_token_id] + tokenizer("USER:", add_special_tokens=False)["input_ids"] + [-201]
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), videos=[random_video(12, seed=9, size=model.config.vision_config.image_size)]).logits


@pytest.mark.parametrize("towers_inside", [True, False])
def test_released_layout_loads_with_no_unmatched_weights(tmp_path, tokenizer, towers_inside):
    source = released_source_model(len(tokenizer))
    write_released(source, tokenizer, tmp_path / "released", towers_inside)
    model, report = load_model_weights(tmp_path / "released")
    assert report.layout == "released" and report.unexpected == []
    assert len(report.unused_released) == 3
    assert len(report.towers_from_folders) == (0 if towers_inside else 2)
    torch.testing.assert_close(logits(model.eval(), tokenizer), logits(source, tokenizer))
    assert convert_main(["--src", str(tmp_path / "released"), "--dst", str(tmp_path / "ours")]) == 0
    tokenizer2, converted, processor, context = load_pretrained_model(tmp_path / "ours", device="cpu")
    assert context == 512 and processor.size == 24 and processor.pad_images
    torch.testing.assert_close(logits(converted, tokenizer2), logits(model.eval(), tokenizer))


def test_own_format_round_trip_and_clear_errors(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path / "ours")
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_pretrained_model(tmp_path / "ours", device="cpu")
    tokenizer.save_pretrained(tmp_path / "ours")
    _, loaded, _, _ = load_pretrained_model(tmp_path / "ours", device="cpu")
    torch.testing.assert_close(logits(loaded, tokenizer), logits(tiny_model, tokenizer))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_pretrained_model(tmp_path / "nowhere")


def test_missing_corrupted_and_mismatched_weights_are_named(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "m")
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items() if k != "language_model.lm_head.weight"}
    save_file(state, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="language_model.lm_head.weight"):
        load_model_weights(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_model_weights(tmp_path / "m")
    tiny_model.save_pretrained(tmp_path / "n")
    config = json.loads((tmp_path / "n" / "config.json").read_text())
    config["text_config"]["hidden_size"] = 128
    (tmp_path / "n" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match"):
        load_model_weights(tmp_path / "n")


def test_quantised_loading_without_cuda_is_one_clear_error(tmp_path):
    from llava.errors import ConfigError

    with pytest.raises(ConfigError, match="CUDA"):
        load_pretrained_model(tmp_path, device="cpu", load_4bit=True)
