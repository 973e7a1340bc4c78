"""Upload guards: a body-size cap before parsing, content sniffing, a header-size check before decoding,
and optional API keys with per-key rate limits."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from susik.runtime.image_io import ImageLoadError, load_image
from susik.serve.errors import ApiError, error_body

# What phones and browsers upload. Pillow's rarer decoders stay closed to the internet.
SIGNATURES: tuple[tuple[str, bytes, int], ...] = (
    ("JPEG", b"\xff\xd8\xff", 0),
    ("PNG", b"\x89PNG\r\n\x1a\n", 0),
    ("WEBP", b"WEBP", 8),
    ("BMP", b"BM", 0),
)


class _BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 when Content-Length or the bytes actually streamed exceed `max_bytes`.

    Starlette would otherwise spool a multipart body of any size to disk before the handler runs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_too_large(send, self.max_bytes)
            return
        received, exceeded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:  # whatever the app answers to a cut-off body is replaced by our 413
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await _send_too_large(send, self.max_bytes)


async def _send_too_large(send: Send, max_bytes: int) -> None:
    body = json.dumps(error_body("payload_too_large", f"request body over {max_bytes} bytes")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def sniff_format(data: bytes) -> str | None:
    """The image format the bytes start with; the client's Content-Type is never trusted."""
    for name, magic, offset in SIGNATURES:
        if data[offset : offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def decode_upload(data: bytes, max_pixels: int) -> tuple[np.ndarray, str]:
    """Sniff, check the pixel count from the header, then decode with only the sniffed format allowed."""
    image_format = sniff_format(data)
    if image_format is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"not an image in an accepted format ({', '.join(s[0] for s in SIGNATURES)})",
        )
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as header:
            width, height = header.size
    except Image.DecompressionBombError as error:  # Pillow's own limit, hit while reading the header
        raise ApiError(413, "image_too_large", str(error)) from None
    except Exception as error:  # any parser failure on hostile bytes is the client's problem
        raise ApiError(422, "bad_image", f"cannot read the {image_format} header: {error}") from None
    if width * height > max_pixels:
        raise ApiError(413, "image_too_large", f"{width}x{height} is over {max_pixels} pixels")
    try:
        return load_image(data, formats=[image_format], max_pixels=max_pixels), image_format
    except ImageLoadError as error:
        raise ApiError(422, "bad_image", str(error)) from None


class RateLimiter:
    """API keys (off when none are configured) and a token bucket per key, refilled continuously."""

    def __init__(self, keys: list[str], per_minute: int) -> None:
        self.keys = frozenset(keys)
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str | None) -> None:
        if not self.keys:
            return
        if key not in self.keys:
            raise ApiError(401, "unauthorized", "missing or unknown X-API-Key")
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                raise ApiError(
                    429, "rate_limited", f"over {self.capacity:.0f} requests per minute for this key"
                )
            self._buckets[key] = (tokens - 1, now)
