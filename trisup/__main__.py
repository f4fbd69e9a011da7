"""The ``trisup`` command line (also ``python -m trisup``).

Subcommands:

- ``trisup demo [--duration SECONDS]``: run a small supervision tree and narrate it.

``main`` returns the exit code instead of exiting, so it can be called from
tests; argparse's usage errors return 2.
"""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__
from ._demo import DEFAULT_DURATION, run_demo

__all__ = ["build_parser", "main"]


def _seconds(text: str) -> float:
    """Parse a positive, finite number of seconds (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive, finite number of seconds, not {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``trisup`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="trisup",
        description="trisup: a Trio-native service supervisor.",
        epilog="Run 'trisup demo' to watch a supervision tree at work.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run a small supervision tree for a while and narrate it",
        description=(
            "Run a small supervision tree (a steady worker, a flaky one that backs off, "
            "one that fails for good, one that reports readiness and a nested manager), "
            "print each status change as it happens, then a table of every service's info. "
            "Ctrl-C stops it early, gracefully."
        ),
    )
    demo.add_argument(
        "--duration",
        type=_seconds,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help="how long to run before shutting down (default: %(default)g)",
    )
    return parser


def _exit_code(code: object) -> int:
    """The process exit code that ``sys.exit(code)`` would give."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the ``trisup`` command line with *argv* (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 on success (also for ``--help``, ``--version`` and no
        command, which prints the usage), 2 for a usage error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return _exit_code(exc.code)
    command: str | None = args.command
    if command == "demo":
        duration: float = args.duration
        try:
            return run_demo(duration)
        except KeyboardInterrupt:  # only outside the demo's signal handling
            print("trisup demo: interrupted", file=sys.stderr)
            return 130
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
