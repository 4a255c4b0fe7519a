"""Pretrain the memory bridge to keep a record of every scene a video showed, before the LLM learns to read it.

    python -m llava.data.shapes_dataset --out runs/memory-data --num-videos 2400 --min-scenes 2 --max-scenes 8
    python -m llava.train.memory_pretraining --model checkpoints/videollamb-tiny-shapes --data runs/memory-data \
        --output runs/memory-pretrained --held-out 200

Trained only through the LLM's answers, the bridge's final memory keeps little of the scenes before the last one
(docs/demo-model-research.md): the loss of a question about an earlier scene reaches the memory through the LLM,
whose reading of it forms as slowly as the memory itself. Here a small head reads the final memory directly and is
trained, with the bridge, on the synthetic world's truth:
- `objects`: which of the world's objects (a colour and a shape, `shapes_world.ALL_CAPTIONS`) any scene showed; a
  two-layer MLP on each memory token, the most confident token per object (max over tokens), binary cross-entropy;
- `scenes`: the object of each of the first `positions` scenes in order, or none past the video's last scene; one
  learned query per position attends over the memory tokens, an MLP names the object, a cross-entropy per position
  (what n-th, count and order questions need).
The video tower is frozen (its frame tokens are computed once per video) and the projector and LLM are not in the
graph, so only the bridge changes. The head is thrown away: the checkpoint written is the model with its new bridge,
and `memory_pretraining.json` beside it scores the head on the data's last `--held-out` videos. With `--probe` the
bridge stays frozen and only the report is written (`memory_probe.json`): how much of the record its memory keeps.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from llava.atomic import write_json_atomic
from llava.data.shapes_world import ALL_CAPTIONS, VideoSpec
from llava.errors import LlavaError, report_error
from llava.model.builder import load_model_weights, load_tokenizer
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.shapes_frames import encoded_videos

logger = logging.getLogger(__name__)
NONE = len(ALL_CAPTIONS)  # the `scenes` record's class for a position past the video's last scene


@dataclass
class MemoryClip:
    """One video as the bridge sees it: its segments' tokens (from the frozen tower) and the truth to record."""

    segments: list[Tensor]  # (N_s, D) each, as `VideoLLaMBForCausalLM.split_segments` gives them
    objects: Tensor  # (len(ALL_CAPTIONS),) 1.0 for each object some scene showed
    scenes: Tensor  # (positions,) the object index of each scene in order, NONE past the last


@dataclass
class MemoryRecordScores:
    objects_shown: float  # share of the objects a video showed that the head calls shown
    objects_absent: float  # share of the objects it did not show that the head calls absent
    scene_objects: float  # share of the scenes (of the first `positions`) whose object the head names at their place
    scene_counts: float  # share of videos whose number of scenes (up to `positions`) the head gets right


