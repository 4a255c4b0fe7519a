"""Convert a checkpoint in the released VideoLLaMB layout into this project's format.

    python -m llava.model.convert --src checkpoints/videollamb-llava-1.5-7b --dst checkpoints/videollamb-7b

The towers are stored inside the result, whether the source held them or named LanguageBind folders; the weights
keep the source's precision (a bf16 release stays bf16, read once: see `llava.model.builder.load_model_weights`).
The result is written to a temporary folder next to --dst and renamed, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from llava.errors import LlavaError, report_error
from llava.model.builder import load_model_weights, load_tokenizer


def convert(src: Path, dst: Path) -> None:
    if dst.exists():
        raise LlavaError(f"{dst}: already exists; choose another --dst")
    model, report = load_model_weights(src)
    report.log()
    tokenizer = load_tokenizer(src, None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="released-layout checkpoint folder")
    parser.add_argument("--dst", type=Path, required=True, help="output folder (must not exist)")
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst)
    except LlavaError as err:
        return report_error(err)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
