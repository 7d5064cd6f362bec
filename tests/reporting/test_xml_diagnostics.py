"""The XML diagnostics sentences from train_summary.json blocks, old summaries included."""

from __future__ import annotations

import math

from synthetic import xml_summary

from xbml.reporting.xml_diagnostics import NOT_RECORDED, collect, seed_rows, sentence, xml_block


def test_a_block_an_explicit_baseline_and_an_old_summary():
    assert xml_block({"xml": xml_summary()})["learned"] is True
    assert xml_block({"xml": None}) is None
    assert xml_block({"iterations": 10}) == NOT_RECORDED
    assert collect({0: {"xml": None}, 1: {"xml": None}}, "baseline", uses_xml=False) is None
    assert collect({0: {}}, "baseline", uses_xml=False) is None  # a baseline's old summary is no XML run


def test_the_loss_fell_below_chance():
    blocks = {s: {"xml": xml_summary(ratio=r, num_classes=660)} for s, r in enumerate((0.85, 0.87, 0.89))}
    text = sentence(collect(blocks, "xml", uses_xml=True))
    assert text == ("xml: the XML prediction loss fell to 0.87 \u00d7 chance (ln C = 6.49) over the last 10% of "
                    "iterations (mean over 3 seeds, range 0.85\u20130.89).")
    one = sentence(collect({0: {"xml": xml_summary(ratio=0.87, num_classes=660)}}, "xml", uses_xml=True))
    assert one == "xml: the XML prediction loss fell to 0.87 \u00d7 chance (ln C = 6.49) over the last 10% of iterations."


def test_never_left_chance_in_every_seed_or_in_some():
    never = {s: {"xml": xml_summary(learned=False, ratio=0.999)} for s in range(3)}
    assert sentence(collect(never, "xml", uses_xml=True)) == (
        f"xml: the XML prediction loss never left chance (ln C = {math.log(100):.2f}; it ended at 1.00 \u00d7 chance "
        "over the last 10% of iterations): the regulariser had no effect in this run.")
    mixed = {0: {"xml": xml_summary(ratio=0.8)}, 1: {"xml": xml_summary(learned=False, ratio=1.0)}}
    text = sentence(collect(mixed, "xml", uses_xml=True))
    assert "fell to 0.80 \u00d7 chance" in text  # the mean over the seeds that learned
    assert "in seed 1 it never left chance: the regulariser had no effect there" in text


def test_no_chance_level_and_not_recorded_seeds():
    block = {**xml_summary(), "prediction_loss": "ridge_mse", "chance_loss": None, "ratio_to_chance": None,
             "learned": None, "final_loss_xml": 0.123}
    text = sentence(collect({0: {"xml": block}, 1: {"iterations": 5}}, "xml", uses_xml=True))
    assert text.startswith("xml: the XML prediction loss ended at 0.12 over the last 10% of iterations; its "
                           "prediction loss (ridge_mse) is not a softmax over classes")
    assert text.endswith(f"; seed 1: {NOT_RECORDED}.")
    old = collect({0: {}, 1: {"iterations": 5}}, "xml", uses_xml=True)
    assert sentence(old).startswith(f"xml: XML diagnostics {NOT_RECORDED}")
    rows = seed_rows(old)
    assert [r["seed"] for r in rows] == [0, 1] and not any(r["recorded"] for r in rows)
