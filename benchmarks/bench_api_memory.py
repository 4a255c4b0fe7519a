"""Memory of the OpenAI-compatible API server under sustained concurrent load.

    python benchmarks/bench_api_memory.py                        # bundled demo model, 20 rounds of 16 clients
    python benchmarks/bench_api_memory.py --rounds 2 --clients 4 --out benchmarks/results/api_memory.json

Starts the real server (`python -m llava.serve.api`) in its own process on a free loopback port, then runs
--rounds rounds; in each, --clients threads post a chat completion at once, each with a different synthetic video
sent as a base64 data URL (every round's videos are new, so the media cache keeps evicting). After each round
it reads the server's resident memory (VmRSS) and peak (VmHWM) from /proc, and the media cache size from
/v1/stats. Aim (reported, not asserted): the resident memory after the last round within 10% of that after the
first, i.e. memory stays bounded however many different videos arrive. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT))

from llava.progress import progress_bar  # noqa: E402

QUESTION = "Describe the video in one sentence."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-path", default=None, help="checkpoint folder (default: the bundled demo model)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=16, help="concurrent requests per round")
    parser.add_argument("--max-concurrency", type=int, default=2, help="the server's generation slots")
    parser.add_argument("--cache-size", type=int, default=8, help="the server's media cache entries")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/api_memory.json"))
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.clients < 1 or args.max_concurrency < 1 or args.cache_size < 1:
        parser.error("--rounds, --clients, --max-concurrency and --cache-size must be at least 1")
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "llava.serve.api", "--port", str(port), "--max-concurrency",
               str(args.max_concurrency), "--cache-size", str(args.cache_size), "--queue-timeout", "600",
               "--log-level", "warning"]
    if args.model_path:
        command += ["--model-path", args.model_path]
    server = subprocess.Popen(command, cwd=_ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the API server exited with code {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("error: the API server did not start within 120 s")


def round_videos(folder: Path, round_index: int, clients: int) -> list[str]:
    """`clients` new synthetic videos for one round, as data URLs."""
    from llava.data.shapes_dataset import main as synthesize

    out = folder / f"round{round_index}"
    synthesize(["--out", str(out), "--num-videos", str(clients), "--seed", str(5000 + round_index),
                "--min-scenes", "1", "--max-scenes", "3", "--quiet"])
    return ["data:video/mp4;base64," + base64.b64encode(p.read_bytes()).decode()
            for p in sorted((out / "videos").glob("*.mp4"))]


def post(base_url: str, model: str, url: str, max_tokens: int) -> int:
    body = {"model": model, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                                      {"type": "text", "text": QUESTION}]}]}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=600).status_code


def run(args: argparse.Namespace) -> dict:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = start_server(args, port)
    model = httpx.get(f"{base_url}/v1/models", timeout=10).json()["data"][0]["id"]
    rounds = [{"round": 0, "requests": 0, "ok": 0, "seconds": 0.0, **proc_memory_mb(server.pid), "cache_entries": 0}]
    try:
        with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            for r in progress_bar(range(1, args.rounds + 1), desc="rounds", unit="round"):
                urls = round_videos(Path(tmp), r, args.clients)
                started = time.perf_counter()
                codes = list(pool.map(lambda u: post(base_url, model, u, args.max_tokens), urls))
                seconds = time.perf_counter() - started
                stats = httpx.get(f"{base_url}/v1/stats", timeout=10).json()
                rounds.append({"round": r, "requests": len(codes), "ok": codes.count(200), "seconds": seconds,
                               "other_codes": sorted(c for c in codes if c != 200), **proc_memory_mb(server.pid),
                               "cache_entries": stats["media_cache"]["entries"]})
    finally:
        server.terminate()
        server.wait(30)
    first, last = rounds[1], rounds[-1]
    growth = last["rss_mb"] / first["rss_mb"]
    return {"model_path": args.model_path or "bundled demo model", "clients": args.clients,
            "max_concurrency": args.max_concurrency, "cache_size": args.cache_size, "rounds": rounds,
            "rss_last_over_first": growth, "aim_met": growth <= 1.10}


def print_table(result: dict) -> None:
    print(f"{result['clients']} concurrent clients per round, {result['max_concurrency']} generation slots, "
          f"media cache of {result['cache_size']}")
    print(f"{'round':>5} {'ok':>7} {'seconds':>8} {'RSS MB':>8} {'peak MB':>8} {'cached':>7}")
    for r in result["rounds"]:
        ok = f"{r['ok']}/{r['requests']}" if r["requests"] else "-"
        print(f"{r['round']:>5} {ok:>7} {r['seconds']:>8.1f} {r['rss_mb']:>8.0f} {r['peak_rss_mb']:>8.0f} "
              f"{r['cache_entries']:>7}")
    verdict = "met" if result["aim_met"] else "NOT met"
    print(f"resident memory after the last round / after the first: {result['rss_last_over_first']:.3f}x "
          f"(aim <= 1.10x: {verdict})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