class MemoryRecordHead(nn.Module):
    """Reads a record of the video from the bridge's final memory (B, M, d): `objects` logits (B, C), from each
    memory token by a small MLP, the most confident token per object; `scenes` logits (B, positions, C + 1), from
    one learned query per position attending over the memory tokens."""

    def __init__(self, width: int, positions: int) -> None:
        super().__init__()
        classes = len(ALL_CAPTIONS)
        self.objects = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, classes))
        self.queries = nn.Parameter(torch.randn(positions, width) / width**0.5)
        self.keys = nn.Linear(width, width)
        self.scenes = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, classes + 1))

    def forward(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        objects = self.objects(memory).amax(dim=1)
        weights = torch.softmax(self.queries @ self.keys(memory).transpose(1, 2) / memory.shape[-1] ** 0.5, dim=-1)
        return objects, self.scenes(weights @ memory)  # (B, positions, M) @ (B, M, d)


def truth_targets(spec: VideoSpec, positions: int) -> tuple[Tensor, Tensor]:
    """The `objects` multi-hot and the `scenes` sequence (see the module docstring) of one video's truth."""
    shown = [ALL_CAPTIONS.index(scene.caption) for scene in spec.scenes]
    objects = torch.zeros(len(ALL_CAPTIONS))
    objects[shown] = 1.0
    scenes = torch.full((positions,), NONE, dtype=torch.long)
    first = shown[:positions]
    scenes[: len(first)] = torch.tensor(first, dtype=torch.long)
    return objects, scenes


@torch.no_grad()
def memory_clips(model: VideoLLaMBForCausalLM, folder: Path, positions: int) -> list[MemoryClip]:
    """Every video of a `llava.data.shapes_dataset` folder at the model's frame sampling, through its frozen tower
    and SceneTilling (the segments the bridge reads in training and in use)."""
    clips = []
    for frames, _, spec in encoded_videos(model, folder):
        objects, scenes = truth_targets(spec, positions)
        clips.append(MemoryClip(model.split_segments(frames), objects, scenes))
    return clips


def final_memory(model: VideoLLaMBForCausalLM, clips: list[MemoryClip]) -> Tensor:
    """The bridge's memory after each clip's last segment, (B, M, d)."""
    state, _ = model.bridge.run_segments([clip.segments for clip in clips])
    return state.memory


def record_loss(head: MemoryRecordHead, memory: Tensor, clips: list[MemoryClip]) -> Tensor:
    objects, scenes = head(memory)
    object_targets = torch.stack([clip.objects for clip in clips])
    scene_targets = torch.stack([clip.scenes for clip in clips])
    return nn.functional.binary_cross_entropy_with_logits(objects, object_targets) + nn.functional.cross_entropy(
        scenes.flatten(0, 1), scene_targets.flatten()
    )


@torch.no_grad()
def record_scores(
    model: VideoLLaMBForCausalLM, head: MemoryRecordHead, clips: list[MemoryClip], batch: int
) -> MemoryRecordScores:
    objects_called, scenes_named = [], []
    for start in range(0, len(clips), batch):
        objects, scenes = head(final_memory(model, clips[start : start + batch]))
        objects_called.append(objects > 0)
        scenes_named.append(scenes.argmax(-1))
    called, named = torch.cat(objects_called), torch.cat(scenes_named)
    shown = torch.stack([clip.objects for clip in clips]).bool()
    truth = torch.stack([clip.scenes for clip in clips])
    real = truth != NONE
    return MemoryRecordScores(
        objects_shown=float((called & shown).sum() / shown.sum()),
        objects_absent=float((~called & ~shown).sum() / (~shown).sum()),
        scene_objects=float((named == truth)[real].float().mean()),
        scene_counts=float(((named != NONE).sum(1) == real.sum(1)).float().mean()),
    )


def fit_record_head(
    model: VideoLLaMBForCausalLM,
    train_clips: list[MemoryClip],
    held_out: list[MemoryClip],
    steps: int,
    train_bridge: bool = True,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Train a fresh `MemoryRecordHead` on `train_clips` for `steps` batches of `batch` (AdamW), with the bridge
    (`train_bridge`) or on its frozen memory (a probe of what it keeps); returns the last loss and the head's scores
    on `held_out`."""
    torch.manual_seed(seed)
    config = model.config.bridge_config
    head = MemoryRecordHead(config.hidden_size, len(train_clips[0].scenes))
    params = list(head.parameters())
    if train_bridge:
        params += list(model.bridge.parameters())
    model.bridge.requires_grad_(train_bridge)
    model.bridge.train(train_bridge)
    optimizer = torch.optim.AdamW(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for step in range(steps):
        chosen = [train_clips[int(i)] for i in torch.randint(len(train_clips), (batch,), generator=generator)]
        loss = record_loss(head, final_memory(model, chosen), chosen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            logger.info("memory record step %d loss %.4f", step, loss.item())
    model.bridge.eval()
    model.bridge.requires_grad_(True)
    scores = record_scores(model, head, held_out, batch)
    return {"steps": steps, "bridge_trained": train_bridge, "final_loss": loss.item(), "held_out": asdict(scores)}


def check_held_out(data: Path, held_out: int) -> None:
    """Refuse (LlavaError) a `held_out` count that leaves no video to train on or none to score."""
    videos = len(json.loads((data / "truth.json").read_text())["videos"])
    if not 0 < held_out < videos:
        raise LlavaError(f"--held-out must be between 1 and {videos - 1}: {data} has {videos} videos")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint folder")
    parser.add_argument("--data", type=Path, required=True, help="a llava.data.shapes_dataset folder")
    parser.add_argument("--output", type=Path, required=True, help="the new checkpoint's folder (or the report's)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--positions", type=int, default=8, help="scenes the `scenes` record names in order")
    parser.add_argument("--held-out", type=int, default=100, help="videos (the data's last) scored, not trained on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--probe", action="store_true", help="keep the bridge frozen: measure what its memory keeps, write no model"
    )
    args = parser.parse_args(argv)
    try:
        check_held_out(args.data, args.held_out)
        model = load_model_weights(args.model)[0].eval()
        tokenizer = load_tokenizer(args.model, None)
        clips = memory_clips(model, args.data, args.positions)
        train_clips, held_out = clips[: -args.held_out], clips[-args.held_out :]
        report = fit_record_head(
            model, train_clips, held_out, args.steps, not args.probe, args.batch, args.lr, args.seed
        )
        report |= {"model": str(args.model), "data": str(args.data), "positions": args.positions}
        args.output.mkdir(parents=True, exist_ok=True)
        if not args.probe:
            model.save_pretrained(args.output)
            tokenizer.save_pretrained(args.output)
        write_json_atomic(report, args.output / ("memory_probe.json" if args.probe else "memory_pretraining.json"))
    except (LlavaError, OSError, json.JSONDecodeError) as err:
        return report_error(err)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
