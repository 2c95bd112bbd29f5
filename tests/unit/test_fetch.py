"""``lookalike.fetch``: an image by its address, bounded in size, time, type and redirects, and for a
server, public addresses only (checked again after every redirect, and connected to as checked)."""

import io
import socket

import pytest

from helpers import ImageServer, sample_photo
from lookalike import fetch as fetching
from lookalike.fetch import FetchError, fetch, is_url


@pytest.fixture(scope="module")
def jpeg():
    buf = io.BytesIO()
    sample_photo("coffee").resize((64, 48)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(jpeg):
    with ImageServer(jpeg) as s:
        yield s


def test_an_image_is_fetched_with_its_name(server, jpeg):
    assert fetch(server.url("/img.jpg"), 10**6) == (jpeg, "img.jpg")


def test_redirects_are_followed_up_to_the_limit(server, jpeg):
    assert fetch(server.url(f"/redirect/{fetching.MAX_REDIRECTS}"), 10**6) == (jpeg, "img.jpg")
    with pytest.raises(FetchError, match=f"^more than {fetching.MAX_REDIRECTS} redirects$"):
        fetch(server.url(f"/redirect/{fetching.MAX_REDIRECTS + 1}"), 10**6)


@pytest.mark.parametrize("path, message", [
    ("/page.html", "^not an image: the server says its content is text/html$"),
    ("/big", "^too large: 1,000,000,000,000 bytes, over the limit of 10,000$"),  # refused on its header
    ("/stream?n=200000", "^too large: over the limit of 10,000 bytes$"),       # no length: counted
    ("/missing.jpg", "^the server answered 404 Not Found$"),
])
def test_answers_that_are_not_a_small_image_are_refused(server, path, message):
    with pytest.raises(FetchError, match=message):
        fetch(server.url(path), 10_000)


def test_a_slow_answer_meets_the_time_limit(server):
    import time

    started = time.monotonic()
    with pytest.raises(FetchError, match="within 1 s"):
        fetch(server.url("/slow"), 10**6, timeout=1)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("url", ["ftp://example.com/x.jpg", "file:///etc/passwd", "/tmp/x.jpg", "x.jpg"])
def test_only_http_and_https_are_addresses(url):
    assert not is_url(url)
    if "://" in url:
        with pytest.raises(FetchError, match="only http and https"):
            fetch(url, 10**6)


def test_a_redirect_to_another_scheme_is_refused_and_named(server):
    with pytest.raises(FetchError, match="^redirected to file:///etc/passwd: only http and https"):
        fetch(server.url("/to?u=file:///etc/passwd"), 10**6)


@pytest.mark.parametrize("host, kind", [("127.0.0.1", "loopback"), ("localhost", "loopback"), ("[::1]", "loopback"),
                                        ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
                                        ("192.168.0.10", "private"), ("[::ffff:127.0.0.1]", "loopback"),
                                        ("0.0.0.0", "unspecified"), ("[fe80::1]", "link-local")])
def test_a_server_fetches_no_address_that_is_not_public(host, kind):
    with pytest.raises(FetchError, match=f" is a {kind} address .*public addresses only"):
        fetch(f"http://{host}:9/x.jpg", 10**6, timeout=2, public_only=True)


def test_every_address_of_a_name_is_checked_and_the_checked_one_is_connected_to(server, jpeg, monkeypatch):
    port = server.server.server_address[1]
    calls = []

    def resolve(host, port_, *args, **kwargs):
        if not host.endswith(".test"):  # an address, as the connection to it passes it on: itself
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (host, port_))]
        calls.append(host)
        addresses = {"photos.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.7"],
                     "inner.test": ["127.0.0.2"]}[host]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port_)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    # loopback counts as public here, except 127.0.0.2, so the server in this test can stand for the internet
    monkeypatch.setattr(fetching, "_public", lambda address: str(address) == "127.0.0.1")
    assert fetch(f"http://photos.test:{port}/img.jpg", 10**6, public_only=True) == (jpeg, "img.jpg")
    assert server.hosts[-1] == f"photos.test:{port}" and calls == ["photos.test"]  # one lookup, its name kept
    with pytest.raises(FetchError, match="mixed.test is a private address"):  # one bad address of two is enough
        fetch(f"http://mixed.test:{port}/img.jpg", 10**6, public_only=True)
    inner = f"http://inner.test:{port}/img.jpg"
    with pytest.raises(FetchError, match=f"^redirected to {inner}: inner.test is a loopback address"):
        fetch(f"http://photos.test:{port}/to?u={inner}", 10**6, public_only=True)


# Found by mutation testing: the rest drive fetch's own client against httpx's MockTransport (no
# network), the lookups of host names answered by hand.

import types  # noqa: E402

import httpx  # noqa: E402

JPEG_HEAD = b"\xff\xd8\xff"


REAL_CLIENT = httpx.Client


