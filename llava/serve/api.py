"""An OpenAI-compatible HTTP API over `ChatSession`: chat completions about a video or an image.

    python -m llava.serve.api --port 8000 --allowed-dir playground/demo
    python -m llava.serve.api --model-path checkpoints/videollamb-llava-1.5-7b --api-key SECRET --port 8000

Then, with the official client:

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="SECRET")
    client.chat.completions.create(model=client.models.list().data[0].id, messages=[{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "file:///abs/path/playground/demo/shapes.mp4"}},
        {"type": "text", "text": "What was in the first scene?"}]}])

Endpoints: GET /v1/models, POST /v1/chat/completions (stream or not), GET /v1/stats (media cache hits,
encodes, rejections), GET /health. Media come as `video_url` / `image_url` parts: file:// paths under an
--allowed-dir, http(s) URLs, or base64 data URLs; one video or image per request. Encoded media are cached
by the sha256 of their bytes, so follow-up questions on the same video skip the encoder. At most
--max-concurrency generations run at once, in worker threads (one with --static-cache); a request that cannot
start within --queue-timeout seconds is answered 503. A conversation that does not fit the model's context (its text
and visual tokens) is answered 400 (code context_length_exceeded), and an answer stops where the context ends
(finish_reason "length"). A request with "evidence": true (openai's client: extra_body={"evidence": True}) gets
the answer's evidence as a top-level "evidence" list of {"start", "end", "score"} (seconds by presentation time, best
first; `llava.serve.evidence`; empty for an image or no media), in the response or, streamed, in the chunk with
the finish_reason; other clients see no change.
Binds 127.0.0.1 unless told otherwise. A request without max_tokens, temperature or top_p
gets --max-new-tokens (256; --default-max-tokens is its older name), --temperature (0: greedy) and --top-p. The
model, frame sampling and generation options are shared with every front end (see `llava.serve.options`). Without
--model-path the bundled demo model answers. A bad model path ends in one `error:` line; FFmpeg's log lines are
silent unless --verbose.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llava.errors import ConfigError, LlavaError, report_error
from llava.logs import set_media_logging
from llava.serve.api_media import MediaCache, MediaError, from_data_url, from_file_url, from_http_url
from llava.serve.api_messages import ChatRequest, parse_chat_request
from llava.serve.chat_session import DEMO_CHECKPOINT, ChatSession, ContextTooLong, GenerationSettings, Prompt, Reply
from llava.serve.options import add_flag, add_inference_options, chat_session_from_options, check_inference_options

log = logging.getLogger("llava.serve.api")
MB = 2**20


@dataclass
class ApiSettings:
    model_id: str = DEMO_CHECKPOINT.name
    api_key: str | None = None
    allowed_dirs: tuple[Path, ...] = ()  # resolved in __post_init__
    max_body_mb: float = 64
    max_video_mb: float = 256  # any fetched media (video or image)
    max_concurrency: int = 2
    queue_timeout: float = 5.0
    cache_size: int = 8
    download_timeout: float = 30.0
    default_max_tokens: int = GenerationSettings.max_new_tokens  # a request's max_tokens when it gives none
    default_temperature: float = GenerationSettings.temperature  # ... its temperature
    default_top_p: float = GenerationSettings.top_p  # ... its top_p

    def __post_init__(self) -> None:
        self.allowed_dirs = tuple(Path(d).resolve() for d in self.allowed_dirs)

    @property
    def defaults(self) -> GenerationSettings:
        return GenerationSettings(
            max_new_tokens=self.default_max_tokens, temperature=self.default_temperature, top_p=self.default_top_p
        )


class ApiError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "code"}}."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.code, self.kind = status, code, kind

    def response(self, headers: dict | None = None) -> JSONResponse:
        body = {"error": {"message": str(self), "type": self.kind, "param": None, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


_END = object()


class _Channel:
    """One request's worker thread -> event loop: the prepared session, streamed text, the reply or error."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ready: asyncio.Future = loop.create_future()  # media cache hit (bool), once the media is encoded
        self.done: asyncio.Future = loop.create_future()  # the Reply
        self.pieces: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()  # set when the client goes away: generation stops early

    def call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed (server shutting down)
            self.cancelled.set()

    def resolve(self, future: asyncio.Future, value=None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if not future.done():
                future.set_exception(error) if error is not None else future.set_result(value)

        self.call(settle)

    def piece(self, text: str) -> None:
        self.call(self.pieces.put_nowait, text)


class ApiServer:
    """The routes and the state they share: the template session, the media cache, the generation slots."""

    def __init__(self, session: ChatSession, settings: ApiSettings) -> None:
        self.session, self.settings = session, settings
        self.cache = MediaCache(settings.cache_size)
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.executor = ThreadPoolExecutor(settings.max_concurrency, thread_name_prefix="llava-api")
        self.counts = {"requests": 0, "completed": 0, "media_encodes": 0, "rejected_overloaded": 0, "active": 0}

    # ----- helpers
    def check_key(self, request: Request) -> None:
        if self.settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        valid = hmac.compare_digest(token.strip().encode(), self.settings.api_key.encode())
        if scheme.lower() != "bearer" or not valid:
            raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", "invalid_api_key")

    async def read_json(self, request: Request) -> dict:
        limit = int(self.settings.max_body_mb * MB)
        declared = request.headers.get("content-length", "")
        too_large = ApiError(
            413, f"the request body is larger than {self.settings.max_body_mb:g} MB", "request_too_large"
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            message = f"the request body is not valid JSON: {type(err).__name__}: {err}"
            raise ApiError(400, message, "invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the request body must be a JSON object", "invalid_request")
        return data

    async def fetch(self, request: ChatRequest):
        ref, settings = request.media, self.settings
        if ref is None:
            return None
        limit, scheme = int(settings.max_video_mb * MB), ref.url.split(":", 1)[0].lower()
        if scheme == "data":
            return await asyncio.to_thread(from_data_url, ref, limit)
        if scheme == "file":
            return await asyncio.to_thread(from_file_url, ref, settings.allowed_dirs, limit)
        if scheme in ("http", "https"):
            download = from_http_url(ref, limit, settings.download_timeout)
            return await asyncio.wait_for(download, settings.download_timeout * 2)
        hint = "use file://, http(s):// or data:"
        raise ApiError(400, f"unsupported {ref.kind} URL scheme {scheme!r}; {hint}", "invalid_url")

    async def acquire(self) -> None:
        """Take a generation slot, waiting at most --queue-timeout seconds; 503 when none frees up."""
        if self.slots.locked():
            try:
                await asyncio.wait_for(self.slots.acquire(), timeout=max(self.settings.queue_timeout, 1e-3))
            except TimeoutError:
                self.counts["rejected_overloaded"] += 1
                raise ApiError(
                    503,
                    f"the server is busy ({self.settings.max_concurrency} generations running); try again later",
                    "server_overloaded",
                    kind="server_error",
                ) from None
        else:
            await self.slots.acquire()
        self.counts["active"] += 1

    def release(self) -> None:
        self.counts["active"] -= 1
        self.slots.release()

    # ----- the worker thread
    def prepare(self, request: ChatRequest, media) -> tuple[ChatSession, Prompt, bool]:
        """A session holding the (cached or freshly encoded) media and the replayed conversation, and its prompt;
        400 when the prompt does not fit the model's context."""
        session, hit = self.session.fork(media=None), False
        if media is not None:
            key = (media.sha256, self.settings.model_id, session.num_frames, media.kind)
            cached = self.cache.get(key)
            hit = cached is not None
            if cached is not None:
                tokens, segments = cached
                session = session.fork(media=tokens, segments=segments, media_token=request.media_token)
            else:
                try:
                    with media.local_path() as path:
                        session.load_video(path) if media.kind == "video" else session.load_image(path)
                except LlavaError as err:
                    raise ApiError(400, f"cannot decode the {media.kind}: {err}", "invalid_media") from err
                assert session.media is not None  # just loaded
                self.cache.put(key, (session.media, session.segments))
        request.replay(session.conversation)
        try:
            return session, session.prompt(), hit
        except ContextTooLong as err:
            raise ApiError(400, str(err), "context_length_exceeded") from err

    def job(self, request: ChatRequest, media, channel: _Channel) -> None:
        try:
            try:
                session, prompt, hit = self.prepare(request, media)
            except BaseException as err:
                channel.resolve(channel.ready, error=err)
                return
            channel.resolve(channel.ready, hit)
            on_text = channel.piece if request.stream else None
            try:
                reply = session.reply(
                    request.settings, on_text=on_text, should_stop=channel.cancelled.is_set, prompt=prompt
                )
                if request.evidence:
                    evidence = session.evidence(request.turns[-1][1], reply.text)
                    reply = replace(reply, evidence=[item.to_dict() for item in evidence])
                channel.resolve(channel.done, reply)
            except BaseException as err:
                channel.resolve(channel.done, error=err)
            channel.call(channel.pieces.put_nowait, _END)
        finally:
            channel.call(self.release)

    # ----- routes
    async def models(self, request: Request) -> Response:
        self.check_key(request)
        return JSONResponse({"object": "list", "data": [self.model_card()]})

    async def model(self, request: Request) -> Response:
        self.check_key(request)
        if request.path_params["model"] != self.settings.model_id:
            raise ApiError(404, f"unknown model {request.path_params['model']!r}", "model_not_found")
        return JSONResponse(self.model_card())

    def model_card(self) -> dict:
        return {"id": self.settings.model_id, "object": "model", "created": 0, "owned_by": "llava"}

    async def stats(self, request: Request) -> Response:
        self.check_key(request)
        body = {"media_cache": self.cache.stats(), **self.counts, "max_concurrency": self.settings.max_concurrency}
        return JSONResponse(body)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def chat_completions(self, request: Request) -> Response:
        self.check_key(request)
        self.counts["requests"] += 1
        body = await self.read_json(request)
        chat = parse_chat_request(body, self.settings.model_id, self.settings.defaults)
        media = await self.fetch(chat)
        await self.acquire()
        channel = _Channel(asyncio.get_running_loop())
        try:
            self.executor.submit(self.job, chat, media, channel)
        except RuntimeError:
            self.release()
            raise
        try:
            hit = await channel.ready
            if hit is False and media is not None:
                self.counts["media_encodes"] += 1
            headers = {"X-Media-Cache": "none" if media is None else ("hit" if hit else "miss")}
            if chat.stream:
                return StreamingResponse(self.events(chat, channel), media_type="text/event-stream", headers=headers)
            reply = await channel.done
        except BaseException:
            channel.cancelled.set()
            raise
        self.counts["completed"] += 1
        return JSONResponse(completion(chat, reply), headers=headers)

    async def events(self, chat: ChatRequest, channel: _Channel):
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

        def event(delta: dict | None, finish: str | None = None, **extra) -> str:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            body = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": chat.model,
                "choices": choices,
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        try:
            yield event({"role": "assistant", "content": ""})
            while (piece := await channel.pieces.get()) is not _END:
                yield event({"content": piece})
            try:
                reply = await channel.done
            except Exception as err:  # headers are gone: report in the stream
                log.exception("generation failed")
                yield f"data: {json.dumps({'error': {'message': str(err), 'type': 'server_error', 'code': None}})}\n\n"
            else:
                yield event({}, reply.finish_reason, **evidence_field(reply))
                if chat.include_usage:
                    yield event(None, usage=usage(reply))
                self.counts["completed"] += 1
            yield "data: [DONE]\n\n"
        finally:
            channel.cancelled.set()


def usage(reply: Reply) -> dict:
    total = reply.prompt_tokens + reply.completion_tokens
    return {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens, "total_tokens": total}


def evidence_field(reply: Reply) -> dict:
    """{"evidence": [...]} when the request asked for it, else nothing."""
    return {} if reply.evidence is None else {"evidence": reply.evidence}


def completion(chat: ChatRequest, reply: Reply) -> dict:
    message = {"role": "assistant", "content": reply.text}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": chat.model,
        "choices": [choice],
        "usage": usage(reply),
        **evidence_field(reply),
    }


def _guard(handler):
    """Turn ApiError / MediaError into OpenAI-style answers, anything unexpected into a 500 without a traceback."""

    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            return err.response({401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "1"}}.get(err.status))
        except MediaError as err:
            return ApiError(err.status, str(err), err.code).response()
        except TimeoutError:
            return ApiError(400, "downloading the media took too long", "download_failed").response()
        except Exception:
            log.exception("unexpected error in %s", request.url.path)
            return ApiError(500, "internal server error", "internal_error", kind="server_error").response()

    return guarded


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code).response()


