"""The report's HTML pieces (:mod:`.report`): the page shell with its inline stylesheet, small element builders and
images as data URIs.

Every builder takes plain text and escapes it (``html.escape``); the one exception is ``body``/``cells`` markup
that another builder of this module made. Nothing refers to a resource outside the page except the run's own
files by relative path (videos, exports), so the page opens offline and can be mailed with or without the run.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

__all__ = ["page", "section", "missing", "note", "table", "figure", "gallery", "video", "link", "badge", "kv_table",
           "read_image", "image_uri", "png_uri", "human_bytes", "human_seconds"]

CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--card:#fff;--bg:#f3f4f6;--accent:#2563eb;
--ok:#059669;--bad:#dc2626;--wait:#9ca3af}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{background:#111827;color:#f9fafb;padding:28px 24px 20px}
header h1{margin:0 0 6px;font-size:26px;font-weight:650;word-break:break-all}
header .meta{display:flex;flex-wrap:wrap;gap:6px 22px;color:#d1d5db;font-size:14px}
header .meta b{color:#fff;font-weight:600}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:10px;margin-top:18px}
.cards div{background:#1f2937;border-radius:8px;padding:10px 12px}
.cards span{display:block;color:#9ca3af;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.cards b{font-size:20px;font-weight:600}
nav{position:sticky;top:0;z-index:2;background:rgba(255,255,255,.95);border-bottom:1px solid var(--line);
padding:8px 24px;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:14px}
nav a{color:var(--accent);text-decoration:none}
main{max-width:1120px;margin:0 auto;padding:16px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 20px;margin:16px 0}
section h2{margin:0 0 10px;font-size:19px;display:flex;align-items:center;gap:10px}
h3{font-size:15px;margin:16px 0 6px}
p.lead,.caption{color:var(--muted);font-size:13px;margin:4px 0 10px}
img{max-width:100%;height:auto;display:block;border-radius:6px}
img.full{width:100%;max-height:85vh;object-fit:contain}
figure{margin:0}
figcaption{color:var(--muted);font-size:13px;margin-top:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px}
.grid.wide{grid-template-columns:repeat(auto-fill,minmax(260px,1fr))}
.grid.four{grid-template-columns:repeat(4,1fr)}
.grid img{width:100%;aspect-ratio:auto;background:#f9fafb;border:1px solid var(--line)}
video{width:100%;max-width:400px;border-radius:6px;background:#000}
video.wide{max-width:720px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:14px;margin:6px 0;min-width:50%}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;background:#f9fafb;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.better{color:var(--ok);font-weight:600}td.worse{color:var(--bad);font-weight:600}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;background:#f3f4f6;padding:1px 4px;border-radius:4px;word-break:break-all}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:1px 8px;border-radius:999px;color:#fff;background:var(--wait)}
.badge.done{background:var(--ok)}.badge.failed{background:var(--bad)}
.missing{border:1px dashed #d1d5db;border-radius:8px;padding:12px 14px;color:var(--muted);background:#fafafa;margin:8px 0}
.missing b{color:var(--fg)}
.bar{height:10px;background:var(--accent);border-radius:3px;min-width:2px}
footer{color:var(--muted);font-size:12px;text-align:center;padding:10px 0 30px}
@media (max-width:640px){nav{flex-wrap:nowrap;overflow-x:auto;white-space:nowrap;padding:8px 12px}
.grid,.grid.four,.grid.wide{grid-template-columns:repeat(2,1fr)}header{padding:18px 14px}main{padding:8px}section{padding:14px 12px}header h1{font-size:21px}}
"""


def page(title: str, header: str, nav: Sequence[tuple[str, str]], sections: Iterable[str], footer: str) -> str:
    """The whole document: ``header`` and ``sections`` are markup of this module; ``nav`` (anchor, label) pairs."""
    links = "".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{header}\n<nav>{links}</nav>\n<main>\n"
            + "\n".join(sections) + f"\n</main>\n<footer>{escape(footer)}</footer>\n</body></html>\n")


def section(anchor: str, title: str, body: str, status: Optional[str] = None) -> str:
    """A card with a heading (and the stage's status badge)."""
    b = f" {badge(status)}" if status else ""
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}{b}</h2>\n{body}\n</section>'


def badge(status: str) -> str:
    cls = status if status in ("done", "failed") else "pending"
    return f'<span class="badge {cls}">{escape(status)}</span>'


