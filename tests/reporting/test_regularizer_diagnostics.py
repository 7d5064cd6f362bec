"""Did each regulariser learn: the sentences and rows the report makes of train_summary.json."""

import math

from synthetic import xml_summary

from xbml.reporting.regularizer_diagnostics import NOT_RECORDED, blocks_of, collect, seed_rows, sentence


def _summary(**blocks) -> dict:
    return {"iterations": 5, "regularizers": blocks}


def test_blocks_of_a_baseline_and_of_a_summary_without_any():
    assert blocks_of(_summary(xml=xml_summary()))["xml"]["learned"] is True
    assert blocks_of(_summary()) == {} and blocks_of({"iterations": 5}) == {}
    assert collect({0: _summary(), 1: _summary()}, "baseline") == []


def test_the_loss_fell_below_chance():
    blocks = {s: _summary(xml=xml_summary(ratio=r, num_classes=660)) for s, r in enumerate((0.85, 0.87, 0.89))}
    (diag,) = collect(blocks, "xml")
    assert sentence(diag) == ("xml: the XML prediction loss fell to 0.87 \u00d7 chance (6.49) over the last 10% of "
                              "iterations (mean over 3 seeds, range 0.85\u20130.89).")
    (one,) = collect({0: _summary(xml=xml_summary(ratio=0.87, num_classes=660))}, "xml")
    assert sentence(one) == "xml: the XML prediction loss fell to 0.87 \u00d7 chance (6.49) over the last 10% of iterations."


def test_never_left_chance_in_every_seed_or_in_some():
    (never,) = collect({s: _summary(xml=xml_summary(learned=False, ratio=0.999)) for s in range(3)}, "xml")
    assert sentence(never) == (
        f"xml: the XML prediction loss never left chance ({math.log(100):.2f}; it ended at 1.00 \u00d7 chance "
        "over the last 10% of iterations): the regulariser had no effect in this run.")
    (mixed,) = collect({0: _summary(xml=xml_summary(ratio=0.8)), 1: _summary(xml=xml_summary(learned=False, ratio=1.0))},
                       "xml")
    text = sentence(mixed)
    assert text.startswith("xml: the XML prediction loss fell to 0.80 \u00d7 chance")
    assert text.endswith("in seed 1 it never left chance: the regulariser had no effect there.")


def test_no_chance_level_and_a_seed_without_the_block():
    block = {**xml_summary(), "chance_loss": None, "ratio_to_chance": None, "learned": None, "final_loss": 0.123}
    (diag,) = collect({0: _summary(xml=block), 1: _summary()}, "xml")
    assert sentence(diag) == ("xml: the XML prediction loss ended at 0.12 over the last 10% of iterations; it has no "
                              f"chance level to compare with; seed 1: {NOT_RECORDED}.")
    rows = seed_rows(diag)
    assert [r["recorded"] for r in rows] == [True, False]
    assert rows[0]["diagnostics"] == {"assignment entropy (nats)": 1.1, "effective prototypes": 9.5}


def test_two_regularisers_of_one_run_are_two_diagnostics():
    other = {"label": "XBM memory loss", "weight": 0.5, "chance_loss": None, "final_loss": 0.4,
             "ratio_to_chance": None, "learned": None, "window_iterations": 10,
             "diagnostics": {"memory_fill": {"label": "share of the memory filled", "value": 1.0}}, "facts": {}}
    diags = collect({0: _summary(xml=xml_summary(), xbm=other)}, "both")
    assert [(d.name, d.label) for d in diags] == [("xml", "XML prediction loss"), ("xbm", "XBM memory loss")]
    assert sentence(diags[1]) == ("both: the XBM memory loss ended at 0.40 over the last 10% of iterations; it has "
                                  "no chance level to compare with.")
