"""A self-contained HTML page: inline CSS, figures as base64 PNG data URIs, no scripts."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
       max-width: 1280px; margin: 0 auto; padding: 0 24px 48px; }
h1 { margin: 24px 0 4px; font-size: 26px; }
h2 { margin-top: 40px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { margin-top: 28px; }
p.lead { color: var(--muted); margin-top: 0; }
nav ol { columns: 2; color: var(--muted); }
table { border-collapse: collapse; margin: 12px 0; font-size: 13.5px; }
th, td { border: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: var(--bg-alt); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.best { font-weight: 700; }
tr.selected td { background: #fff8c5; }
.table-wrap { overflow-x: auto; }
figure { margin: 18px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13.5px; margin-top: 6px; max-width: 1100px; }
ul.findings li { margin: 6px 0; }
.better { color: var(--good); font-weight: 600; }
.worse { color: var(--bad); font-weight: 600; }
.equivalent { color: #0550ae; font-weight: 600; }
.inconclusive { color: var(--muted); font-weight: 600; }
div.primary { border: 2px solid var(--fg); padding: 4px 14px; margin: 14px 0; }
.note { color: var(--muted); font-size: 13.5px; }
.warning { border: 1px solid var(--bad); background: #ffebe9; padding: 4px 12px; margin: 12px 0; }
pre { background: var(--bg-alt); padding: 10px; overflow-x: auto; font-size: 12.5px; }
details > summary { cursor: pointer; color: var(--muted); }
code { font-size: 13px; }
"""


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def mean_std(mean: float, std: float, digits: int = 4) -> str:
    if isinstance(std, float) and math.isnan(std):
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} \u00b1 {fmt(std, digits)}"


@dataclass
class Cell:
    text: str
    numeric: bool = False
    attrs: dict = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    raw_html: bool = False


def cell(value, **kwargs) -> Cell:
    return value if isinstance(value, Cell) else Cell(str(value), **kwargs)


def table(headers: list[str], rows: list[list], table_id: str | None = None, row_classes: list[str] | None = None,
          caption: str | None = None) -> str:
    out = [f'<div class="table-wrap"><table{f" id={chr(34)}{esc(table_id)}{chr(34)}" if table_id else ""}>']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>")
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes else ""
        out.append(f'<tr{f" class={chr(34)}{esc(cls)}{chr(34)}" if cls else ""}>')
        for value in row:
            c = cell(value)
            classes = (("num",) if c.numeric else ()) + tuple(c.classes)
            attrs = "".join(f' {esc(k)}="{esc(v)}"' for k, v in c.attrs.items())
            cls_attr = f' class="{" ".join(classes)}"' if classes else ""
            body = c.text if c.raw_html else esc(c.text)
            out.append(f"<td{cls_attr}{attrs}>{body}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(name: str, png: bytes, alt: str, caption_html: str) -> str:
    return (
        f'<figure id="fig-{esc(name.removesuffix(".png"))}">'
        f'<img src="{data_uri(png)}" alt="{esc(alt)}" data-file="{esc(name)}">'
        f"<figcaption>{caption_html} <span class=\"note\">(file: <code>{esc(name)}</code>)</span></figcaption></figure>"
    )


@dataclass
class Section:
    id: str
    title: str
    body: list[str] = field(default_factory=list)

    def add(self, fragment: str) -> None:
        self.body.append(fragment)


def page(title: str, lead_html: str, sections: list[Section]) -> str:
    nav = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="lead">{lead_html}</p>',
        f"<nav><ol>{nav}</ol></nav>",
    ]
    for s in sections:
        parts.append(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>')
        parts.extend(s.body)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
