"""A review page for duplicate groups: one self-contained HTML file to decide what to remove.

Each group is a row of thumbnails, the kept file first and marked (with why it is kept when a
rule chose the best shot), every duplicate with its distance and evidence (what the verification
saw: inliers, rotation, flip, crop, re-encoding; sharpness and clipping of other shots).
A checkbox per file says whether it goes on the list; the page starts from the report's
``--to-remove`` choice, never lets a person tick every file of a group, and saves the list as
text (one path per line, or NUL-separated) or JSON. It deletes nothing: it only writes a list, of
each name's exact bytes (also those that are not UTF-8, which the page, valid UTF-8 itself, holds as
JSON escapes). Thumbnails are embedded (JPEG data URIs), so the page can be moved or mailed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os

from lookalike import atomic
from lookalike.images import ImageError, decode
from lookalike.text import plural

#: Longest side of an embedded thumbnail, in pixels.
THUMB = 200


def thumbnail_uri(path: str, size: int = THUMB) -> str:
    """A JPEG data URI of the image at most ``size`` pixels on a side ("" when unreadable)."""
    try:
        img = decode(path, size=size)
    except ImageError:
        return ""
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shown(text: str) -> str:
    """``text`` for reading, HTML-escaped: a file name's bytes that are not UTF-8 shown as U+FFFD."""
    return html.escape(text.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))


def _card(path: str, role: str, detail: str, n: int, checked: bool) -> str:
    uri = thumbnail_uri(path)
    img = f'<img src="{uri}" alt="">' if uri else '<div class="missing">unreadable</div>'
    # the exact name as a JSON string (a byte that is not UTF-8 as a \udcXX escape, as --json writes it)
    exact = html.escape(json.dumps(path), quote=True)
    return (f'<figure class="{role}"><label>{img}<figcaption><input type="checkbox" data-group="{n}" '
            f'data-path="{exact}"{" checked" if checked else ""}> remove'
            f'<b>{"KEEP" if role == "keep" else ""}</b><span class="name">{_shown(os.path.basename(path))}</span>'
            f'<span class="folder">{_shown(os.path.dirname(path))}</span><span class="why">{_shown(detail)}</span>'
            f'</figcaption></label></figure>')


def render(report) -> str:
    """The review page of a :class:`lookalike.dedup.DedupReport`, as HTML text."""
    groups, listed = [], set(report.to_remove())  # the report's own checks on what it lists
    for n, g in enumerate(report.groups, start=1):
        kept = (f"kept as {g.best.reason}" if g.best is not None else
                "kept by the rule: most pixels, best encoding, EXIF date, shorter name")
        cards = [_card(g.keep, "keep", kept, n, False)]
        for d in g.duplicates:
            why = report.why(d)
            shot = g.best.shots.get(d.copy_of or d.path) if g.best is not None else None
            if shot is not None:
                why = f"{why}; sharpness {shot.sharpness:.2f}, clipped {shot.clipped:.1%}"
            cards.append(_card(d.path, "dup", f"distance {d.distance:.4f}; {why}", n, d.path in listed))
        groups.append(f'<section><h2>group {n} · {g.kind} · {plural(len(g.duplicates) + 1, "file")}</h2>'
                      f'<div class="row">{"".join(cards)}</div></section>')
    title = (f"lookalike dedup review: {plural(len(report.groups), 'group')} among {plural(report.n_images, 'image')} "
             f"({'preset ' + report.preset + ': ' if report.preset else ''}{report.rule.describe()})")
    return _PAGE.replace("{title}", html.escape(title)).replace("{groups}", "\n".join(groups))


def write(report, out: str | os.PathLike) -> None:
    """Write the review page of ``report`` to ``out``, whole or not at all."""
    atomic.write(out, render(report))  # valid UTF-8: every name in it is escaped (:func:`_card`)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em 2em;background:#fafafa}
header{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ccc}
section{margin:1em 0;padding:.5em;background:#fff;border:1px solid #ddd}
h2{font-size:15px;margin:.2em 0}
.row{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;width:210px;padding:4px;border:3px solid transparent}
figure.keep{border-color:#2a7}
figure img{max-width:200px;max-height:200px;display:block}
figcaption span{display:block;word-break:break-all}
.folder{color:#777;font-size:12px}.why{font-size:12px}
b{color:#2a7;margin-left:.5em}
.removing{opacity:.45}
textarea{width:100%;height:6em}
</style></head><body>
<header><h1 style="font-size:17px">{title}</h1>
<p>lookalike never deletes anything. Tick the files to remove (the kept file of each group is
outlined in green; a group always keeps at least one file), then save the list.</p>
<button id="save-lines">Save list (one path per line)</button>
<button id="save-nul">Save list (NUL-separated, for xargs -0)</button>
<button id="save-json">Save list (JSON)</button> <span id="count"></span>
<p id="warn"></p></header>
{groups}
<script>
const boxes = [...document.querySelectorAll('input[type=checkbox]')];
function chosen() { return boxes.filter(b => b.checked).map(b => JSON.parse(b.dataset.path)); }
// A name's bytes as the file system has them: U+DC80..U+DCFF stand for bytes that are not UTF-8.
function nameBytes(name) {
  const out = [];
  for (const ch of name) {
    const c = ch.codePointAt(0);
    if (c >= 0xDC80 && c <= 0xDCFF) out.push(c - 0xDC00);
    else out.push(...new TextEncoder().encode(ch));
  }
  return out;
}
function listBytes(end) { return new Uint8Array(chosen().flatMap(p => [...nameBytes(p), end])); }
function refresh() {
  const groups = {};
  boxes.forEach(b => (groups[b.dataset.group] ||= []).push(b));
  Object.values(groups).forEach(members => {
    const left = members.filter(b => !b.checked).length;
    members.forEach(b => { b.disabled = !b.checked && left === 1;
                           b.closest('figure').classList.toggle('removing', b.checked); });
  });
  const list = chosen();
  document.getElementById('count').textContent = list.length + ' files on the list';
  const broken = list.some(p => /[\\r\\n]/.test(p));
  document.getElementById('save-lines').disabled = broken;
  document.getElementById('warn').textContent = broken ?
    'A chosen name holds a line break: save NUL-separated or JSON instead.' : '';
}
function save(name, text) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], {type: 'application/octet-stream'}));
  a.download = name; a.click();
}
boxes.forEach(b => b.addEventListener('change', refresh));
document.getElementById('save-lines').onclick = () => save('to-remove.txt', listBytes(10));
document.getElementById('save-nul').onclick = () => save('to-remove.nul', listBytes(0));
document.getElementById('save-json').onclick = () => save('to-remove.json', JSON.stringify(chosen()));
refresh();
</script></body></html>
"""
