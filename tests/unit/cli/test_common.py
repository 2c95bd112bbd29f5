"""What the commands share (cli/common.py): JSON that is valid UTF-8 whatever the file names, one-line
messages on stderr, the notes on what a folder's listing leaves out, timings; in-process, no model."""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import pytest
import typer
from PIL import Image

from lookalike.cli import common


def test_json_is_one_line_of_utf_8_and_reads_back_as_the_names_bytes(capsys):
    names = ["caf\udce9.jpg", "été.jpg", "a\nb.jpg"]  # a name whose byte 0xE9 is not UTF-8, as os.fsdecode gives it
    common.print_json({"paths": names})
    raw = capsys.readouterr().out.encode("utf-8")  # would fail on a lone surrogate
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    assert b"\\udce9" in raw and "été".encode() in raw  # the byte escaped; other text as it is
    back = json.loads(raw)["paths"]
    assert back == names and os.fsencode(back[0]) == b"caf\xe9.jpg"


def test_skipped_files_and_messages_go_to_stderr_exactly_as_they_are(capsys):
    common.print_skipped([("/p/[b]x.jpg", "cannot identify image file"), ("/p/y.png", "truncated")])
    common.say("note", "bold", "a [red]message[/red] " + "long " * 30)
    err = capsys.readouterr().err
    assert err.splitlines() == ["skipped /p/[b]x.jpg: cannot identify image file", "skipped /p/y.png: truncated",
                                "note: a [red]message[/red] " + "long " * 30]  # on one line, never wrapped


def test_fail_says_error_in_one_line_and_exits_1(capsys):
    with pytest.raises(typer.Exit) as e:
        common.fail("not a directory: /x")
    assert e.value.exit_code == 1 and capsys.readouterr().err == "error: not a directory: /x\n"


def test_no_progress_bar_when_quiet_or_off_a_terminal():
    assert common.no_bar(True) is True
    assert common.no_bar(False) is (not common.err.is_terminal)
    assert common.progress_bar(True).disable is True


@pytest.mark.parametrize("seconds, images, text", [(2.0, 100, "2.0 s, 50.0 img/s"), (0.12, 0, "0.1 s"),
                                                   (0.0, 5, "0.0 s"), (4.0, 1, "4.0 s, 0.2 img/s")])
def test_timing_gives_the_rate_only_when_something_was_embedded_in_some_time(seconds, images, text):
    assert common.timing(seconds, images) == text


def test_ignored_files_are_counted_most_first_then_with_extension_then_by_name():
    assert common.ignored_text(Counter(), "x") == ""
    counts = Counter({".txt": 2, "": 2, ".csv": 2, ".db": 1})
    assert common.ignored_text(counts, ": ignored ") == (": ignored 7 other files (2 .csv, 2 .txt, 2 without "
                                                         "extension, 1 .db)")
    assert common.ignored_text(Counter({".txt": 1}), "") == "1 other file (1 .txt)"


def folder_with(tmp_path, images=(), others=(), outside_links=0):
    root = tmp_path / "photos"
    root.mkdir(parents=True)
    for name in images:
        Image.new("RGB", (8, 8)).save(root / name)
    for name in others:
        (root / name).write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    for i in range(outside_links):
        Image.new("RGB", (8, 8)).save(outside / f"{i}.png")
        os.symlink(outside / f"{i}.png", root / f"link{i}.png")
    return root


def test_a_folder_without_images_says_what_it_ignored_and_left_out(tmp_path):
    root = folder_with(tmp_path, others=("a.txt", "b.txt", "README"), outside_links=2)
    nothing, left_out = common.check_folder(root)
    assert nothing == (f"no images under {root}: ignored 3 other files (2 .txt, 1 without extension); left out: "
                       "2 symbolic links to outside the folder (--follow-links includes them)")
    assert sorted(os.path.basename(p) for p, _ in left_out) == ["link0.png", "link1.png"]
    assert common.check_folder(root, follow_links=True) == (None, [])  # followed: images found


