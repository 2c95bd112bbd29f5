"""Fetching a query image by its address (``lookalike query https://…``, the page's address box).

Only ``http`` and ``https``; at most :data:`MAX_REDIRECTS` redirects, each checked like the first
address; a total time limit; an answer that does not say it is an image (``Content-Type:
image/…``) or is larger than the limit is refused before its body is read whole. A server that
fetches addresses for its visitors must not become their way into its own network: with
``public_only``, every address a host name resolves to must be a public one (no loopback,
private, link-local, multicast or reserved address, IPv4 inside IPv6 included), and the connection
goes to the address that was checked (not to a second lookup that could answer otherwise), with
the host's name kept for its certificate and ``Host`` header.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from lookalike.images import ImageError

SCHEMES = ("http", "https")
MAX_REDIRECTS = 3
TIMEOUT = 10.0  # seconds for the whole fetch, redirects included


class FetchError(ImageError):
    """An address whose image cannot be had; ``str(err)`` is the one-line reason."""


class FetchTooLarge(FetchError):
    """An image over the byte limit."""


def is_url(text: str) -> bool:
    """True for text that names an image by an ``http://`` or ``https://`` address."""
    return urlsplit(text).scheme.lower() in SCHEMES and "://" in text


def fetch(url: str, max_bytes: int, timeout: float = TIMEOUT, public_only: bool = False) -> tuple[bytes, str]:
    """The body of the image at ``url`` and a name for it (the last part of its path).

    :class:`FetchError` for another scheme, a host that cannot be reached (or, with
    ``public_only``, that resolves to an address that is not public), more than
    :data:`MAX_REDIRECTS` redirects, an answer other than 200, a content type other than
    ``image/*``, a body over ``max_bytes`` bytes, or more than ``timeout`` seconds in all. Its
    message names the address only when a redirect led there.
    """
    first, deadline = url, time.monotonic() + timeout
    with httpx.Client(follow_redirects=False, trust_env=not public_only) as client:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                data = _hop(client, url, max_bytes, deadline, timeout, public_only)
            except FetchError as e:
                raise type(e)(str(e) if url == first else f"redirected to {url}: {e}") from None
            if isinstance(data, bytes):
                return data, _name(url)
            url = data
    raise FetchError(f"more than {MAX_REDIRECTS} redirects")


def _hop(client: httpx.Client, url: str, max_bytes: int, deadline: float, timeout: float,
         public_only: bool) -> bytes | str:
    """One request: the image's bytes, or the address a redirect leads to."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise FetchError("only http and https addresses can be fetched")
    if not parts.hostname:
        raise FetchError("no host in the address")
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"not fetched within {timeout:g} s")
    request = client.build_request("GET", url, headers={"Accept": "image/*"}, timeout=left)
    if public_only:
        request = _pinned(request, parts.hostname, parts.port)
    try:
        response = client.send(request, stream=True)
        try:
            if response.is_redirect and "location" in response.headers:
                return urljoin(url, response.headers["location"])
            return _body(response, max_bytes, deadline, timeout)
        finally:
            response.close()
    except httpx.TimeoutException:
        raise FetchError(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as e:
        raise FetchError(f"cannot fetch: {e}") from None


def _pinned(request: httpx.Request, host: str, port: int | None) -> httpx.Request:
    """``request`` sent to a public address of ``host`` (FetchError when any address it resolves to
    is not public), its ``Host`` header and TLS server name still ``host``'s."""
    try:
        infos = socket.getaddrinfo(host, port or (443 if request.url.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchError(f"cannot resolve {host}: {e}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not _public(address):
            raise FetchError(f"{host} is a {_kind(address)} address ({address}); this server "
                             "fetches public addresses only")
    headers = request.headers.copy()
    headers["Host"] = request.url.netloc.decode("ascii")
    return httpx.Request(request.method, request.url.copy_with(host=str(addresses[0])), headers=headers,
                         extensions={**request.extensions, "sni_hostname": host})


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return _public(mapped) if mapped is not None else address.is_global and not address.is_multicast


def _kind(address) -> str:
    address = getattr(address, "ipv4_mapped", None) or address
    for kind in ("unspecified", "loopback", "link_local", "private", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


def _body(response: httpx.Response, max_bytes: int, deadline: float, timeout: float) -> bytes:
    """The body of a final answer, within ``max_bytes`` and the deadline."""
    if response.status_code != 200:
        raise FetchError(f"the server answered {response.status_code} {response.reason_phrase}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not kind.startswith("image/"):
        raise FetchError(f"not an image: the server says its content is {kind or 'of no type'}")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise FetchTooLarge(f"too large: {int(length):,} bytes, over the limit of {max_bytes:,}")
    data = bytearray()
    for chunk in response.iter_bytes():  # as the bytes arrive: a slow trickle meets the deadline
        data += chunk
        if len(data) > max_bytes:
            raise FetchTooLarge(f"too large: over the limit of {max_bytes:,} bytes")
        if time.monotonic() > deadline:
            raise FetchError(f"not fetched within {timeout:g} s")
    return bytes(data)


def _name(url: str) -> str:
    """The last part of the address's path (``x.jpg``), else its host."""
    parts = urlsplit(url)
    return unquote(parts.path.rstrip("/").rsplit("/", 1)[-1]) or parts.hostname or "image"
