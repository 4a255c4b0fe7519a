"""Block expansion (`llava.model.expand`): the deeper model computes what the old one did until it is trained."""

import pytest
import torch

from llava.constants import VIDEO_TOKEN_INDEX
from llava.model.expand import expand_llm, main
from llava.model.videollamb import VideoLLaMBForCausalLM
from tests.model.conftest import random_video


def video_prompt(vocab: int) -> torch.Tensor:
    ids = torch.randint(3, vocab, (1, 12), generator=torch.Generator().manual_seed(1))
    ids[0, 2] = VIDEO_TOKEN_INDEX
    return ids


def logits(model: VideoLLaMBForCausalLM, ids: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, videos=[video]).logits


def test_the_expanded_model_computes_what_the_old_one_did(tiny_model):
    depth = tiny_model.config.text_config.num_hidden_layers
    deeper = expand_llm(tiny_model, 2).eval()
    assert deeper.config.text_config.num_hidden_layers == len(deeper.language_model.model.layers) == depth + 2
    assert tiny_model.config.text_config.num_hidden_layers == depth  # the old model is left as it was
    ids, video = video_prompt(tiny_model.config.text_config.vocab_size), random_video(8, seed=3)
    torch.testing.assert_close(logits(deeper, ids, video), logits(tiny_model, ids, video), rtol=0, atol=1e-6)
    for layer in deeper.language_model.model.layers[depth:]:
        assert layer.self_attn.o_proj.weight.abs().sum() == 0 and layer.mlp.down_proj.weight.abs().sum() == 0
        assert layer.self_attn.q_proj.weight.abs().sum() > 0  # the rest is initialised, not zero


def test_training_puts_the_new_layers_to_use(tiny_model):
    depth = tiny_model.config.text_config.num_hidden_layers
    deeper = expand_llm(tiny_model, 1).train()
    ids, video = video_prompt(tiny_model.config.text_config.vocab_size), random_video(8, seed=3)
    optimizer = torch.optim.SGD(deeper.parameters(), lr=0.1)
    deeper(input_ids=ids, videos=[video], labels=ids.clamp(min=0)).loss.backward()
    optimizer.step()
    new = deeper.language_model.model.layers[depth]
    assert new.self_attn.o_proj.weight.abs().sum() > 0 and new.mlp.down_proj.weight.abs().sum() > 0
    assert not torch.allclose(logits(deeper.eval(), ids, video), logits(tiny_model, ids, video))


def test_cli_writes_a_loadable_deeper_checkpoint(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "deeper"
    assert main([str(tiny_checkpoint), str(out), "--layers", "2"]) == 0
    old = VideoLLaMBForCausalLM.from_pretrained(tiny_checkpoint).eval()
    new = VideoLLaMBForCausalLM.from_pretrained(out).eval()
    assert new.config.text_config.num_hidden_layers == old.config.text_config.num_hidden_layers + 2
    ids, video = video_prompt(old.config.text_config.vocab_size), random_video(8, seed=4)
    torch.testing.assert_close(logits(new, ids, video), logits(old, ids, video), rtol=0, atol=1e-6)
    assert (out / "tokenizer.json").exists()
    assert f"{new.config.text_config.num_hidden_layers} LLM layers" in capsys.readouterr().out


def test_cli_bad_source_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    with pytest.raises(SystemExit):
        main([str(tmp_path), str(tmp_path / "out"), "--layers", "0"])


def test_the_expanded_model_keeps_the_dtype(tiny_model):
    deeper = expand_llm(tiny_model.to(torch.bfloat16), 1)
    assert {p.dtype for p in deeper.parameters()} == {torch.bfloat16}