def _answering(monkeypatch, handler):
    """Every request fetch sends goes to ``handler`` (request -> httpx.Response), unless the client
    takes the environment's proxy (none is set here); returns them as sent."""
    sent = []
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)

    def client(**kwargs):
        def record(request):
            sent.append(request)
            return handler(request)
        # mounted for every address: a proxy taken from the environment is more specific, and wins
        return REAL_CLIENT(mounts={"all://": httpx.MockTransport(record)}, **kwargs)

    monkeypatch.setattr(fetching.httpx, "Client", client)
    return sent


def _resolving(monkeypatch, table):
    """Host names resolved from ``table`` (name -> addresses as getaddrinfo gives them)."""
    def resolve(host, port, *args, **kwargs):
        if host not in table:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in table[host]]
    monkeypatch.setattr(socket, "getaddrinfo", resolve)


def _image(request, body=JPEG_HEAD):
    return httpx.Response(200, headers={"Content-Type": "image/jpeg"}, content=body)


@pytest.mark.parametrize("text, expected", [("https://photos.example/a.jpg", True), ("HTTP://PHOTOS.EXAMPLE/A.JPG", True),
                                            ("http:a.jpg", False), ("https:/a.jpg", False), ("", False)])
def test_an_address_is_http_or_https_in_any_case_followed_by_two_slashes(text, expected):
    assert is_url(text) is expected


@pytest.mark.parametrize("url, name", [
    ("http://h.example/a/b/c.jpg", "c.jpg"),
    ("http://h.example/photos/", "photos"),  # a trailing slash: the folder's name
    ("http://h.example/a/b/?size=2", "b"),   # the query is no part of the name
    ("http://h.example/caf%C3%A9%20au%20lait.jpg", "café au lait.jpg"),
    ("http://h.example/scans/FAX", "FAX"),   # a name ending in a letter that is no slash
    ("http://h.example/", "h.example"),      # no path: the host
    ("http://h.example", "h.example"),
])
def test_the_name_of_a_fetched_image_is_the_last_part_of_its_path_else_its_host(monkeypatch, url, name):
    _answering(monkeypatch, _image)
    assert fetch(url, 100) == (JPEG_HEAD, name)


def test_the_name_is_that_of_the_address_a_redirect_led_to(monkeypatch):
    _answering(monkeypatch, lambda r: httpx.Response(302, headers={"Location": "/pics/final.png"})
               if r.url.path == "/go" else _image(r))
    assert fetch("http://h.example/go", 100) == (JPEG_HEAD, "final.png")


def test_a_body_exactly_at_the_limit_is_fetched_and_one_byte_more_is_refused(monkeypatch):
    body = bytes(range(100))
    _answering(monkeypatch, lambda r: _image(r, body[:int(r.url.params["n"])]))  # sized: Content-Length
    assert fetch("http://h.example/x.jpg?n=100", 100)[0] == body
    with pytest.raises(fetching.FetchTooLarge, match="^too large: 100 bytes, over the limit of 99$"):
        fetch("http://h.example/x.jpg?n=100", 99)

    def unsized(request):  # no Content-Length: counted as the parts arrive
        n = int(request.url.params["n"])
        return httpx.Response(200, headers={"Content-Type": "image/jpeg"},
                              content=iter([body[:40], body[40:80], body[80:n]]))

    _answering(monkeypatch, unsized)
    assert fetch("http://h.example/x.jpg?n=100", 100)[0] == body  # every part, in order
    with pytest.raises(fetching.FetchTooLarge, match="^too large: over the limit of 99 bytes$"):
        fetch("http://h.example/x.jpg?n=100", 99)


@pytest.mark.parametrize("kind, message", [
    ("Image/PNG; charset=binary", None),
    (" image/webp ", None),
    (None, "^not an image: the server says its content is of no type$"),
    ("TEXT/HTML; charset=utf-8", "^not an image: the server says its content is text/html$"),
])
def test_the_content_type_is_read_in_any_case_without_its_parameters(monkeypatch, kind, message):
    _answering(monkeypatch, lambda r: httpx.Response(200, headers={} if kind is None else {"Content-Type": kind},
                                                    content=JPEG_HEAD))
    if message is None:
        assert fetch("http://h.example/x", 100)[0] == JPEG_HEAD
    else:
        with pytest.raises(FetchError, match=message):
            fetch("http://h.example/x", 100)


def test_an_address_without_a_host_is_refused_plainly():
    for url in ("http:///x.jpg", "https://:443/x.jpg"):
        with pytest.raises(FetchError, match="^no host in the address$"):
            fetch(url, 100)


def test_each_request_asks_for_an_image_within_the_time_left_and_none_goes_at_the_deadline(monkeypatch):
    now = iter(0.25 * k for k in range(100))  # every reading of the clock a quarter second later
    monkeypatch.setattr(fetching, "time", types.SimpleNamespace(monotonic=lambda: next(now)))
    sent = _answering(monkeypatch, lambda r: httpx.Response(302, headers={"Location": f"/r{len(sent)}"}))
    # deadline 1.0 (read at 0); the hops read 0.25, 0.5 and 0.75 (0.75, 0.5 and 0.25 s left), the fourth 1.0
    with pytest.raises(FetchError, match="^redirected to http://h.example/r3: not fetched within 1 s$"):
        fetch("http://h.example/x.jpg", 100, timeout=1)
    assert [r.extensions["timeout"] for r in sent] == [dict.fromkeys(("connect", "read", "write", "pool"), t)
                                                       for t in (0.75, 0.5, 0.25)]
    assert [r.headers["Accept"] for r in sent] == ["image/*"] * 3 and [r.method for r in sent] == ["GET"] * 3


