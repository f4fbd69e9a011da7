"""The ``trisup`` command line (also ``python -m trisup``).

Subcommands:

- ``trisup run FILE [--no-live] [--subreaper]``: supervise the services a TOML file declares.
- ``trisup check FILE [--failures N]``: validate the file; print each restart schedule.
- ``trisup status [NAME...]``, ``start|stop|restart|reset NAME...|all``,
  ``tail [-f] [-n N] NAME``, ``reload``: control a running ``trisup run`` over its
  socket (``-s PATH``, ``-c FILE``) or its console (``--url URL [--token TOKEN]``).
- ``trisup demo [--duration SECONDS] [--no-live] [--print-config]``: the showcase.

``main`` returns the exit code instead of exiting, so it can be called from
tests; argparse's usage errors return 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from . import __version__
from ._cli import check_command, run_command
from ._control import control_command
from ._demo import DEFAULT_DURATION, demo_config, run_demo

__all__ = ["build_parser", "main"]

CONTROL_COMMANDS = ("status", "start", "stop", "restart", "reset", "tail", "reload")


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


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` parsing an int of at least *minimum*."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {text!r}")
        return value

    return parse


def _control_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:  # pyright: ignore[reportPrivateUsage]
    """``status``, the verbs, ``tail`` and ``reload``: commands to a running ``trisup run``."""
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_argument_group("connection (default: the only socket of the default dir)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("-s", "--socket", default=None, metavar="PATH", help="the control socket")
    choice.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help="the TOML file 'trisup run' serves: its [manager] socket or name gives the socket",
    )
    choice.add_argument(
        "--url", default=None, help="an HTTP console's base URL, e.g. http://127.0.0.1:8080/debug"
    )
    group.add_argument("--token", default=None, help="the console's token (default: $TRISUP_TOKEN)")
    group.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for an answer (default: %(default)g)",
    )
    group.add_argument("--json", action="store_true", help="print JSON, for scripts")
    status = commands.add_parser(
        "status",
        parents=[where],
        help="print the services table of a running instance",
        description="Print the services of a running 'trisup run' (all, or the NAMEs): "
        "status, phase, pid, starts, restarts, uptime, last error.",
    )
    status.add_argument("names", nargs="*", metavar="NAME", help="only these services")
    for verb in ("start", "stop", "restart", "reset"):
        action = commands.add_parser(
            verb,
            parents=[where],
            help=f"{verb} services of a running instance",
            description=f"{verb.capitalize()} the NAMEd services of a running 'trisup run', "
            "one after another ('all': every service, skipping those already in that state). "
            "Exit status 1 if any was refused.",
        )
        action.add_argument("names", nargs="+", metavar="NAME", help="a service, or 'all'")
    tail = commands.add_parser(
        "tail",
        parents=[where],
        help="print a process's recent output (and follow it with -f)",
        description="Print the last lines a process wrote (stdout and stderr), then with -f "
        "the new ones as they come, until Ctrl-C.",
    )
    tail.add_argument("names", nargs=1, metavar="NAME", help="the process")
    tail.add_argument("-f", "--follow", action="store_true", help="print new lines as they come")
    tail.add_argument(
        "-n",
        "--lines",
        type=_at_least(0),
        default=10,
        metavar="N",
        help="how many recent lines to print first (default: %(default)d)",
    )
    commands.add_parser(
        "reload",
        parents=[where],
        help="re-read the TOML file of a running instance",
        description="Make a running 'trisup run' re-read its file (as SIGHUP does): new "
        "services are added, removed ones deleted, changed ones replaced (restarted), the "
        "others left running. An invalid file changes nothing (exit status 1).",
    )


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
        type=_at_least(1),
        default=10,
        metavar="N",
        help=(
            "how many starts to list of a service that keeps restarting; one that gives up"
            " is played out until it does (default: %(default)d)"
        ),
    )
    _control_parsers(commands)
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
        if command in CONTROL_COMMANDS:
            return control_command(
                command,
                names=getattr(args, "names", ()),
                socket_path=args.socket,
                url=args.url,
                token=args.token,
                file=args.config,
                timeout=args.timeout,
                as_json=args.json,
                lines=getattr(args, "lines", 10),
                follow=getattr(args, "follow", False),
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
