"""Sessions: tests, lint, typecheck, docs, demo, bench, fuzz (``nox -s NAME``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite against the installed (non-editable) package."""
    session.install(".[test]")
    session.run("coverage", "run", "-m", "pytest", *session.posargs, env={"PYTHONHASHSEED": "0"})
    session.run("coverage", "report", "--fail-under=93")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    paths = ["trisup", "tests", "bench", "tools", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict and pyright (strict) on the package and the tests."""
    session.install(".[test]", "mypy>=1.11", "pyright>=1.1.380")
    session.run("mypy")
    session.run("pyright")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx documentation, warnings as errors."""
    session.install(".[docs]")
    session.run("sphinx-build", "-W", "-b", "html", "docs", "docs/_build/html")


@nox.session
def demo(session: nox.Session) -> None:
    """Run ``trisup demo``."""
    session.install(".[cli]")
    session.run("trisup", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark suite against the installed package (not run by CI).

    Pass ``-- --quick`` for a run under a minute, ``-- --json FILE`` to keep the rows.
    """
    session.install(".")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Search far longer for counter-examples; regenerate docs/reliability.md (not in CI).

    Runs the model check, fault injection, soak and hostile-input tests under the
    ``fuzz`` hypothesis profile. Extra arguments go to pytest: ``nox -s fuzz -- -x``.
    """
    session.install(".[test]")
    session.run(
        "python",
        "tools/reliability_report.py",
        "--",
        *session.posargs,
        env={"HYPOTHESIS_PROFILE": "fuzz", "PYTHONHASHSEED": "0"},
    )
