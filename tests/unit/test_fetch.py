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
