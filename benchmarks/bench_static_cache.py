"""Chat turns with transformers' growing (dynamic) KV cache against the preallocated static one (`--static-cache`).

    python benchmarks/bench_static_cache.py                                   # bundled demo model, CPU or GPU
    python benchmarks/bench_static_cache.py --device cuda --model-path checkpoints/videollamb-llava-1.5-7b \\
        --video-file clip.mp4 --out benchmarks/results/static_cache.json

Loads the model twice (once per cache kind), encodes the same video, and asks the same --turns questions in one
conversation, greedily. Every other turn runs in a new thread, as the gradio demo and the API server do, to show
that the compiled decoding step (on CUDA transformers compiles it for the static cache) serves other threads too.
Per turn: seconds, new tokens, tokens/s. The first static turn on a GPU includes the compilation; the static
cache is sized for the whole context, so later turns, with longer prompts, reuse the compiled step. Prints a
table and writes JSON, including whether both kinds gave the same answers (on a GPU in bf16 they may differ in
rounding, so this is reported, not required).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

from llava.errors import LlavaError  # noqa: E402
from llava.serve.chat_session import ChatSession, GenerationSettings  # noqa: E402

QUESTIONS = [
    "Describe the video in one sentence.",
    "What is shown first?",
    "What is shown last?",
    "Which shapes appear in the video?",
    "What colour is the background?",
    "Describe the video in one sentence.",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--video-file", default=str(_ROOT / "playground" / "demo" / "shapes.mp4"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--turns", type=int, default=4, help=f"questions asked (at most {len(QUESTIONS)})")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/static_cache.json"))
    args = parser.parse_args(argv)
    if not 1 <= args.turns <= len(QUESTIONS):
        parser.error(f"--turns must be 1 to {len(QUESTIONS)}")
    return args


def timed_turn(session: ChatSession, question: str, settings: GenerationSettings, in_thread: bool) -> dict:
    """Ask one question (in a new thread if asked) and time the reply."""
    outcome: dict = {}

    def work() -> None:
        start = time.perf_counter()
        session.add_question(question)
        try:
            outcome["reply"] = session.reply(settings)
        except Exception as err:  # handed to the caller's thread, which raises it
            outcome["error"] = err
        outcome["seconds"] = time.perf_counter() - start

    if in_thread:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    else:
        work()
    if "error" in outcome:
        raise outcome["error"]
    reply = outcome["reply"]
    return {"question": question, "thread": "new" if in_thread else "main", "seconds": outcome["seconds"],
            "prompt_tokens": reply.prompt_tokens, "new_tokens": reply.completion_tokens,
            "tokens_per_s": reply.completion_tokens / outcome["seconds"], "answer": reply.text}


def run_kind(args: argparse.Namespace, static: bool) -> dict:
    start = time.perf_counter()
    session = ChatSession.from_pretrained(args.model_path, device=args.device, static_kv_cache=static)
    session.load_video(args.video_file)
    load_s = time.perf_counter() - start
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    turns = [timed_turn(session, q, settings, in_thread=i % 2 == 1) for i, q in enumerate(QUESTIONS[:args.turns])]
    generation = session.model.language_model.generation_config
    return {"cache": "static" if static else "dynamic", "device": str(session.device), "load_s": load_s,
            "cache_implementation": generation.cache_implementation, "max_cache_len": generation.max_cache_len,
            "turns": turns}


def table(kinds: list[dict]) -> str:
    dynamic, static = kinds
    lines = ["turn | thread | prompt tokens | dynamic s | static s | new tokens (dyn/static) | static speed-up",
             "--- | --- | --- | --- | --- | --- | ---"]
    for i, (d, s) in enumerate(zip(dynamic["turns"], static["turns"]), 1):
        lines.append(f"{i} | {d['thread']} | {d['prompt_tokens']} | {d['seconds']:.4f} | {s['seconds']:.4f} | "
                     f"{d['new_tokens']}/{s['new_tokens']} | {d['seconds'] / s['seconds']:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    try:
        kinds = [run_kind(args, static=False), run_kind(args, static=True)]
    except (LlavaError, OSError) as err:  # a missing or broken checkpoint or video
        sys.exit(f"error: {' '.join(str(err).splitlines())}")
    result = {"model_path": args.model_path or "bundled demo model", "video": args.video_file,
              "max_new_tokens": args.max_new_tokens, "kinds": kinds,
              "same_answers": [t["answer"] for t in kinds[0]["turns"]] == [t["answer"] for t in kinds[1]["turns"]]}
    print(f"device {kinds[0]['device']}; same answers with both caches: {result['same_answers']}")
    print(table(kinds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
