"""Finding the FID Inception weights (option, then environment, then cache), the one-line error
when they are missing, and the download that keeps only a file with the expected digest (file://
URLs and stand-in responses: nothing is fetched from the network)."""

import email.message
import hashlib
import io
import sys
import urllib.error
import urllib.request

import platformdirs
import pytest

from lookalike.models import fid_weights


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No env var and an empty cache directory."""
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("LOOKALIKE_CACHE", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda appname: str(tmp_path / "cache" / appname))
    return tmp_path


def ways(cached):
    """The ways to get the weights, as the error messages end, written out for the cache file ``cached``."""
    return ("run 'lookalike models --download inception-v3-fid', or download https://github.com/mseitzer/"
            "pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth and pass "
            f"--weights PATH, set LOOKALIKE_INCEPTION_WEIGHTS=PATH, or save it as {cached}")


def test_missing_weights_error_is_one_line_with_the_ways_to_get_them(no_weights):
    cached = no_weights / "cache" / "lookalike" / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    assert fid_weights.how_to_get() == ways(cached)
    with pytest.raises(fid_weights.MissingWeightsError) as err:
        fid_weights.resolve_weights(None)  # never downloads unless asked
    assert str(err.value) == "FID Inception weights not found; " + ways(cached)
    assert fid_weights.find_weights() == (None, "missing")


def test_resolve_weights_order(no_weights, monkeypatch):
    explicit, env = no_weights / "explicit.pth", no_weights / "env.pth"
    cached = fid_weights.default_weights_path()
    assert cached == no_weights / "cache" / "lookalike" / "weights" / fid_weights.WEIGHTS_FILENAME
    for p in (explicit, env, cached):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert fid_weights.resolve_weights(None) == cached
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, str(env))
    assert fid_weights.resolve_weights(None) == env
    assert fid_weights.resolve_weights(str(explicit)) == explicit
    with pytest.raises(fid_weights.MissingWeightsError, match="does not exist"):
        fid_weights.resolve_weights(str(no_weights / "nope.pth"))


def test_where_the_weights_come_from(no_weights, monkeypatch):
    cached = fid_weights.default_weights_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert fid_weights.find_weights() == (cached, "cache")
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, "")  # set but empty: as if unset
    assert fid_weights.find_weights() == (cached, "cache")
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, "~/env.pth")
    monkeypatch.setenv("HOME", str(no_weights / "home"))
    assert fid_weights.find_weights() == (no_weights / "home" / "env.pth", fid_weights.WEIGHTS_ENV)
    assert fid_weights.find_weights("~/given.pth") == (no_weights / "home" / "given.pth", "--weights")
    # an explicit path or variable naming no file is an error, not a fall-through to the cache
    for explicit, origin, path in ((None, "LOOKALIKE_INCEPTION_WEIGHTS", "env.pth"), ("~/given.pth", "--weights",
                                                                                     "given.pth")):
        with pytest.raises(fid_weights.MissingWeightsError) as err:
            fid_weights.resolve_weights(explicit)
        assert str(err.value) == (f"Inception weights file {no_weights / 'home' / path} (from {origin}) does not "
                                  "exist; " + ways(cached))


def test_download_keeps_only_a_file_with_the_expected_hash(no_weights, monkeypatch):
    """Uses file:// URLs: nothing is fetched from the network."""
    source = no_weights / "served.pth"
    source.write_bytes(b"not the inception weights")
    monkeypatch.setattr(fid_weights, "WEIGHTS_URL", source.as_uri())
    with pytest.raises(fid_weights.MissingWeightsError, match="SHA-256"):
        fid_weights.resolve_weights(None, download=True)
    assert not any(fid_weights.default_weights_path().parent.iterdir())

    dest = no_weights / "fetched" / "w-abc.pth"
    fid_weights._download(source.as_uri(), dest, hashlib.sha256(source.read_bytes()).hexdigest()[:8])
    assert dest.read_bytes() == source.read_bytes()


class Served:
    """A stand-in for ``urlopen``'s answer: ``body`` in reads of at most the size asked for, announced
    by a Content-Length header when ``announced``; ``while_read`` is called before each read."""

    def __init__(self, body: bytes, announced: bool = True, while_read=lambda: None) -> None:
        self.stream, self.while_read = io.BytesIO(body), while_read
        self.headers = email.message.Message()
        if announced:
            self.headers["Content-Length"] = str(len(body))

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def read(self, size: int) -> bytes:
        self.while_read()
        return self.stream.read(size)


def serve(monkeypatch, body: bytes, **options) -> list[str]:
    """Answer every ``urlopen`` with ``body``; the URLs asked for."""
    asked = []

    def urlopen(url):
        asked.append(url)
        return Served(body, **options)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


