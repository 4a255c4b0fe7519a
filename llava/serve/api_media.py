"""Media for the HTTP API: fetch a video or image URL into bytes, and the LRU cache of encoded media.

Three kinds of URL are accepted: `file://` paths under the allowed directories (symlinks resolved),
`http(s)://` downloads (size limit, timeout) and base64 `data:` URLs. What is fetched is hashed (sha256), so
the same bytes reached by any URL share one cache entry of projected visual tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
from torch import Tensor

from llava.serve.evidence import VideoSegments

SUFFIXES = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "video/mpeg": ".mpg",
    "image/gif": ".gif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
}


class MediaError(Exception):
    """A media URL that cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class MediaRef:
    kind: str  # "video" or "image"
    url: str


@dataclass
class Media:
    """Fetched media: the bytes (data and http URLs) or the resolved path (file URLs), and their sha256."""

    kind: str
    sha256: str
    suffix: str
    data: bytes | None = None
    path: Path | None = None

    @contextmanager
    def local_path(self) -> Iterator[Path]:
        """A path to decode from: the file itself, or a temp file holding the bytes, removed afterwards."""
        if self.path is not None:
            yield self.path
            return
        handle, name = tempfile.mkstemp(suffix=self.suffix, prefix="llava-api-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(self.data or b"")
            yield Path(name)
        finally:
            os.unlink(name)


def _suffix(mime: str | None, url_path: str, kind: str) -> str:
    mime = (mime or "").split(";")[0].strip().lower()
    if mime in SUFFIXES:
        return SUFFIXES[mime]
    suffix = Path(url_path).suffix.lower()
    if suffix and len(suffix) <= 6:
        return suffix
    return mimetypes.guess_extension(mime) or (".mp4" if kind == "video" else ".png")


def _too_large(what: str, limit: int) -> MediaError:
    return MediaError(413, f"{what} is larger than the limit of {limit / 2**20:g} MB", "media_too_large")


def _media(ref: MediaRef, data: bytes, suffix: str, path: Path | None = None) -> Media:
    digest = hashlib.sha256(data).hexdigest()
    return Media(ref.kind, digest, suffix, data=None if path is not None else data, path=path)


def from_data_url(ref: MediaRef, max_bytes: int) -> Media:
    """`data:video/mp4;base64,...` -> the decoded bytes."""
    header, sep, payload = ref.url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaError(400, "a data URL must look like data:<mime type>;base64,<data>", "invalid_data_url")
    mime = header[: -len(";base64")]
    if mime and not mime.startswith((f"{ref.kind}/", "application/octet-stream")):
        message = f"a {ref.kind}_url data URL must hold a {ref.kind}/* type, not {mime}"
        raise MediaError(400, message, "invalid_data_url")
    if len(payload) * 3 // 4 > max_bytes:
        raise _too_large(f"the {ref.kind} in the data URL", max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MediaError(400, f"the data URL is not valid base64: {err}", "invalid_data_url") from err
    if not data:
        raise MediaError(400, "the data URL holds no data", "invalid_data_url")
    return _media(ref, data, _suffix(mime, "", ref.kind))


def from_file_url(ref: MediaRef, allowed_dirs: tuple[Path, ...], max_bytes: int) -> Media:
    """`file:///path` -> the file, only if it lies (symlinks resolved) under one of `allowed_dirs`."""
    try:
        parsed = urlparse(ref.url)
        if parsed.netloc not in ("", "localhost"):
            raise MediaError(400, f"file URLs must name a local path, not host {parsed.netloc!r}", "invalid_url")
        path = Path(unquote(parsed.path)).resolve()
        if not any(path.is_relative_to(folder) for folder in allowed_dirs):
            hint = "" if allowed_dirs else " (the server allows no directories; start it with --allowed-dir)"
            raise MediaError(403, f"{ref.url} is not under an allowed directory{hint}", "path_not_allowed")
        if not path.is_file():
            raise MediaError(400, f"{ref.url}: no such file", "media_not_found")
        if path.stat().st_size > max_bytes:
            raise _too_large(str(path), max_bytes)
        data = path.read_bytes()
    except (OSError, ValueError) as err:  # a name too long, a NUL byte, a malformed host, unreadable
        raise MediaError(400, f"{ref.url!r}: not a usable file URL ({err})", "invalid_url") from None
    return _media(ref, data, path.suffix.lower() or ".mp4", path=path)


async def from_http_url(ref: MediaRef, max_bytes: int, timeout: float) -> Media:
    """Download an http(s) URL, at most `max_bytes`, giving up after `timeout` seconds per network step."""
    chunks, size = [], 0
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=5) as client:
            async with client.stream("GET", ref.url) as response:
                if response.status_code != 200:
                    message = f"{ref.url}: download failed with HTTP {response.status_code}"
                    raise MediaError(400, message, "download_failed")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise _too_large(ref.url, max_bytes)
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_large(ref.url, max_bytes)
                    chunks.append(chunk)
                mime = response.headers.get("content-type")
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        message = f"{ref.url}: download failed: {type(err).__name__} {err}".strip()
        raise MediaError(400, message, "download_failed") from err
    if not size:
        raise MediaError(400, f"{ref.url}: the download is empty", "download_failed")
    return _media(ref, b"".join(chunks), _suffix(mime, urlparse(ref.url).path, ref.kind))


class MediaCache:
    """A small thread-safe LRU of encoded media (projected visual tokens, and a video's segments for evidence),
    keyed by (sha256, model id, num_frames, kind)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[tuple, tuple[Tensor, VideoSegments | None]] = OrderedDict()
        self.hits = self.misses = 0
        self.lock = threading.Lock()

    def get(self, key: tuple) -> tuple[Tensor, VideoSegments | None] | None:
        with self.lock:
            if key in self.entries:
                self.entries.move_to_end(key)
                self.hits += 1
                return self.entries[key]
            self.misses += 1
            return None

    def put(self, key: tuple, tokens: tuple[Tensor, VideoSegments | None]) -> None:
        with self.lock:
            if self.capacity <= 0:
                return
            self.entries[key] = tokens
            self.entries.move_to_end(key)
            while len(self.entries) > self.capacity:
                self.entries.popitem(last=False)

    def stats(self) -> dict:
        with self.lock:
            return {"hits": self.hits, "misses": self.misses, "entries": len(self.entries), "capacity": self.capacity}