def test_a_folder_with_images_notes_what_was_left_out_and_lists_it_when_verbose(tmp_path, capsys):
    root = folder_with(tmp_path, images=("a.png",), outside_links=1)
    nothing, left_out = common.check_folder(root, verbose=True)
    assert nothing is None and len(left_out) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"left out {root / 'link0.png'}: symbolic link to outside the folder (use --follow-links to "
                     "include it)",
                     f"note: left out under {root}: 1 symbolic link to outside the folder (--follow-links includes it)"]
    assert common.check_folder(root, note=False) == (None, left_out)  # the caller lists them itself
    assert capsys.readouterr().err == ""
    common.check_folder(folder_with(tmp_path / "clean", images=("b.png",)))
    assert capsys.readouterr().err == ""  # nothing left out: nothing said


def test_index_refuses_a_folder_without_images_where_it_would_create_an_index_and_warns_otherwise(tmp_path, capsys):
    from lookalike.api import Index

    root = folder_with(tmp_path, others=("a.txt",))
    with pytest.raises(typer.Exit):
        common.check_images(root, tmp_path / "new-index")
    assert capsys.readouterr().err == f"error: no images under {root}: ignored 1 other file (1 .txt); no index created\n"
    Index.open(tmp_path / "index", create=True).close()
    common.check_images(root, tmp_path / "index")
    assert capsys.readouterr().err == f"warning: no images under {root}: ignored 1 other file (1 .txt)\n"
    with pytest.raises(typer.Exit):
        common.check_images(root, tmp_path / "index", rebuild=True)  # made anew: nothing to index
    assert capsys.readouterr().err.endswith("; no index created\n")
    common.check_images(folder_with(tmp_path / "ok", images=("a.png",)), tmp_path / "new-index")
    assert capsys.readouterr().err == "" and not (tmp_path / "new-index").exists()


def test_a_collection_needs_a_uri(tmp_path, capsys):
    with pytest.raises(typer.Exit):
        common.open_index(tmp_path / "ix", None, "photos")
    assert capsys.readouterr().err == "error: --collection goes with --uri\n"
    common.open_index(tmp_path / "ix", None, None, create=True).close()
    assert (tmp_path / "ix").is_dir()


# found by mutation testing: check_images passing its options on, the URI branch, the progress bar's
# parts, long lines kept whole, a rate over less than a second

def test_check_images_follows_links_and_lists_left_out_paths_only_when_asked(tmp_path, capsys):
    from lookalike.api import Index

    Index.open(tmp_path / "index", create=True).close()
    root = folder_with(tmp_path, outside_links=1)  # its one image is a link to outside the folder
    common.check_images(root, tmp_path / "index")  # by default: not followed, not listed
    assert capsys.readouterr().err == (f"warning: no images under {root}; left out: 1 symbolic link to outside the "
                                       "folder (--follow-links includes it)\n")
    common.check_images(root, tmp_path / "index", verbose=True)
    assert capsys.readouterr().err.splitlines()[0] == (f"left out {root / 'link0.png'}: symbolic link to outside the "
                                                       "folder (use --follow-links to include it)")
    common.check_images(root, tmp_path / "new-index", follow_links=True)  # followed: an image, nothing said
    assert capsys.readouterr().err == ""
    common.check_folder(root)  # check_folder's defaults too: not followed, not listed
    assert "left out " + str(root) not in capsys.readouterr().err
    both = folder_with(tmp_path / "both", images=("a.png",), outside_links=1)
    common.check_images(both, tmp_path / "index")  # images there: index lists what it skips itself
    assert capsys.readouterr().err == ""


def test_a_uri_opens_the_collection_named_with_the_options(monkeypatch, capsys):
    import sys
    import types

    opened = []
    module = types.ModuleType("lookalike.cluster.collection")
    module.open_index = lambda uri, collection, **options: opened.append((uri, collection, options)) or "collection"
    monkeypatch.setitem(sys.modules, "lookalike.cluster.collection", module)
    assert common.open_index(None, "http://milvus:19530", "photos", threads=2) == "collection"
    assert opened == [("http://milvus:19530", "photos", {"threads": 2})]
    monkeypatch.setitem(sys.modules, "lookalike.cluster.collection", None)  # the cluster extra not installed
    with pytest.raises(typer.Exit):
        common.open_index(None, "http://milvus:19530", "photos")
    assert capsys.readouterr().err == "error: --uri needs the cluster extra: pip install 'lookalike[cluster]'\n"