MIB = 1 << 20


def test_download_shows_its_progress_in_percent_of_the_announced_length(tmp_path, monkeypatch, capsys):
    body = bytes(range(256)) * (3 * MIB // 512)  # 1.5 MiB: read as 1 MiB, then the half left
    serve(monkeypatch, body)
    dest = tmp_path / "new" / "folders" / "w.pth"
    fid_weights._download("https://example.org/w.pth", dest, digest(body)[:8])
    assert dest.read_bytes() == body and list(dest.parent.iterdir()) == [dest]
    # 1 MiB of 1.5 is 66.7 %
    assert capsys.readouterr() == ("", "\rdownloading w.pth: 66%\rdownloading w.pth: 100%\n")


class Terminal(io.StringIO):
    """A stand-in stderr that keeps what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.shown = []

    def flush(self) -> None:
        self.shown.append(self.getvalue())


def test_each_progress_step_is_shown_at_once_and_the_last_is_100_percent(tmp_path, monkeypatch):
    """The steps end in no newline: without a flush a terminal would show none of them until the end."""
    body = b"w" * (MIB + 50)
    serve(monkeypatch, body)
    monkeypatch.setattr(sys, "stderr", Terminal())
    fid_weights._download("https://example.org/w.pth", tmp_path / "w.pth", digest(body)[:8])
    # 1 MiB of 1 MiB + 50 bytes is 99.995 %: 99 %, then 100 %
    assert sys.stderr.shown[:2] == ["\rdownloading w.pth: 99%", "\rdownloading w.pth: 99%\rdownloading w.pth: 100%"]
    serve(monkeypatch, body[:40])  # a byte counted twice would show 102 %
    monkeypatch.setattr(sys, "stderr", Terminal())
    fid_weights._download("https://example.org/w.pth", tmp_path / "w.pth", digest(body[:40])[:8])
    assert sys.stderr.shown[:1] == ["\rdownloading w.pth: 100%"]


def test_download_without_a_length_counts_megabytes(tmp_path, monkeypatch, capsys):
    body = b"w" * 1_050_000  # 1 MiB (1.048576 MB), then 1.05 MB in all
    serve(monkeypatch, body, announced=False)
    fid_weights._download("https://example.org/w.pth", tmp_path / "w.pth", digest(body)[:8])
    assert capsys.readouterr() == ("", "\rdownloading w.pth: 1.0 MB\rdownloading w.pth: 1.1 MB\n")


def test_a_download_is_written_beside_its_file_until_verified_and_replaces_an_old_one(tmp_path, monkeypatch):
    dest = tmp_path / "w.pth"
    dest.write_bytes(b"old")
    seen = []
    for body in (b"first", b"second"):
        monkeypatch.setattr(urllib.request, "urlopen", lambda url, body=body: Served(
            body, while_read=lambda: seen.append(sorted(p.name for p in tmp_path.iterdir()))))
        fid_weights._download("https://example.org/w.pth", dest, digest(body)[:6])
        assert dest.read_bytes() == body and sorted(tmp_path.iterdir()) == [dest]
    assert seen == [["w.pth", "w.pth.part"]] * 4  # two reads each: the body, then the end


def test_download_on_request_into_the_cache(no_weights, monkeypatch, capsys):
    body = b"stand-in weights"
    asked = serve(monkeypatch, body)
    monkeypatch.setattr(fid_weights, "WEIGHTS_SHA256_PREFIX", digest(body)[:8])
    path = fid_weights.resolve_weights(None, download=True)
    assert asked == [fid_weights.WEIGHTS_URL]
    assert path == fid_weights.default_weights_path() and path.read_bytes() == body
    assert fid_weights.find_weights() == (path, "cache")


def test_a_download_with_another_digest_or_none_at_all_is_one_line_and_leaves_nothing(no_weights, monkeypatch):
    cached = fid_weights.default_weights_path()
    body = b"not the inception weights"
    serve(monkeypatch, body)
    with pytest.raises(fid_weights.MissingWeightsError) as err:
        fid_weights.resolve_weights(None, download=True)
    assert str(err.value) == (f"could not download the FID Inception weights ({fid_weights.WEIGHTS_URL} has SHA-256 "
                              f"{digest(body)[:16]}..., expected 6726825d...); " + ways(cached))
    assert list(cached.parent.iterdir()) == []

    def unreachable(url):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(fid_weights.MissingWeightsError) as err:
        fid_weights.resolve_weights(None, download=True)
    assert str(err.value) == "could not download the FID Inception weights (<urlopen error no route to host>); " + \
        ways(cached)
    assert list(cached.parent.iterdir()) == []
