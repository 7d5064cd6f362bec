"""The caption files as HTML: comments left out, placeholders filled, RST inline markup converted."""

from __future__ import annotations

import pytest

from xbml.errors import XbmlError
from xbml.reporting.captions import Captions, rst_to_html

CONFIG = {"baseline": "base_line", "report": {"confidence": 0.9}}


def test_comments_placeholders_and_inline_markup():
    rst = (".. a comment naming {{ snakemake.params.nothing }}\n   and its second line\n\n"
           "Runs of **{{ snakemake.wildcards.dataset }}** against *{{ snakemake.config.baseline }}*,\n"
           "see ``comparisons.csv`` (a < b, 1 * 2).\n\nSecond paragraph at {{ snakemake.config.report.confidence }}.\n")
    assert rst_to_html(rst, "cub", CONFIG) == (
        "Runs of <strong>cub</strong> against <em>base_line</em>, see <code>comparisons.csv</code> "
        "(a &lt; b, 1 * 2). Second paragraph at 0.9.")


def test_literal_text_is_not_marked_up():
    assert rst_to_html("``**kwargs``", "d", CONFIG) == "<code>**kwargs</code>"


@pytest.mark.parametrize("expr, words", [
    ("snakemake.params.confidence", "unknown placeholder"),
    ("snakemake.config.report.missing", "names no value of the workflow config"),
])
def test_a_placeholder_that_cannot_be_filled_names_the_file(expr, words):
    with pytest.raises(XbmlError, match=words) as exc:
        rst_to_html(f"at {{{{ {expr} }}}}", "d", CONFIG, "workflow/report/sweeps.rst")
    assert "workflow/report/sweeps.rst" in str(exc.value)


def test_a_missing_caption_file_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(XbmlError) as exc:
        Captions(tmp_path).check(["sweeps.png"])
    assert f"caption file {tmp_path / 'sweeps.rst'} is missing" in str(exc.value)
    assert "--captions" in str(exc.value)


def test_every_figure_has_a_caption_file_that_renders():
    from conftest import ROOT
    from xbml.reporting.figures import FIGURES

    captions = Captions(ROOT / "workflow" / "report")
    config = {"baseline": "b", "report": {"confidence": 0.9, "retrieval_k": 5}}
    for name in FIGURES:
        text = captions.html(name, "d", config)
        assert text and "{{" not in text and "``" not in text and "**" not in text, name
