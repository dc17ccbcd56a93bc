"""Shared command-line plumbing: logging, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from steps.errors import PubflowError

log = logging.getLogger("pubflow")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every step shares."""
    p = argparse.ArgumentParser(
        prog=f"python -m steps.{prog}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return p


def _quiet_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    log.debug("ignored during clean-up: %r", unraisable.exc_value)


def _quiet_excepthook(kind: type[BaseException], value: BaseException, tb: object) -> None:
    log.debug("ignored during clean-up: %r", value)


def run(
    main: Callable[[argparse.Namespace], None],
    build_parser: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse arguments, run ``main`` and turn a ``PubflowError`` into one line and exit 1."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # cabinetry and pyhf are chatty at INFO; their details belong in --verbose
    for noisy in ("cabinetry", "pyhf", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    prog = build_parser().prog
    try:
        main(args)
    except PubflowError as err:
        # Objects left half-open by the failure (e.g. an XRootD file whose server went away)
        # complain again when garbage-collected; the cause is reported below, once.
        sys.unraisablehook = _quiet_unraisable
        sys.excepthook = _quiet_excepthook  # also used for atexit finalizers' errors
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