@pytest.mark.parametrize("url, port", [("https://photos.example/x.jpg", 443), ("http://photos.example:8080/x.jpg", 8080)])
def test_a_server_connects_to_the_address_it_checked_naming_the_host_for_tls_and_the_host_header(monkeypatch, url, port):
    _resolving(monkeypatch, {"photos.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    sent = _answering(monkeypatch, _image)
    assert fetch(url, 100, timeout=7, public_only=True) == (JPEG_HEAD, "x.jpg")
    (request,) = sent
    assert (request.url.host, request.url.port or 443) == ("93.184.216.34", port)  # the first address checked
    assert request.headers["Host"] == ("photos.example" if port == 443 else f"photos.example:{port}")
    assert request.extensions["sni_hostname"] == "photos.example"
    assert 0 < request.extensions["timeout"]["read"] <= 7 and request.headers["Accept"] == "image/*"


@pytest.mark.parametrize("addresses, kind, shown", [
    (["239.1.2.3"], "multicast", "239.1.2.3"),                       # "global", but multicast
    (["ff0e::1"], "multicast", "ff0e::1"),
    (["100.64.0.1"], "non-public", "100.64.0.1"),                    # shared address space (carrier NAT)
    (["93.184.216.34", "::ffff:100.64.0.1"], "non-public", "::ffff:6440:1"),  # IPv4 inside IPv6: its IPv4 counts
    (["::ffff:10.0.0.1"], "private", "::ffff:a00:1"),
    (["fe80::1%2"], "link-local", "fe80::1"),                        # the zone index is no part of the address
])
def test_a_server_refuses_a_name_resolving_to_an_address_that_is_not_public_saying_which(monkeypatch, addresses, kind,
                                                                                       shown):
    _resolving(monkeypatch, {"photos.example": addresses})
    sent = _answering(monkeypatch, _image)
    message = f"photos.example is a {kind} address ({shown}); this server fetches public addresses only"
    with pytest.raises(FetchError) as caught:
        fetch("http://photos.example/x.jpg", 100, public_only=True)
    assert str(caught.value) == message and sent == []


@pytest.mark.parametrize("address", ["8.8.8.8", "::ffff:8.8.8.8", "2001:4860:4860::8888"])
def test_a_server_fetches_from_a_public_address_ipv4_inside_ipv6_included(monkeypatch, address):
    _resolving(monkeypatch, {"photos.example": [address]})
    _answering(monkeypatch, _image)
    assert fetch("http://photos.example/x.jpg", 100, public_only=True) == (JPEG_HEAD, "x.jpg")


def test_a_name_that_does_not_resolve_is_said_with_the_reason(monkeypatch):
    _resolving(monkeypatch, {})
    with pytest.raises(FetchError, match=r"^cannot resolve nowhere.example: \[Errno -2\] Name or service not known$"):
        fetch("http://nowhere.example/x.jpg", 100, public_only=True)


def test_the_environment_s_proxy_is_used_except_by_a_server_that_fetches_public_addresses_only(monkeypatch):
    _resolving(monkeypatch, {"photos.example": ["93.184.216.34"]})
    sent = _answering(monkeypatch, _image)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(FetchError, match="^cannot fetch: "):  # through the proxy: refused
        fetch("http://photos.example/x.jpg", 100)
    assert sent == []
    assert fetch("http://photos.example/x.jpg", 100, public_only=True) == (JPEG_HEAD, "x.jpg")  # straight to the checked address
    assert len(sent) == 1


def test_a_location_counts_only_on_a_redirect_and_a_redirect_needs_one(monkeypatch):
    def answer(request):
        if request.url.path == "/moved":
            return httpx.Response(302)  # no Location: nowhere to go
        return httpx.Response(200, headers={"Content-Type": "image/jpeg", "Location": "/elsewhere.jpg"}, content=JPEG_HEAD)

    sent = _answering(monkeypatch, answer)
    assert fetch("http://h.example/x.jpg", 100) == (JPEG_HEAD, "x.jpg") and len(sent) == 1
    with pytest.raises(FetchError, match="^the server answered 302 Found$"):
        fetch("http://h.example/moved", 100)


def test_a_server_that_does_not_answer_in_time_is_said_so_with_the_limit(monkeypatch):
    def answer(request):
        raise httpx.ReadTimeout("timed out", request=request)

    _answering(monkeypatch, answer)
    with pytest.raises(FetchError, match="^no answer within 2.5 s$"):
        fetch("http://h.example/x.jpg", 100, timeout=2.5)
