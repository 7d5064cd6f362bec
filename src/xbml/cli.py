"""`python -m xbml <step>`: one sub-command per workflow step.

Each step lives in `xbml.commands.<module>` with `add_arguments(parser)` and
`run(args) -> int`. Command modules import nothing heavy at module level, so
building the parser never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from xbml.errors import XbmlError

COMMANDS = {
    "fetch": ("xbml.commands.fetch", "download (or generate) a dataset's raw files, verified"),
    "prepare": ("xbml.commands.prepare", "parse a raw dataset into the common manifest"),
    "train": ("xbml.commands.train", "train an embedding model (baseline or XML), resumable"),
    "embed": ("xbml.commands.embed", "write L2-normalised embeddings of a split to .npz"),
    "concatenate": ("xbml.commands.concatenate", "concatenate several models' embeddings of a split (4-fold protocol)"),
    "evaluate": ("xbml.commands.evaluate", "MAP@R, R-Precision, P@1, Recall@k from an embeddings file"),
    "embed-evaluate": ("xbml.commands.embed_evaluate", "embed and evaluate several splits of a model in one process"),
    "version": ("xbml.commands.version", "version a dataset folder with DVC and push it to the remote"),
    "dvc-pipeline": ("xbml.commands.dvc_pipeline", "write the files DVC tracks for metrics and plots (metrics/<dataset>/)"),
    "aggregate": ("xbml.commands.aggregate", "collect per-run metrics into one table"),
    "report": ("xbml.commands.report", "render the seaborn/HTML report of a dataset"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m xbml", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="<step>", required=True)
    for name, (module, help_text) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # a step not built yet is simply not offered
        p = sub.add_parser(name, help=help_text, description=help_text)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args._run(args) or 0)
    except XbmlError as exc:
        print(f"xbml {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xbml {args.command}: interrupted", file=sys.stderr)
        return 130
