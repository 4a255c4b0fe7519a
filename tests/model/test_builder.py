"""load_pretrained_model on this project's format and on a tiny checkpoint in the released layout."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM
from transformers import initialization as init

from llava.errors import CheckpointError, ConfigError
from llava.model import builder
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
    video = random_video(12, seed=9, size=model.config.vision_config.image_size).to(model.video_tower.dtype)
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), videos=[video]).logits


@pytest.mark.parametrize("towers_inside", [True, False])
def test_released_layout_loads_with_no_unmatched_weights(tmp_path, tokenizer, towers_inside):
    source = released_source_model(len(tokenizer))
    write_released(source, tokenizer, tmp_path / "released", towers_inside)
    model, report = load_model_weights(tmp_path / "released")
    assert report.layout == "released"
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


def test_a_weight_that_matches_nothing_is_an_error_in_this_projects_format_too(tmp_path, tiny_model):
    """A weight the model has no place for means the config describes another model (e.g. a Mem checkpoint's
    segment positions under a default config): never dropped silently."""
    tiny_model.save_pretrained(tmp_path / "m")
    state = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    stray = {"bridge.segment_position_emb.weight": torch.zeros(4, 32)}
    save_file(state | stray, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 weights match nothing in the model: bridge\.segment_position_emb"):
        load_model_weights(tmp_path / "m")


def test_released_unused_tower_buffers_are_skipped_and_anything_else_unknown_named(tmp_path, tokenizer):
    """A LanguageBind folder saved by older transformers holds `embeddings.position_ids` (a buffer): skipped; a
    stray tensor in the released checkpoint is named as it is stored there."""
    source = released_source_model(len(tokenizer))
    write_released(source, tokenizer, tmp_path / "released", towers_inside=False)
    tower_file = tmp_path / "released" / "LanguageBind_Video_merge" / "model.safetensors"
    with safe_open(str(tower_file), "pt") as handle:
        tower = {name: handle.get_tensor(name) for name in handle.keys()}
    save_file(tower | {"vision_model.embeddings.position_ids": torch.arange(145)[None]}, str(tower_file))
    _, report = load_model_weights(tmp_path / "released")
    assert any(name.startswith("vision_model.embeddings.position_ids in ") for name in report.unused_released)
    weights = load_file(tmp_path / "released" / "model.safetensors")
    save_file(weights | {"model.stray.weight": torch.zeros(2)}, str(tmp_path / "released" / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 weights match nothing in the model: model\.stray\.weight$"):
        load_model_weights(tmp_path / "released")


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


def save(model, tokenizer, folder):
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_bf16_checkpoint_loads_in_bf16_unless_asked(tmp_path, tiny_model, tokenizer):
    """No float32 copy of a bf16 checkpoint: on the CPU the weights keep the checkpoint's dtype (and values)."""
    source = tiny_model.to(torch.bfloat16)
    folder = save(source, tokenizer, tmp_path / "bf16")
    _, loaded, _, _ = load_pretrained_model(folder, device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # the same weights, read in place from the memory-mapped file: CPU kernels may round bf16 a little differently
    torch.testing.assert_close(logits(loaded, tokenizer), logits(source, tokenizer), rtol=0.02, atol=0.004)
    _, widened, _, _ = load_pretrained_model(folder, device="cpu", dtype=torch.float32)
    assert {p.dtype for p in widened.parameters()} == {torch.float32}


@pytest.mark.parametrize("device_map", ["auto", "cpu", {"video_tower": "cpu", "image_tower": "cpu", "bridge": "cpu",
                                                        "mm_projector": "cpu", "language_model": "cpu"}])
def test_a_device_map_loads_the_same_model(tmp_path, tiny_model, tokenizer, device_map):
    folder = save(tiny_model, tokenizer, tmp_path / "m")
    _, loaded, _, _ = load_pretrained_model(folder, device_map=device_map)
    torch.testing.assert_close(logits(loaded, tokenizer), logits(tiny_model, tokenizer))


def test_auto_device_map_spreads_the_llm_over_gpus_and_cpu_and_keeps_the_vision_path_whole():
    """The placement device_map="auto" computes (transformers' own function, on a meta model) for two GPUs too
    small for the 7B: the towers, bridge and projector whole on the first GPU, where the LLM starts (so visual
    tokens meet the text embeddings there), the LLM's layers over both GPUs and the CPU."""
    from transformers.integrations.accelerate import _get_device_map

    from llava.model.presets import videollamb_7b_config

    with torch.device("meta"), init.no_init_weights():
        model = VideoLLaMBForCausalLM(videollamb_7b_config()).to(torch.bfloat16)
    placement = _get_device_map(model, "auto", {0: "5GiB", 1: "5GiB", "cpu": "40GiB"}, None)
    for name in ("video_tower", "image_tower", "bridge", "mm_projector", "language_model.model.embed_tokens"):
        assert placement[name] == 0, name
    layers = [placement[f"language_model.model.layers.{i}"] for i in range(32)]
    assert layers == sorted(layers, key=[0, 1, "cpu"].index) and set(layers) == {0, 1, "cpu"}
    assert placement["language_model.lm_head"] == "cpu"


@pytest.mark.parametrize("bits", [8, 4])
def test_8bit_and_4bit_loading_quantizes_the_llm_layers_on_the_cpu(tmp_path, tiny_model, tokenizer, bits):
    """bitsandbytes through transformers' quantization support, on the CPU: the LLM's decoder layers are int8 / NF4,
    the towers, bridge, projector and output layer stay in the model's dtype, and the model still answers."""
    folder = save(tiny_model, tokenizer, tmp_path / "m")
    _, model, _, _ = load_pretrained_model(folder, device="cpu", load_8bit=bits == 8, load_4bit=bits == 4)
    layer = model.language_model.model.layers[0].mlp.up_proj
    assert type(layer).__name__ == {8: "Linear8bitLt", 4: "Linear4bit"}[bits]
    assert layer.weight.dtype == {8: torch.int8, 4: torch.uint8}[bits]
    dtype = torch.float16 if bits == 8 else torch.float32  # 8-bit: float16, what int8 matmuls take as it is
    kept = [model.bridge.layer.mlp[0], model.mm_projector[0], model.language_model.lm_head,
            model.video_tower.vision_model.encoder.layers[0].mlp.fc1]
    assert all(type(m) is torch.nn.Linear and m.weight.dtype == dtype for m in kept)
    quantized, full = logits(model, tokenizer).float(), logits(tiny_model, tokenizer)
    assert torch.nn.functional.cosine_similarity(quantized.flatten(), full.flatten(), dim=0) > 0.98
    ids = torch.tensor([[tokenizer.bos_token_id, -201]])
    video = random_video(12, seed=9, size=model.config.vision_config.image_size).to(dtype)
    assert model.generate(input_ids=ids, videos=[video], max_new_tokens=3, do_sample=False).shape == (1, 3)


def test_quantization_errors_are_clear(tmp_path, tiny_model, tokenizer, monkeypatch):
    folder = save(tiny_model, tokenizer, tmp_path / "m")
    with pytest.raises(ConfigError, match="choose one"):
        load_pretrained_model(folder, device="cpu", load_8bit=True, load_4bit=True)
    monkeypatch.setattr(builder, "QUANTIZE_PACKAGES", ("bitsandbytes", "no_such_package_here"))
    with pytest.raises(ConfigError, match=r"--load-4bit needs no_such_package_here: pip install 'llava-videollamb\[quant\]'"):
        load_pretrained_model(folder, device="cpu", load_4bit=True)


REGISTERED = """
import sys
import llava
from transformers import AutoConfig, AutoModelForCausalLM
config = AutoConfig.from_pretrained(sys.argv[1])
print(type(config).__name__, AutoModelForCausalLM._model_mapping[type(config)].__name__)
"""


def test_import_llava_registers_the_auto_classes(tmp_path, tiny_model, tokenizer):
    """In a fresh interpreter `import llava` alone registers the config and the model; AutoModelForCausalLM then
    loads this project's format to the same logits as load_pretrained_model."""
    folder = save(tiny_model, tokenizer, tmp_path / "m")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", REGISTERED, str(folder)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["VideoLLaMBConfig", "VideoLLaMBForCausalLM"]
    auto = AutoModelForCausalLM.from_pretrained(folder)
    _, loaded, _, _ = load_pretrained_model(folder, device="cpu")
    assert type(auto) is VideoLLaMBForCausalLM
    torch.testing.assert_close(logits(auto, tokenizer), logits(loaded, tokenizer), rtol=0, atol=0)
