"""Shared command-line plumbing: logging, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from steps.errors import PubflowError

log = logging.getLogger("pubflow")


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every step shares."""
    p = argparse.ArgumentParser(
        prog=f"python -m steps.{prog}",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _shared_options(p)
    return p


def subcommand(subparsers: argparse._SubParsersAction, name: str, **kwargs: Any
               ) -> argparse.ArgumentParser:
    """A subcommand's parser, which also takes the shared options after the subcommand."""
    p = subparsers.add_parser(name, **kwargs)
    # SUPPRESS: an option not repeated here keeps the value given before the subcommand
    _shared_options(p, default=argparse.SUPPRESS)
    return p


def _shared_options(p: argparse.ArgumentParser, **default: Any) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages", **default)
    p.add_argument("--log", metavar="FILE", type=Path, **default,
                   help="also write every message to FILE (a workflow rule's log file)")


class _Tee:
    """A text stream writing to several: stderr and the job's log file.

    On REANA, ``reana-client logs`` shows a job's own stderr, and Snakemake keeps the rule's
    ``log:`` file; a shell ``2> log`` would leave the first empty.
    """

    def __init__(self, *streams: TextIO) -> None:
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self._streams:
            stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._streams[0].fileno()


def _tee_stderr(path: Path) -> None:
    """Send all that goes to ``sys.stderr`` (logging, warnings, tracebacks) also to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)  # REANA makes no directory before a job
    # Line-buffered and left open: the interpreter flushes sys.stderr as it shuts down,
    # after atexit handlers, so a file closed there would make that flush fail.
    log_file = open(path, "w", buffering=1)  # noqa: SIM115
    sys.stderr = _Tee(sys.stderr, log_file)  # type: ignore[assignment]


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
    teed = getattr(args, "log", None) is not None
    if teed:
        _tee_stderr(args.log)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        force=teed,  # a handler made earlier would still write to the old stderr
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
