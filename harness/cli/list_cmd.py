"""``run.py list``: every registered method, dataset, metric, degradation, model and trainer."""

from __future__ import annotations

import argparse

HELP = "list every registered method, dataset, metric, degradation, model and trainer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", nargs="?", help="only this kind (methods, datasets, metrics, ...)")


def run(args: argparse.Namespace) -> int:
    from harness.core import registry

    if args.kind:
        entries = registry.list_entries(args.kind)
        width = max((len(n) for n in entries), default=0)
        for name, entry in entries.items():
            print(f"{name:<{width}}  {entry.description}")
    else:
        print(registry.describe())
    return 0
