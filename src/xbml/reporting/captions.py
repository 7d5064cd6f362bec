"""Figure captions: the workflow's `report/<figure>.rst` files, the one source of the caption text
for both `snakemake --report` and the HTML page, rendered here into HTML.

A caption may use the placeholders Snakemake's report fills too, so both show the same words:
``{{ snakemake.wildcards.dataset }}`` and ``{{ snakemake.config.<key>.<key> }}`` (a value of the
validated workflow config). RST comments (``.. text``, with their indented lines) are left out;
the inline markup *emphasis*, **strong** and ``literal`` is converted, everything else is text.
"""

from __future__ import annotations

import re
from pathlib import Path

from xbml.errors import XbmlError
from xbml.reporting.html import esc

DEFAULT_FOLDER = Path("workflow/report")
CAPTIONS_HINT = "pass --captions <folder holding the workflow's report/*.rst> or run from the repository root"

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_INLINE = re.compile(r"``(.+?)``|\*\*(.+?)\*\*|\*(.+?)\*")


class Captions:
    """The caption folder, each file read once."""

    def __init__(self, folder: str | Path = DEFAULT_FOLDER):
        self.folder = Path(folder)
        self._texts: dict[str, str] = {}

    def path(self, name: str) -> Path:
        return self.folder / f"{Path(name).stem}.rst"

    def text(self, name: str) -> str:
        if name not in self._texts:
            path = self.path(name)
            try:
                self._texts[name] = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise XbmlError(f"caption file {path} is missing; {CAPTIONS_HINT}") from None
        return self._texts[name]

    def check(self, names) -> None:
        """Fail before anything is drawn when a caption file is missing."""
        for name in names:
            self.text(name)

    def html(self, name: str, dataset: str, config: dict) -> str:
        return rst_to_html(self.text(name), dataset, config, self.path(name))


def rst_to_html(text: str, dataset: str, config: dict, source: Path | str = "caption") -> str:
    paragraphs = []
    for block in re.split(r"\n\s*\n", _without_comments(text)):
        words = " ".join(line.strip() for line in block.splitlines() if line.strip())
        if words:
            paragraphs.append(_inline(_fill(words, dataset, config, source)))
    return " ".join(paragraphs)


def _without_comments(text: str) -> str:
    out, in_comment = [], False
    for line in text.splitlines():
        if line.startswith(".."):
            in_comment = True
        elif not (in_comment and line[:1].isspace() and line.strip()):
            in_comment = False  # a blank or unindented line ends a comment
            out.append(line)
    return "\n".join(out)


def _fill(text: str, dataset: str, config: dict, source) -> str:
    def value(match: re.Match) -> str:
        expr = match.group(1)
        if expr == "snakemake.wildcards.dataset":
            return dataset
        if expr.startswith("snakemake.config."):
            node = config
            for key in expr.removeprefix("snakemake.config.").split("."):
                if not isinstance(node, dict) or key not in node:
                    raise XbmlError(f"caption {source}: {{{{ {expr} }}}} names no value of the workflow config")
                node = node[key]
            return str(node)
        raise XbmlError(f"caption {source}: unknown placeholder {{{{ {expr} }}}}; captions may use "
                        "{{ snakemake.wildcards.dataset }} and {{ snakemake.config.<key> }}")

    return _PLACEHOLDER.sub(value, text)


def _inline(text: str) -> str:
    out, at = [], 0
    for m in _INLINE.finditer(text):
        out.append(esc(text[at:m.start()]))
        literal, strong, emphasis = m.groups()
        if literal is not None:
            out.append(f"<code>{esc(literal)}</code>")
        elif strong is not None:
            out.append(f"<strong>{esc(strong)}</strong>")
        else:
            out.append(f"<em>{esc(emphasis)}</em>")
        at = m.end()
    out.append(esc(text[at:]))
    return "".join(out)