def create_app(session: ChatSession, settings: ApiSettings | None = None) -> Starlette:
    """The ASGI app. `session` is a template ChatSession (model, tokenizer, processor, num_frames, conv_mode):
    each request works on a fork of it, so a subclass passed here (e.g. a slow one in tests) is used as is."""
    server = ApiServer(session, settings or ApiSettings())

    @asynccontextmanager
    async def lifespan(app):
        yield
        server.executor.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/v1/models", _guard(server.models), methods=["GET"]),
        Route("/v1/models/{model:path}", _guard(server.model), methods=["GET"]),
        Route("/v1/chat/completions", _guard(server.chat_completions), methods=["POST"]),
        Route("/v1/stats", _guard(server.stats), methods=["GET"]),
        Route("/health", _guard(server.health), methods=["GET"]),
    ]
    handlers: dict[Any, Any] = {HTTPException: _http_error}  # starlette's hint takes handlers of any Exception
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.server = server
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m llava.serve.api", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    add("--port", type=int, default=8000)
    add("--model-name", default=None, help="model id the API reports (default: the checkpoint folder's name)")
    add(
        "--api-key",
        default=os.environ.get("LLAVA_API_KEY"),
        help="require Authorization: Bearer KEY (default: the LLAVA_API_KEY environment variable)",
    )
    add("--allowed-dir", action="append", default=[], help="directory file:// URLs may read from (repeatable)")
    add("--max-body-mb", type=float, default=64, help="largest request body")
    add("--max-video-mb", type=float, default=256, help="largest video or image fetched from a URL or file")
    add(
        "--max-concurrency",
        type=int,
        default=None,
        help="generations running at once (default 2; 1 with --static-cache)",
    )
    add("--queue-timeout", type=float, default=5, help="seconds a request may wait for a slot before 503")
    add("--cache-size", type=int, default=8, help="encoded videos/images kept for follow-up questions (0 = off)")
    add("--download-timeout", type=float, default=30, help="seconds for each network step of an http(s) download")
    add_inference_options(parser)  # --max-new-tokens, --temperature, --top-p: for requests that give none
    add_flag(
        parser,
        "--default-max-tokens",
        dest="max_new_tokens",
        type=int,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
    )  # the older name of --max-new-tokens
    add("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_concurrency is None:
        args.max_concurrency = 1 if args.static_cache else 2
    elif args.static_cache and args.max_concurrency > 1:
        parser.error(
            "--static-cache runs one generation at a time (threads cannot share its compiled decoding "
            "step on a GPU): use --max-concurrency 1"
        )
    check_inference_options(parser, args)
    positive = {
        "--max-body-mb": args.max_body_mb,
        "--max-video-mb": args.max_video_mb,
        "--max-concurrency": args.max_concurrency,
        "--download-timeout": args.download_timeout,
    }
    for flag, value in positive.items():
        if value <= 0:
            parser.error(f"{flag} must be positive")
    if args.queue_timeout < 0 or args.cache_size < 0:
        parser.error("--queue-timeout and --cache-size must not be negative")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    return args


def settings_from_args(args: argparse.Namespace) -> ApiSettings:
    for folder in args.allowed_dir:
        if not Path(folder).is_dir():
            raise ConfigError(f"--allowed-dir {folder}: no such directory")
    model_id = args.model_name or Path(args.model_path or DEMO_CHECKPOINT).resolve().name
    return ApiSettings(
        model_id=model_id,
        api_key=args.api_key or None,
        allowed_dirs=tuple(args.allowed_dir),
        max_body_mb=args.max_body_mb,
        max_video_mb=args.max_video_mb,
        max_concurrency=args.max_concurrency,
        queue_timeout=args.queue_timeout,
        cache_size=args.cache_size,
        download_timeout=args.download_timeout,
        default_max_tokens=args.max_new_tokens,
        default_temperature=args.temperature,
        default_top_p=args.top_p,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    set_media_logging(args.verbose)
    try:
        settings = settings_from_args(args)
        session = chat_session_from_options(args)
    except (LlavaError, OSError, ValueError) as err:
        return report_error(err)
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host} without --api-key: anyone who can reach it may use it", file=sys.stderr)
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(session, settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
