"""Bounds on uploads (server/uploads.py), without a model: the body limit as ASGI middleware in front
of an app that reads the whole body, an upload read to exactly its limit, and the answers to uploads
that cannot be used."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from fastapi import FastAPI, HTTPException, Request, UploadFile

from lookalike.images import ImageError, ImageTooLarge
from lookalike.server.uploads import (DEFAULT_MAX_UPLOAD, MULTIPART_SLACK, BodyLimit, read_upload, refused)


async def echo_length(scope, receive, send):
    """An app that reads the whole body and answers its length (and refuses what is not a request)."""
    assert scope["type"] == "http" and scope["method"] in ("GET", "POST")
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def call(app, chunks, length=None, pause_after=None, kind="http"):
    """(status, body) of one request whose body arrives in ``chunks`` (with a Content-Length header of
    ``length``); after ``pause_after`` chunks the client stops sending."""
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": kind, "method": "POST", "path": "/", "headers": headers}
    sent, answer = list(chunks), {}

    async def receive():
        if pause_after is not None and not sent[pause_after:]:
            await asyncio.sleep(3600)
        body = sent.pop(0) if sent else b""
        return {"type": "http.request", "body": body, "more_body": bool(sent)}

    async def send(message):
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] = answer.get("body", b"") + message.get("body", b"")

    async def run():
        try:
            await app(scope, receive, send)
        except HTTPException as e:  # raised while the body arrives: FastAPI answers it
            answer.update(status=e.status_code, body=json.dumps({"detail": e.detail}).encode())

    asyncio.run(run())
    return answer["status"], answer["body"]


LIMIT = 1000


def test_a_body_up_to_the_limit_and_its_framing_is_passed_on_one_byte_more_is_413():
    app = BodyLimit(echo_length, limit=LIMIT)
    most = LIMIT + 64 * 1024  # the multipart framing's room, 64 KiB
    assert MULTIPART_SLACK == 64 * 1024
    assert call(app, [b"x" * most], length=most) == (200, str(most).encode())
    status, body = call(app, [b"x" * (most + 1)], length=most + 1)
    assert status == 413 and json.loads(body) == {"detail": "upload too large: the limit is 1000 bytes"}


def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read():
    app = BodyLimit(echo_length, limit=LIMIT)
    status, body = call(app, [], length=LIMIT + MULTIPART_SLACK + 1)  # nothing sent: not waited for
    assert status == 413 and json.loads(body)["detail"] == "upload too large: the limit is 1000 bytes"


def test_a_body_streamed_past_the_limit_without_a_length_is_refused_as_it_arrives():
    app = BodyLimit(echo_length, limit=LIMIT)
    most = LIMIT + MULTIPART_SLACK
    assert call(app, [b"x" * (most - 10), b"y" * 10]) == (200, str(most).encode())  # exactly the limit
    status, body = call(app, [b"x" * (most - 10), b"y" * 11])
    assert status == 413 and json.loads(body)["detail"] == "upload too large: the limit is 1000 bytes"
    status, _ = call(app, [b"x"] * 10, length="12x")  # a length that is not a number is not trusted
    assert status == 200


def test_a_body_that_pauses_is_answered_408_with_its_seconds():
    app = BodyLimit(echo_length, limit=LIMIT, timeout=0.2)
    status, body = call(app, [b"x" * 10, b"y" * 10], pause_after=1)
    assert status == 408 and json.loads(body)["detail"] == "request body incomplete: nothing received for 0.2 s"
    assert BodyLimit(echo_length, limit=LIMIT).timeout == 15.0  # the default


def test_other_connections_are_passed_on_untouched():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["type"], await receive()))
        await send("started")

    async def receive():
        return "startup"

    async def send(message):
        seen.append(message)

    asyncio.run(BodyLimit(app, limit=0)({"type": "lifespan", "headers": [(b"content-length", b"99999999")]},
                                        receive, send))
    assert seen == [("lifespan", "startup"), "started"]


def read(data: bytes, limit: int, name="photo.jpg"):
    return asyncio.run(read_upload(UploadFile(io.BytesIO(data), filename=name), limit))


def test_an_upload_of_exactly_the_limit_is_read_one_byte_more_is_413_and_empty_is_400():
    assert read(b"x" * 100, 100) == (b"x" * 100, "photo.jpg")
    with pytest.raises(HTTPException) as caught:
        read(b"x" * 101, 100)
    assert caught.value.status_code == 413 and caught.value.detail == "upload too large: the limit is 100 bytes"
    with pytest.raises(HTTPException) as caught:
        read(b"", 100)
    assert caught.value.status_code == 400 and caught.value.detail == "empty upload: not an image"
    assert DEFAULT_MAX_UPLOAD == 20 * 1024 * 1024  # 20 MiB


def test_an_upload_is_read_no_further_than_one_byte_past_the_limit():
    class Counted(io.BytesIO):
        def read(self, size=-1):
            data = super().read(size)
            self.served = getattr(self, "served", 0) + len(data)
            return data

    body = Counted(b"x" * 100_000)
    with pytest.raises(HTTPException):
        asyncio.run(read_upload(UploadFile(body, filename="big.jpg"), 100))
    assert body.served == 101  # enough to know it is over the limit, no more held in memory


@pytest.mark.parametrize("name, shown", [("../../etc/a b.jpg", "a b.jpg"), ("dir/", "upload"), ("", "upload"),
                                         (None, "upload")])
def test_an_upload_is_named_by_its_base_name_only(name, shown):
    assert read(b"x", 10, name)[1] == shown


def test_an_image_over_the_pixel_limit_is_413_with_the_limit_in_thousands_and_others_are_400():
    e = refused("big.png", ImageTooLarge(8000, 7000, 40_000_000))
    assert e.status_code == 413
    assert e.detail == ("big.png: too large: 8000x7000 pixels exceeds this server's upload limit of 40,000,000 "
                        "pixels (lookalike serve --max-pixels)")
    e = refused("bad.jpg", ImageError("cannot identify image file"))
    assert (e.status_code, e.detail) == (400, "bad.jpg: cannot identify image file")


def test_request_headers_that_stall_are_answered_408_and_an_idle_connection_is_closed():
    import socket
    import time

    from helpers import serving_in_thread
    from lookalike.server.uploads import stalled_headers_answered_408

    with serving_in_thread(echo_length, http=stalled_headers_answered_408(0.5)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # the blank line that ends the headers never comes
            started = time.monotonic()
            answer = conn.recv(4096)
            waited = time.monotonic() - started
            assert answer == (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                              b"connection: close\r\ncontent-length: 79\r\n\r\n"
                              b"request headers incomplete 0.5 s after the connection opened or its last answer")
            assert 0.3 < waited < 10 and conn.recv(4096) == b""  # and closed
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a whole request is answered as ever
            answer = b""
            while not answer.endswith(b"\r\n\r\n0"):  # no body: its length 0
                answer += conn.recv(4096)
            assert answer.startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert conn.recv(4096) == b"" and 0.3 < time.monotonic() - started < 10  # then, idle, closed
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            started = time.monotonic()
            assert conn.recv(4096) == b"" and 0.3 < time.monotonic() - started < 10  # nothing sent: closed silently


def test_large_freed_allocations_go_back_to_the_system(monkeypatch):
    import ctypes

    from lookalike.server import uploads

    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    uploads.return_freed_images()
    assert calls == [(-3, 1024 * 1024)]  # M_MMAP_THRESHOLD (malloc.h) at 1 MiB
    monkeypatch.setattr(ctypes, "CDLL", lambda name: object())  # a C library without mallopt
    uploads.return_freed_images()
    assert calls == [(-3, 1024 * 1024)]


def test_a_stalled_body_after_whole_headers_is_the_apps_to_answer_not_the_header_timers():
    import socket
    import time

    from helpers import serving_in_thread
    from lookalike.server.uploads import stalled_headers_answered_408

    app = FastAPI()  # as the server's app: an HTTPException raised while the body arrives is answered in JSON

    @app.post("/")
    async def length(request: Request):
        return {"length": len(await request.body())}

    app.add_middleware(BodyLimit, limit=LIMIT, timeout=1.5)  # the body's timeout, after the header timer's 0.3 s
    with serving_in_thread(app, http=stalled_headers_answered_408(0.3)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 10\r\n\r\n12345")  # 5 of 10 bytes
            started = time.monotonic()
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                part = conn.recv(4096)
                if not part:
                    break
                answer += part
            waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"content-type: application/json" in answer  # the app's answer
    assert 1.2 < waited < 10  # at the body's timeout, not the headers'


def test_a_closed_connection_is_freed_at_once_not_held_by_its_header_timer():
    # the header timer is cancelled when the connection closes: nothing keeps the connection's protocol
    # (and its buffers) alive for the timer's seconds after
    import gc
    import weakref

    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from lookalike.server.uploads import stalled_headers_answered_408

    class Transport:
        closing = False

        def get_extra_info(self, name, default=None):
            return default

        def is_closing(self):
            return self.closing

        def close(self):
            self.closing = True

        def write(self, data):
            raise AssertionError(f"nothing is written: {data!r}")

    loop = asyncio.new_event_loop()
    try:
        state = ServerState()
        protocol = stalled_headers_answered_408(60)(Config(echo_length, log_config=None), state, {}, _loop=loop)
        protocol.connection_made(Transport())
        assert state.connections == {protocol}
        protocol.connection_lost(None)
        freed = weakref.ref(protocol)
        del protocol
        gc.collect()
        assert freed() is None and state.connections == set()
    finally:
        loop.close()