def test_the_progress_bar_shows_what_count_rate_and_time_left(monkeypatch):
    import io

    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, width=120, color_system=None))
    for what, args in (("embedding", ()), ("hashing", ("hashing",))):
        with common.progress_bar(False, *args) as bar:
            task = bar.add_task("", total=10, rate="2.5 img/s")
            bar.update(task, completed=3)
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).replace("\r", "\n")
        last = [line for line in shown.splitlines() if line.strip()][-1]
        assert last.split()[0] == what and "3/10" in last and "2.5 img/s" in last
        assert last.rstrip().endswith(("-:--:--", "0:00:00", "0:00:01", "0:00:02", "0:00:03"))  # the time left
    assert common.progress_bar(True).disable is True


def test_a_long_skipped_path_is_one_line(capsys):
    path = "/photos/" + "a very long folder name/" * 10 + "x.jpg"
    common.print_skipped([(path, "not an image")])
    assert capsys.readouterr().err == f"skipped {path}: not an image\n"


def test_a_rate_over_less_than_a_second():
    assert common.timing(0.5, 10) == "0.5 s, 20.0 img/s"


# what a terminal shows: the labels' styles, plain skipped lines, the bar drawn at a fixed width

def terminal(monkeypatch, width=80):
    """``common.err`` as a colour terminal of ``width`` columns whose clock stands still."""
    import io

    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr(common, "err", Console(file=out, force_terminal=True, color_system="standard", width=width,
                                               markup=False, get_time=lambda: 0.0))
    return out


def test_on_a_terminal_error_is_bold_red_warning_bold_yellow_and_note_bold_and_the_message_plain(tmp_path, monkeypatch):
    from lookalike.api import Index

    out = terminal(monkeypatch)
    with pytest.raises(typer.Exit):
        common.fail("not a directory: /x 12")
    assert out.getvalue() == "\x1b[1;31merror:\x1b[0m not a directory: /x 12\n"
    out.seek(0), out.truncate()
    Index.open(tmp_path / "index", create=True).close()
    root = folder_with(tmp_path, others=("a.txt",))
    common.check_images(root, tmp_path / "index")
    assert out.getvalue() == f"\x1b[1;33mwarning:\x1b[0m no images under {root}: ignored 1 other file (1 .txt)\n"
    out.seek(0), out.truncate()
    linked = folder_with(tmp_path / "linked", images=("a.png",), outside_links=1)
    common.check_folder(linked)
    assert out.getvalue() == (f"\x1b[1mnote:\x1b[0m left out under {linked}: 1 symbolic link to outside the folder "
                              "(--follow-links includes it)\n")


def test_on_a_terminal_a_skipped_line_is_plain_with_nothing_highlighted(monkeypatch):
    out = terminal(monkeypatch)
    common.print_skipped([("/p/IMG 0012.jpg", "image file is truncated (3 bytes not processed)"),
                          ("/p/'a'.png", "cannot identify image file '/p/a.png'")])
    assert out.getvalue() == ("skipped /p/IMG 0012.jpg: image file is truncated (3 bytes not processed)\n"
                              "skipped /p/'a'.png: cannot identify image file '/p/a.png'\n")


def test_the_bar_is_drawn_forty_cells_wide_with_the_rate_as_given_between_count_and_time_left(monkeypatch):
    import io

    from rich.console import Console

    terminal(monkeypatch)
    for what, args in (("embedding", ()), ("hashing", ("hashing",))):
        bar = common.progress_bar(False, *args)
        task = bar.add_task("", total=10, rate="2.5 img/s")
        bar.update(task, completed=3)
        shown = io.StringIO()
        Console(file=shown, width=100, color_system=None).print(bar.make_tasks_table(bar.tasks))
        # 3 of 10 over 40 cells: 12 drawn, 28 left blank without colour; the count as wide as "10/10"; no
        # speed yet, so no time left
        assert shown.getvalue() == f"{what} {'━' * 12}{' ' * 28}  3/10 2.5 img/s -:--:--\n"
