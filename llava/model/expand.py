"""Block expansion: deepen a checkpoint's LLM by decoder layers that start as the identity.

    python -m llava.model.expand checkpoints/videollamb-tiny-shapes runs/deeper --layers 2

The new layers go on top of the LLM's own, initialised like any new layer except that their attention output and
MLP down projections are zero: each adds nothing to the residual stream at first, so the expanded model computes
exactly what the old one did, and training then puts the new depth to use (the block expansion of LLaMA Pro,
here at the top). Everything else (towers, bridge, projector, tokenizer) is kept as it was. The deeper model is built in
float32 and then cast to the old one's dtype, so a large checkpoint needs host memory for that.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from llava.errors import LlavaError, report_error
from llava.model.builder import load_model_weights, load_tokenizer
from llava.model.videollamb import VideoLLaMBForCausalLM


def expand_llm(model: VideoLLaMBForCausalLM, layers: int, seed: int = 0) -> VideoLLaMBForCausalLM:
    """A copy of `model` whose LLM has `layers` more decoder layers, each an identity until trained."""
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}")
    config = copy.deepcopy(model.config)
    text = config.text_config
    old_depth = text.num_hidden_layers
    text.num_hidden_layers = old_depth + layers
    if getattr(text, "layer_types", None):
        text.layer_types = list(text.layer_types) + [text.layer_types[-1]] * layers
    torch.manual_seed(seed)
    deeper = VideoLLaMBForCausalLM(config)
    missing, unexpected = deeper.load_state_dict(model.state_dict(), strict=False)
    new_prefixes = tuple(f"language_model.model.layers.{i}." for i in range(old_depth, old_depth + layers))
    if unexpected or any(not name.startswith(new_prefixes) for name in missing):
        raise ValueError(f"the expanded model does not take the old weights: {unexpected or missing}")
    for layer in deeper.language_model.model.layers[old_depth:]:
        torch.nn.init.zeros_(layer.self_attn.o_proj.weight)
        torch.nn.init.zeros_(layer.mlp.down_proj.weight)
    torch.nn.Module.to(deeper, dtype=model.dtype)  # PreTrainedModel.to's wrapper hides the dtype overload
    return deeper.train(model.training)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="checkpoint folder to expand")
    parser.add_argument("output", type=Path, help="folder for the expanded checkpoint (model and tokenizer)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers added on top of the LLM's")
    parser.add_argument("--seed", type=int, default=0, help="torch seed of the new layers' weights")
    args = parser.parse_args(argv)
    if args.layers < 1:
        parser.error(f"--layers must be at least 1, got {args.layers}")
    try:
        model, _ = load_model_weights(args.source)
        tokenizer = load_tokenizer(args.source, None)
        expand_llm(model, args.layers, args.seed).save_pretrained(args.output)
        tokenizer.save_pretrained(args.output)
    except (LlavaError, OSError) as err:
        return report_error(err)
    print(f"wrote {args.output}: {model.config.text_config.num_hidden_layers + args.layers} LLM layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
