"""Options several commands share: ``--offline``, ``-v`` / ``-q``."""

from __future__ import annotations

import argparse

OFFLINE_HELP = (
    "never download: metric weights (pyiqa's caches) and hf:// / https:// checkpoints must already be there, a "
    "missing one is named with where to put it (same as ALIGNVAR_OFFLINE=1 or HF_HUB_OFFLINE=1). Default: online, "
    "missing files are fetched before any work starts"
)


def add_offline(parser: argparse.ArgumentParser, help: str = OFFLINE_HELP) -> None:
    parser.add_argument("--offline", action="store_true", help=help)


def apply_offline(args: argparse.Namespace) -> None:
    """``--offline`` -> ``ALIGNVAR_OFFLINE=1`` and ``HF_HUB_OFFLINE=1`` for this process and its children (cells,
    ranks); set before anything imports huggingface_hub."""
    if getattr(args, "offline", False):
        from harness.core.fetch import set_offline

        set_offline()


VERBOSE_HELP = "more diagnostics on stderr: -v debug messages with times and logger names, -vv libraries' too"
QUIET_HELP = "fewer diagnostics on stderr: -q warnings and errors only (no progress), -qq errors only"


def add_verbosity(parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: object = 0) -> None:
    """``-v``/``--verbose`` and ``-q``/``--quiet`` (counted). A command's (and a sub-command's) have a suppressed
    default, so that ``run.py -v bench`` and ``run.py bench -v`` both work (harness.cli.main reads them)."""
    parser.add_argument("-v", "--verbose", action="count", default=default, help=VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="count", default=default, help=QUIET_HELP)
