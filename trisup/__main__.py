"""The ``trisup`` command line (also ``python -m trisup``).

Subcommands:

- ``trisup run FILE [--no-live] [--subreaper]``: supervise the services a TOML file declares.
- ``trisup check FILE [--failures N]``: validate the file; print each restart schedule.
- ``trisup status --url URL [--token TOKEN]``: the services table of a running instance.
- ``trisup demo [--duration SECONDS] [--no-live] [--print-config]``: the showcase.

``main`` returns the exit code instead of exiting, so it can be called from
tests; argparse's usage errors return 2.
"""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__
from ._cli import check_command, run_command, status_command
from ._demo import DEFAULT_DURATION, demo_config, run_demo

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


def _count(text: str) -> int:
    """Parse a positive int (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text!r}")
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
    run = commands.add_parser(
        "run",
        help="supervise the services declared in a TOML file",
        description=(
            "Supervise the processes declared in a TOML file until SIGINT or SIGTERM. "
            "In a terminal a live table shows every service; otherwise (or with --no-live) "
            "one key=value log line is printed per event. The first signal stops the tree "
            "gracefully, a second one kills every process at once. Exit status: 0 after a "
            "graceful stop, the status of a fatal error, 1 for an invalid file."
        ),
    )
    run.add_argument("file", metavar="FILE", help="the TOML file (see 'trisup check')")
    run.add_argument("--no-live", action="store_true", help="print log lines even in a terminal")
    run.add_argument(
        "--subreaper",
        action="store_true",
        help=(
            "adopt and reap the orphans of the services' descendants, and kill those that"
            " escaped their process group at shutdown (Linux; automatic as PID 1)"
        ),
    )
    check = commands.add_parser(
        "check",
        help="validate a TOML file and print each service's restart schedule",
        description=(
            "Validate a TOML file as 'trisup run' would, then print each service's "
            "settings and when it would be restarted, and given up on, if it failed at once."
        ),
    )
    check.add_argument("file", metavar="FILE", help="the TOML file")
    check.add_argument(
        "--failures",
        type=_count,
        default=10,
        metavar="N",
        help=(
            "how many starts to list of a service that keeps restarting; one that gives up"
            " is played out until it does (default: %(default)d)"
        ),
    )
    status = commands.add_parser(
        "status",
        help="print the services table of a running instance",
        description=(
            "Fetch GET URL/api/services from a running instance's HTTP console and "
            "print the same table as the live view."
        ),
    )
    status.add_argument(
        "--url", required=True, help="the console's base URL, e.g. http://127.0.0.1:8080/debug"
    )
    status.add_argument(
        "--token", default=None, help="the console's token (default: $TRISUP_TOKEN)"
    )
    status.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the answer (default: %(default)g)",
    )
    demo = commands.add_parser(
        "demo",
        help="supervise real processes and in-process services for a while",
        description=(
            "Supervise a tree of real child processes (a steady one, a flaky one that "
            "crashes and backs off, one that asks for a restart with exit code 3) beside "
            "in-process services (one that fails for good, a nested manager), with the live "
            "view in a terminal, then print a table of every service's info. "
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
    demo.add_argument("--no-live", action="store_true", help="print log lines even in a terminal")
    demo.add_argument(
        "--print-config",
        action="store_true",
        help="print the processes' TOML configuration (for 'trisup run') and exit",
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
        command, which prints the usage), 2 for a usage error; ``run`` also
        returns the `ExitStatus` of a fatal error, and 1 for an invalid file.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return _exit_code(exc.code)
    command: str | None = args.command
    try:
        if command == "run":
            return run_command(
                args.file,
                live=not args.no_live,
                subreaper=args.subreaper,
                out=sys.stdout,
                err=sys.stderr,
                final=argv is None,  # the program itself: it exits once this returns
            )
        if command == "check":
            return check_command(args.file, failures=args.failures, out=sys.stdout, err=sys.stderr)
        if command == "status":
            return status_command(
                args.url, token=args.token, timeout=args.timeout, out=sys.stdout, err=sys.stderr
            )
        if command == "demo":
            if args.print_config:
                sys.stdout.write(demo_config())
                return 0
            return run_demo(args.duration, live=not args.no_live)
    except KeyboardInterrupt:  # only outside the commands' own signal handling
        print(f"trisup {command}: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
