"""Command-line options every serving front end shares."""

from __future__ import annotations

import argparse

from llava.conversation import DEFAULT_TEMPLATE, TEMPLATES


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """--conv-mode (the prompt template) and --device (where the model runs)."""
    parser.add_argument("--conv-mode", default=DEFAULT_TEMPLATE, choices=sorted(TEMPLATES), help="prompt template")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
