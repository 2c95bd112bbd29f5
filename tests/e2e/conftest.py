"""Indexes the end-to-end tests of several commands share, made once per run by ``lookalike index``
(tests only read them), and the browser tests' Chromium and page over the server at ``base_url``."""

import json
import shutil

import pytest

from helpers import CHROMIUM, served_folder
from helpers import ODD_NAME as ODD
from helpers import run_cli as run


@pytest.fixture(scope="session")
def indexed(photo_dir, tmp_path_factory):
    ix = tmp_path_factory.mktemp("ix") / "index"
    report = json.loads(run("index", photo_dir, "--index", ix, "--json").stdout)
    return ix, report


@pytest.fixture(scope="session")
def odd(photo_dir, tmp_path_factory):
    """An index of photos under folders whose names have brackets, spaces and unicode, one of them long."""
    root = tmp_path_factory.mktemp("odd") / ODD
    deep = root / ("a very long folder name that a table at eighty columns would wrap " * 2).strip()
    deep.mkdir(parents=True)
    for name in ("chelsea", "coffee", "rocket"):
        shutil.copy(photo_dir / f"{name}.jpg", root / f"{name} [1].jpg")
    shutil.copy(photo_dir / "chelsea_flip.jpg", deep / "chelsea [flip].jpg")
    ix = root.parent / "index"
    run("index", root, "--index", ix, "--quiet")
    return root, ix


@pytest.fixture(scope="module")
def base_url(photo_dir, tmp_path_factory):
    """The server over an index of the sample photos (a browser test module may serve another)."""
    with served_folder(photo_dir, tmp_path_factory.mktemp("browser-index")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, with a fake camera (Playwright)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url):
    """A fresh page whose every request must stay on the local server (the page works offline)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=base_url)
    context.grant_permissions(["camera"], origin=base_url)
    foreign: list[str] = []
    context.on("request", lambda r: None if r.url.startswith((base_url, "data:", "blob:")) else foreign.append(r.url))
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert foreign == [], "requests left the local server"
    assert errors == [], "uncaught JavaScript errors"
