"""``serve``: the web page and HTTP API over an index."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from lookalike.cli.common import CollectionOpt, IndexOpt, ThreadsOpt, UriOpt, err, fail, open_index, say
from lookalike.images import UPLOAD_MAX_PIXELS
from lookalike.text import plural


def serve(
    index_path: IndexOpt = None,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload.")] = 20.0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Largest accepted upload in pixels (bomb "
                                            "guard; lower than index's: a decode takes up to 7 bytes a pixel).")] = UPLOAD_MAX_PIXELS,
    fetch_urls: Annotated[bool, typer.Option("--fetch-urls", help="Also query by an image's address (the page's "
                                             "address box, POST /api/query/url): the server fetches it, http or "
                                             "https, within --max-upload-mb and 10 s, from public addresses only.")] = False,
    fetch_private: Annotated[bool, typer.Option("--fetch-private", help="With --fetch-urls: also fetch from "
                                                "loopback, private and link-local addresses (this machine and its "
                                                "network; only where nobody else can reach the server).")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Serve the web page and HTTP API (docs at /docs) for an index."""
    import uvicorn

    from lookalike.server import create_app, stalled_headers_answered_408

    if fetch_private and not fetch_urls:
        fail("--fetch-private goes with --fetch-urls")
    sock = _listen(host, port)  # a busy port fails before the model loads
    with sock, open_index(index_path, uri, collection, threads=threads) as idx:
        web = create_app(idx, int(max_upload_mb * 1024 * 1024), max_pixels, fetch_urls=fetch_urls,
                         fetch_private=fetch_private)
        if host not in ("127.0.0.1", "localhost", "::1"):
            say("warning", "bold yellow", f"listening on {host}: anyone who can reach this machine can search "
                "and view the indexed images")
        address = f"[{host}]" if ":" in host else host
        fetching = ("; it fetches images by address" + ("" if fetch_private else " (public addresses only)")
                    if fetch_urls else "")
        err.print(f"serving {plural(len(idx), 'image')} from {idx.location} at http://{address}:{sock.getsockname()[1]}/ "
                  f"(Ctrl+C stops){fetching}", soft_wrap=True)
        uvicorn.Server(uvicorn.Config(web, log_level="warning", http=stalled_headers_answered_408())).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), or a one-line error and exit 1 when the
    port is taken or the address is not this machine's."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "; another program is using it, choose another with --port" if e.errno == errno.EADDRINUSE else ""
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}")
    return sock