def missing(what: str, stage: Optional[str], status: str, error: Optional[str] = None) -> str:
    """The "not produced" box: what is absent and the status of the stage that makes it."""
    why = f" · stage <code>{escape(stage)}</code>: {badge(status)}" if stage else f" · {badge(status)}"
    err = f"<br><span>{escape(error)}</span>" if error else ""
    return f'<div class="missing"><b>{escape(what)}: not produced</b>{why}{err}</div>'


def note(text: str) -> str:
    return f'<p class="lead">{escape(text)}</p>'


def table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = (), classes: Iterable[Sequence[str]] = ()) -> str:
    """A table of plain-text cells; ``numeric[i]`` right-aligns column i; ``classes`` optional per-cell CSS classes."""
    rows, classes = list(rows), list(classes)
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, c in enumerate(row):
            cls = ["num"] if i < len(numeric) and numeric[i] else []
            if r < len(classes) and i < len(classes[r]) and classes[r][i]:
                cls.append(classes[r][i])
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{escape(str(c))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{h}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def kv_table(items: Iterable[tuple[str, object]]) -> str:
    """Two columns, key and value (values as text; floats shortened)."""
    def text(v: object) -> str:
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    return table(("name", "value"), [(k, text(v)) for k, v in items])


def figure(uri: str, caption: str = "", alt: str = "", full: bool = False) -> str:
    """An embedded image (``uri``: a data URI of this module) with a caption; ``full``: as wide as the column (small
    previews are enlarged; tall ones stay within the window's height)."""
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    cls = ' class="full"' if full else ""
    return f'<figure><img{cls} src="{escape(uri)}" alt="{escape(alt or caption)}" loading="eager">{cap}</figure>'


def gallery(figures: Sequence[str], cls: str = "") -> str:
    """Figures in a grid: cells of 170 px and more; ``cls`` "wide" (260 px) or "four" (four a row, two on phones)."""
    return f'<div class="grid {escape(cls)}">' + "".join(figures) + "</div>"


def video(rel: str, caption: str, wide: bool = False) -> str:
    """A video of the run by relative path (beside the report), with a plain link for players that cannot embed it;
    ``wide``: up to 720 px (side-by-side comparisons), else at most 400 px."""
    r = escape(rel)
    return (f'<figure><video class="{"wide" if wide else ""}" src="{r}" controls muted loop playsinline preload="metadata"></video>'
            f'<figcaption>{escape(caption)} · <a href="{r}">{r}</a></figcaption></figure>')


def link(rel: str, text: Optional[str] = None) -> str:
    return f'<a href="{escape(rel)}">{escape(text or rel)}</a>'


# ------------------------------------------------------------------------------------------------ images
def read_image(path: Path) -> Optional[np.ndarray]:
    """(H, W, 3) uint8 RGB of an image file, or None when it is not readable. Grey images become RGB; 16-bit ones
    are stretched over their own range (displacement maps use the full 16 bits for their span); alpha is composited
    over white."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return None
    if img.dtype != np.uint8:
        f = img.astype(np.float64)
        lo, hi = float(f.min()), float(f.max())
        img = np.round((f - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.shape[2] == 4:
        a = img[..., 3:].astype(np.float64) / 255
        img = np.round(img[..., :3] * a + 255 * (1 - a)).astype(np.uint8)
    return np.ascontiguousarray(img[..., 2::-1])


def _fit(img: np.ndarray, max_width: int, max_height: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    s = min(1.0, max_width / w, max_height / h)
    if s >= 1.0:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def image_uri(img: np.ndarray, max_width: int = 1100, max_height: int = 1100, jpeg: bool = True, quality: int = 82) -> str:
    """A data URI of ``img`` ((H, W, 3) uint8 RGB), downscaled to fit ``max_width`` x ``max_height`` pixels; JPEG
    for photographs (a tenth of PNG's size), PNG for flat graphics."""
    import cv2

    small = np.ascontiguousarray(_fit(img, max_width, max_height)[..., ::-1])
    ok, buf = cv2.imencode(".jpg" if jpeg else ".png", small, [cv2.IMWRITE_JPEG_QUALITY, quality] if jpeg else [])
    if not ok:
        raise ValueError("image encoding failed")
    return f"data:image/{'jpeg' if jpeg else 'png'};base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def png_uri(png: bytes) -> str:
    """A data URI of PNG bytes (the charts)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def human_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def human_seconds(s: Optional[float]) -> str:
    """``83.2`` -> ``1 min 23 s``; None -> ``-``."""
    if s is None:
        return "-"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"
