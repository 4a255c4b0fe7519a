"""Peak resident memory and time to load 1B- and 7B-size random checkpoints, against their size on disk.

    python benchmarks/bench_load.py --out benchmarks/results/load.json                  # 1b and 7b, bf16
    python benchmarks/bench_load.py --sizes 1b --modes bf16,8bit,4bit,float32 --out benchmarks/results/load_1b.json
    python benchmarks/bench_load.py --tiny --out /tmp/load.json                          # the tests' quick run

For each size a random bf16 checkpoint in this project's format is written into --work (a temporary folder by
default, deleted afterwards unless --keep), one tensor at a time into 2 GB shards, with the bundled demo model's
tokenizer. Sizes: `7b` is the released layout (Vicuna-7B text model, two ViT-L/14 LanguageBind towers, the bridge:
7.5B parameters, 15 GB); `1b` the same towers and bridge with a TinyLlama-1.1B-shaped text model (2.0B parameters,
4 GB); `tiny` a 0.1B model for the tests. The 7B needs 15 GB of free disk and about 16 GB of free memory.

Each load runs in a fresh child process: it first loads the bundled demo model (so the libraries' lazily imported
code is in memory), drops the checkpoint's pages from the page cache (`posix_fadvise`, this file only: the load
reads from disk), then calls `load_pretrained_model(folder, device="cpu", ...)`, which also checks every weight
for NaN and so reads all of them. Reported: seconds; the process's peak resident memory (VmHWM of
/proc/self/status, which counts the memory-mapped checkpoint pages the model uses as well as copies; getrusage's
ru_maxrss would carry the parent's peak across fork and exec) in total and above the resident memory just before
the load; both against the checkpoint's size on disk; the model's own bytes
(parameters are counted unquantized).
Modes: `bf16` (the default dtype, the checkpoint's own), `float32` (widened on request: twice the bytes, for
contrast), `8bit` / `4bit` (bitsandbytes on the CPU; the towers, bridge and output layer stay unquantized).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

GB = 1e9
SHARD_BYTES = 2 * 10**9
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json")
MODES = {"bf16": {}, "float32": {"dtype": "float32"}, "8bit": {"load_8bit": True}, "4bit": {"load_4bit": True}}


def size_config(size: str):
    """VideoLLaMBConfig of a named size (bf16)."""
    from llava.model.presets import videollamb_7b_config

    config = videollamb_7b_config()
    text = config.text_config
    if size == "1b":  # TinyLlama-1.1B's shape
        text.hidden_size, text.intermediate_size, text.num_hidden_layers = 2048, 5632, 22
        text.num_attention_heads, text.num_key_value_heads = 32, 4
    elif size == "tiny":  # the towers shrunk too: a 0.1B model, 0.2 GB
        text.hidden_size, text.intermediate_size, text.num_hidden_layers, text.vocab_size = 1024, 2816, 6, 8000
        text.num_attention_heads = text.num_key_value_heads = 16
        vision = config.vision_config
        vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers = 256, 1024, 4
        vision.num_attention_heads = 4
        bridge = config.bridge_config
        bridge.hidden_size, bridge.intermediate_size, bridge.num_attention_heads = 256, 1024, 4
    elif size != "7b":
        raise ValueError(f"unknown size {size!r}; valid: tiny, 1b, 7b")
    config.dtype = "bfloat16"
    return config


def write_random_checkpoint(size: str, folder: Path, seed: int = 0) -> int:
    """A random bf16 checkpoint of `size` (config, shards, index, the demo tokenizer); returns its bytes on disk.
    Holds at most one shard in memory: the shapes come from a model built on the meta device."""
    import torch
    from safetensors.torch import save_file
    from transformers import initialization as init

    from llava.model.checkpoint import bundled_checkpoint
    from llava.model.videollamb import VideoLLaMBForCausalLM

    config = size_config(size)
    with torch.device("meta"), init.no_init_weights():
        shapes = {name: t.shape for name, t in VideoLLaMBForCausalLM(config).state_dict().items()}
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}

    def flush() -> None:
        name = f"model-{len(set(weight_map.values())) + 1:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        shard.clear()

    for name, shape in shapes.items():
        shard[name] = torch.empty(shape, dtype=torch.bfloat16).normal_(0.0, 0.02, generator=generator)
        if sum(t.nbytes for t in shard.values()) >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        if (bundled_checkpoint() / name).exists():
            shutil.copy2(bundled_checkpoint() / name, folder / name)
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def drop_from_page_cache(folder: Path) -> None:
    """Evict the checkpoint's own pages from the page cache (nothing else's), so the load reads from disk."""
    for file in folder.glob("*.safetensors"):
        with open(file, "rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def memory_status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes: VmRSS (resident now) or VmHWM (its peak).
    VmHWM belongs to the process's own address space, so unlike getrusage's ru_maxrss it does not carry the peak
    of the parent that started it (Linux keeps ru_maxrss across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(folder: Path, mode: str) -> dict:
    """In a fresh process: one load of `folder` in `mode`, measured."""
    import torch

    from llava.model.builder import load_pretrained_model, model_shapes
    from llava.model.checkpoint import bundled_checkpoint

    options = dict(MODES[mode])
    if "dtype" in options:
        options["dtype"] = getattr(torch, options["dtype"])
    load_pretrained_model(bundled_checkpoint(), device="cpu")  # warm-up: lazily imported code, tokenizer code
    drop_from_page_cache(folder)
    before = memory_status("VmRSS")
    start = time.perf_counter()
    _, model, _, _ = load_pretrained_model(folder, device="cpu", **options)
    seconds = time.perf_counter() - start
    peak = memory_status("VmHWM")
    tensors = [*model.parameters(), *model.buffers()]
    return {"mode": mode, "load_s": round(seconds, 2), "rss_before_load": before, "peak_rss": peak,
            "rss_after_load": memory_status("VmRSS"), "model_bytes": sum(t.nbytes for t in tensors),
            "parameters": sum(math.prod(shape) for shape in model_shapes(model.config).values()),
            "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in tensors})}


def measure(folder: Path, mode: str, disk_bytes: int) -> dict:
    """Run `child` in a fresh interpreter; add the ratios to the checkpoint's size on disk."""
    run = subprocess.run([sys.executable, __file__, "--child", str(folder), "--mode", mode], capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if run.returncode != 0:
        raise RuntimeError(f"the {mode} load of {folder} failed:\n{run.stderr[-3000:]}")
    row = json.loads(run.stdout.strip().splitlines()[-1])
    row["checkpoint_bytes"] = disk_bytes
    row["peak_over_checkpoint"] = round(row["peak_rss"] / disk_bytes, 3)
    row["growth_over_checkpoint"] = round((row["peak_rss"] - row["rss_before_load"]) / disk_bytes, 3)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| size | mode | parameters | checkpoint GB | load s | peak RSS GB | peak / checkpoint | "
             "growth / checkpoint | model GB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['mode']} | {r['parameters'] / 1e9:.2f}B | {r['checkpoint_bytes'] / GB:.2f} | "
                     f"{r['load_s']:.1f} | {r['peak_rss'] / GB:.2f} | {r['peak_over_checkpoint']:.2f}x | "
                     f"{r['growth_over_checkpoint']:.2f}x | {r['model_bytes'] / GB:.2f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1b,7b", help="comma-separated: tiny, 1b, 7b")
    parser.add_argument("--modes", default="bf16", help=f"comma-separated: {', '.join(MODES)}")
    parser.add_argument("--tiny", action="store_true", help="the tests' run: --sizes tiny --modes bf16,float32")
    parser.add_argument("--work", type=Path, default=None, help="where checkpoints are written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints written (reused by a later run)")
    parser.add_argument("--out", type=Path, default=_ROOT / "benchmarks" / "results" / "load.json")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="bf16", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tiny:
        args.sizes, args.modes = "tiny", "bf16,float32"
    unknown = [m for m in args.modes.split(",") if m not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; valid: {', '.join(MODES)}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.mode)))
        return {}
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-load-"))
    rows = []
    try:
        for size in args.sizes.split(","):
            folder = work / f"random-{size}"
            if not (folder / "config.json").exists():
                shutil.rmtree(folder, ignore_errors=True)
                start = time.perf_counter()
                write_random_checkpoint(size, folder)
                print(f"wrote {folder} in {time.perf_counter() - start:.0f} s", flush=True)
            disk = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
            for mode in args.modes.split(","):
                rows.append({"size": size, **measure(folder, mode, disk)})
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        if not args.keep:
            for size in args.sizes.split(","):
                shutil.rmtree(work / f"random-{size}", ignore_errors=True)
            if args.work is None:
                shutil.rmtree(work, ignore_errors=True)
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "rows": rows}
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
