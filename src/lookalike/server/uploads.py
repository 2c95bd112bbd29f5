"""Bounds on uploads: their size in bytes and pixels, how long their headers and body may stall, their memory.

A request body over the byte limit is refused with 413 as soon as its Content-Length or its
stream says so, headers or a body that pause are answered 408, and an image over the pixel limit (by default
:data:`lookalike.images.UPLOAD_MAX_PIXELS`, lower than the indexing limit) is refused with 413 before
its pixels are decoded. At most two images are decoded and embedded at once
(:data:`lookalike.images.DECODING`), and their memory goes back to the system once freed.
"""

from __future__ import annotations

import asyncio
import ctypes
import os

from fastapi import HTTPException, UploadFile
from fastapi.responses import JSONResponse

from lookalike.images import UPLOAD_MAX_BYTES, ImageError, ImageTooLarge

DEFAULT_MAX_UPLOAD = UPLOAD_MAX_BYTES
MULTIPART_SLACK = 64 * 1024  # room for the multipart framing and form fields around the file
BODY_TIMEOUT = 15.0  # seconds a request body may pause before the request is answered 408
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


class UploadTooLarge(HTTPException):
    """413 for an upload over the limit; raised while the body is received too, where FastAPI passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {limit} bytes")


class BodyTimeout(HTTPException):
    """408 for a request body that stops arriving (a Content-Length larger than what is sent)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body incomplete: nothing received for {seconds:g} s")


class BodyLimit:
    """ASGI middleware: JSON 413 for a request body over an upload of ``limit`` bytes plus multipart framing,
    whether its Content-Length says so or it streams past the limit (chunked); 408 when the body pauses
    for ``timeout`` seconds."""

    def __init__(self, app, limit: int, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        most = self.limit + MULTIPART_SLACK
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > most:
            error = UploadTooLarge(self.limit)
            return await JSONResponse({"detail": error.detail}, error.status_code)(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout) from None
            received += len(message.get("body", b""))
            if received > most:
                raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


def stalled_headers_answered_408(seconds: float = BODY_TIMEOUT) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all arrived
    ``seconds`` after it opened or after its last response: with a 408 when part of a request came,
    silently when nothing did (the ASGI app only ever sees complete headers, so it cannot time them)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeout(H11Protocol):
        _timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc) -> None:
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(seconds, self._stalled)

        def _stalled(self) -> None:
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return  # closed, or the headers are in (a stalled body is the app's to answer)
            if self.conn.trailing_data[0]:
                detail = (f"request headers incomplete {seconds:g} s after the connection opened "
                          "or its last answer").encode()
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(detail), detail))
            self.transport.close()

    return HeaderTimeout


def return_freed_images() -> None:
    """Have glibc's malloc map every allocation of 1 MB or more on its own, so that the memory of a
    decoded image goes back to the system when it is freed; by default each server thread's malloc
    arena keeps the peak it reached (8 uploads of 50 Mpx at once: +1,794 MB peak, +724 MB with this).
    Process-wide; nothing where the C library has no ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)


async def read_upload(file: UploadFile, max_upload: int) -> tuple[bytes, str]:
    """The uploaded bytes and base name; 413 over ``max_upload`` bytes, 400 when empty."""
    data = await file.read(max_upload + 1)
    if len(data) > max_upload:
        raise UploadTooLarge(max_upload)
    if not data:
        raise HTTPException(400, "empty upload: not an image")
    return data, os.path.basename(file.filename or "") or "upload"


def refused(name: str, error: ImageError) -> HTTPException:
    """The answer to an upload named ``name`` that cannot be used: 413 over the pixel limit, else 400."""
    if isinstance(error, ImageTooLarge):
        return HTTPException(413, f"{name}: too large: {error.width}x{error.height} pixels exceeds this server's "
                                  f"upload limit of {error.limit:,} pixels (lookalike serve --max-pixels)")
    return HTTPException(400, f"{name}: {error}")
