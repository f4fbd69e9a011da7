"""Services declared in TOML: loading, validation and building the manager.

The format::

    [manager]                     # optional: Manager keyword arguments
    name = "app"
    stop_timeout = 30
    stop_order = "dependencies"   # the default here; "position" for OTP's order
    socket = "run/app.sock"       # trisup run's control socket (not a Manager argument)

    [http]                        # optional: the HTTP console (the http extra)
    bind = "127.0.0.1:8080"
    prefix = "/debug/supervisor"
    token = "..."

    [services.web]                # one table per service, started in file order
    command = ["python3", "-m", "http.server", "8000"]   # or a string, split by shlex
    cwd = "site"                  # relative to the file's directory (the default)
    env = { PYTHONUNBUFFERED = "1" }
    ready_pattern = "Serving HTTP"
    restart_policy = "on_failure" # and every other ServiceConfig field
    start_timeout = "none"        # no limit (TOML has no null)
    depends_on = ["db"]
    stdout_logfile = "logs/web.log"   # relative to the file's directory; or logfile
    logfile_maxbytes = "50MB"     # rotation by size, logfile_backups = 10 kept
    log_output = false            # each line also logged (default: only without a file)

    [services.worker]             # replicas: services worker-0 ... worker-3
    replicas = 4
    command = "python3 worker.py --slot {index}"   # {{ and }} for literal braces

Every error names the file, the table and the key. The checks are those of
`ProcessService`, `ServiceConfig` and `Manager` themselves, tried one key at a
time so that the key at fault is known.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import shlex
import shutil
import signal
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import final

from ._config import ServiceConfig, parse_policy, repair
from ._manager import Manager
from ._replicas import expand_replicas
from ._service import Service
from .process import ProcessService, kill_after_for

__all__ = ["ConfigError", "HttpPlan", "Plan", "ServicePlan", "build", "load_config", "parse_config"]

_PROCESS_KEYS = (
    "ready_pattern",
    "ready_after",
    "stop_signal",
    "kill_after",
    "fatal_exit_codes",
    "output_lines",
    "user",
    "group",
    "umask",
    "logfile_maxbytes",
    "logfile_backups",
    "log_output",
)
_LOG_PATH_KEYS = ("stdout_logfile", "stderr_logfile", "logfile")
_HTTP_KEYS = ("bind", "prefix", "token")


class ConfigError(Exception):
    """A configuration file is invalid; the message names file, table and key.

    Attributes:
        file: the file's path as given.
        table: the TOML table (``"services.web"``), or ``None`` for the file.
        key: the key at fault, or ``None`` for the whole table.
        problem: what is wrong.
    """

    def __init__(self, file: str, table: str | None, key: str | None, problem: str) -> None:
        self.file = file
        self.table = table
        self.key = key
        self.problem = problem
        where = file
        if table is not None:
            where += f": [{table}]"
        if key is not None:
            where += f" {key}" if table is not None else f": {key}"
        super().__init__(f"{where}: {problem}")


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePlan:
    """One ``[services.NAME]`` table, validated.

    Attributes:
        name: the service's name (the table's key).
        process: keyword arguments of `ProcessService` (``argv`` included).
        config: the service's `ServiceConfig`, repaired as `Manager.add` does
            (each repair logged at WARNING when the file is loaded).
        depends_on: the names of the services it depends on.
    """

    name: str
    process: Mapping[str, object]
    config: ServiceConfig
    depends_on: tuple[str, ...]

    def make_service(self) -> ProcessService:
        """A new `ProcessService` for this table."""
        return ProcessService(self.name, **self.process)  # type: ignore[arg-type]  # checked when loaded


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPlan:
    """The ``[http]`` table: keyword arguments of ``trisup.http.ConsoleService``."""

    options: Mapping[str, str]


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A validated configuration file.

    Attributes:
        file: the file's path as given.
        manager: keyword arguments of `Manager`.
        services: the services, in file order.
        http: the console's options, or ``None`` without an ``[http]`` table.
        warnings: things that are allowed but probably wrong.
        socket: ``[manager] socket``, the control socket's path (resolved against
            the file's directory), or ``None`` for the default.
    """

    file: str
    manager: Mapping[str, object]
    services: tuple[ServicePlan, ...]
    http: HttpPlan | None
    warnings: tuple[str, ...]
    socket: str | None = None


def load_config(path: str | os.PathLike[str]) -> Plan:
    """Read and validate the TOML file at *path*.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or is invalid.
    """
    file = os.fspath(path)
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise ConfigError(file, None, None, f"cannot read it: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, None, f"not UTF-8 text: {exc}") from None
    return parse_config(text, file=file, base_dir=Path(file).resolve().parent)


def parse_config(text: str, *, file: str, base_dir: Path) -> Plan:
    """Validate the TOML *text*; *file* names it in errors, *base_dir* anchors paths.

    Raises:
        ConfigError: the text is not TOML or is invalid.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, None, None, f"invalid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays / tables
        raise ConfigError(file, None, None, "invalid TOML: nested too deeply") from None
    return _Parser(file, base_dir).document(document)


def _strip(message: str, key: str) -> str:
    """Drop a leading key name from a message that already names it."""
    return message[len(key) + 1 :] if message.startswith(key + " ") else message


def _type(value: object) -> str:
    return {
        "str": "a string",
        "int": "an integer",
        "float": "a float",
        "bool": "a boolean",
        "list": "an array",
        "dict": "a table",
    }.get(type(value).__name__, type(value).__name__)


def _add_accepts(keyword: str) -> bool:
    """Whether `Manager.add_with_config` takes *keyword*."""
    return keyword in inspect.signature(Manager.add_with_config).parameters


class _Parser:
    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.warnings: list[str] = []

    def error(self, table: str | None, key: str | None, problem: str) -> ConfigError:
        return ConfigError(self.file, table, key, problem)

    def table(self, value: object, table: str, key: str | None = None) -> dict[str, object]:
        if not isinstance(value, dict):
            raise self.error(table, key, f"must be a table, not {_type(value)}")
        return value  # pyright: ignore[reportUnknownVariableType]

    def document(self, document: dict[str, object]) -> Plan:
        for key in document:
            if key not in ("manager", "services", "http"):
                raise self.error(
                    None, key, "unknown key (expected [manager], [services.NAME] or [http])"
                )
        manager_table = self.table(document.get("manager", {}), "manager")
        socket = self.socket(manager_table.pop("socket", None))
        manager = self.manager(manager_table)
        services_table = self.table(document.get("services", {}), "services")
        if not services_table:
            raise self.error("services", None, "no services: add a [services.NAME] table")
        services = self.services(services_table)
        http = None
        if "http" in document:
            http = self.http(self.table(document["http"], "http"))
        self.check_cycles(services)
        return Plan(
            file=self.file,
            manager=manager,
            services=services,
            http=http,
            warnings=tuple(self.warnings),
            socket=socket,
        )

    def socket(self, value: object) -> str | None:
        """``[manager] socket``: a path, relative to the file's directory."""
        if value is None:
            return None
        if not isinstance(value, str) or not value or "\0" in value:
            raise self.error("manager", "socket", f"must be a non-empty path, not {value!r}")
        return str(self.base_dir / Path(value).expanduser())

    def check_cycles(self, services: tuple[ServicePlan, ...]) -> None:
        graph = {s.name: s.depends_on for s in services}
        done: set[str] = set()

        def visit(name: str, path: list[str]) -> None:
            if name in path:
                cycle = " -> ".join([*path[path.index(name) :], name])
                raise self.error(f"services.{path[-1]}", "depends_on", f"a cycle: {cycle}")
            if name in done:
                return
            for dependency in graph[name]:
                visit(dependency, [*path, name])
            done.add(name)

        for name in graph:
            visit(name, [])

    def services(self, services_table: dict[str, object]) -> tuple[ServicePlan, ...]:
        """Every service, ``replicas`` expanded (`_replicas.py`), dependencies on a
        replicated service meaning all its replicas."""
        expanded = expand_replicas(
            {name: self.table(value, f"services.{name}") for name, value in services_table.items()},
            self.error,
        )
        names = [*services_table, *expanded.names]
        plans: list[ServicePlan] = []
        for name, (table_name, table) in expanded.tables.items():
            plan = self.service(name, table, names, where=f"services.{table_name}")
            if plan.depends_on:
                deps = tuple(d for dep in plan.depends_on for d in expanded.groups.get(dep, [dep]))
                plan = dataclasses.replace(plan, depends_on=deps)
            plans.append(plan)
        return tuple(plans)

    def manager(self, table: dict[str, object]) -> dict[str, object]:
        allowed = [
            p.name
            for p in inspect.signature(Manager).parameters.values()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "rng"
        ]
        for key, value in table.items():
            if key not in allowed:
                expected = ", ".join([*allowed, "socket"])
                raise self.error("manager", key, f"unknown key (expected {expected})")
            try:
                Manager(**{key: value})  # type: ignore[arg-type]  # the check is the point
            except (TypeError, ValueError) as exc:
                raise self.error("manager", key, _strip(str(exc), key)) from None
        return dict(table)

    def service(
        self, name: str, table: dict[str, object], names: list[str], *, where: str = ""
    ) -> ServicePlan:
        where = where or f"services.{name}"
        config_fields = [f.name for f in dataclasses.fields(ServiceConfig)]
        process: dict[str, object] = {}
        config: dict[str, object] = {}
        depends_on: tuple[str, ...] = ()
        if "command" in table and "argv" in table:
            raise self.error(where, "argv", "give either command or argv, not both")
        for key, value in table.items():
            if key in ("command", "argv"):
                process["argv"] = self.argv(where, key, value)
            elif key == "cwd":
                process["cwd"] = self.cwd(where, value)
            elif key == "env":
                process["env"] = self.env(where, value)
            elif key == "stop_signal":
                process["stop_signal"] = self.stop_signal(where, value)
            elif key in _LOG_PATH_KEYS:
                process[key] = self.log_path(where, key, value)
            elif key in _PROCESS_KEYS:
                self.check_process(name, where, key, value)
                process[key] = value
            elif key == "restart_policy" and isinstance(value, str):
                try:
                    config[key] = parse_policy(value)
                except ValueError as exc:
                    raise self.error(where, key, _strip(str(exc), key)) from None
            elif key == "start_timeout":
                config[key] = self.start_timeout(where, value)
            elif key in config_fields:
                try:
                    ServiceConfig(**{key: value})  # type: ignore[arg-type]  # the check is the point
                except (TypeError, ValueError) as exc:
                    raise self.error(where, key, _strip(str(exc), key)) from None
                config[key] = value
            elif key == "depends_on":
                depends_on = self.depends_on(where, value, name, names)
            else:
                raise self.error(where, key, "unknown key")
        if "argv" not in process:
            raise self.error(where, None, "missing key 'command' (the program and its arguments)")
        process.setdefault("cwd", str(self.base_dir))
        process.setdefault("log_output", not any(k in process for k in _LOG_PATH_KEYS))
        repaired = repair(ServiceConfig(**config), name)  # type: ignore[arg-type]  # checked above
        plan = ServicePlan(name=name, process=process, config=repaired, depends_on=depends_on)
        stop_timeout = repaired.stop_timeout
        if "kill_after" not in process:
            process["kill_after"] = kill_after_for(stop_timeout)
        elif float(process["kill_after"]) >= stop_timeout:  # type: ignore[arg-type]  # checked
            self.warnings.append(
                f"[{where}] kill_after={process['kill_after']:g} is not below "
                f"stop_timeout={stop_timeout:g}: a stop may give up before SIGKILL is sent"
            )
        try:
            plan.make_service()
        except (TypeError, ValueError) as exc:  # a combination of keys
            raise self.error(where, None, str(exc)) from None
        self.check_program(where, process, "argv" if "argv" in table else "command")
        return plan

    def start_timeout(self, where: str, value: object) -> object:
        """A number of seconds, or ``"none"`` for no limit (TOML has no null)."""
        if isinstance(value, str):
            if value.lower() == "none":
                return None
            problem = f'must be a number of seconds or "none", not {value!r}'
            raise self.error(where, "start_timeout", problem)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problem = f'must be a number of seconds or "none", not {type(value).__name__}'
            raise self.error(where, "start_timeout", problem)
        try:
            ServiceConfig(start_timeout=value)
        except ValueError as exc:
            raise self.error(where, "start_timeout", _strip(str(exc), "start_timeout")) from None
        return value

    def check_process(self, name: str, where: str, key: str, value: object) -> None:
        try:
            ProcessService(name, ["true"], **{key: value})  # type: ignore[arg-type]  # the check is the point
        except (TypeError, ValueError) as exc:
            raise self.error(where, key, _strip(str(exc), key)) from None

    def argv(self, where: str, key: str, value: object) -> list[str]:
        argv: list[str] = []
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                raise self.error(where, key, f"cannot split the command line: {exc}") from None
        elif isinstance(value, list):
            items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
            for i, item in enumerate(items):
                if not isinstance(item, str):
                    raise self.error(where, f"{key}[{i}]", f"must be a string, not {_type(item)}")
                argv.append(item)
        else:
            raise self.error(
                where, key, f"must be an array of strings or a string, not {_type(value)}"
            )
        if not argv or not argv[0]:
            raise self.error(where, key, "must name a program")
        for i, item in enumerate(argv):
            if "\0" in item:
                raise self.error(where, f"{key}[{i}]" if i else key, "holds a NUL byte")
        return argv

    def cwd(self, where: str, value: object) -> str:
        if not isinstance(value, str):
            raise self.error(where, "cwd", f"must be a string, not {_type(value)}")
        path = self.base_dir / Path(value).expanduser()
        if not path.is_dir():
            raise self.error(where, "cwd", f"no such directory: {path}")
        return str(path)

    def log_path(self, where: str, key: str, value: object) -> str:
        """A log file's path, relative to the file's directory; a missing directory warns."""
        if not isinstance(value, str):
            raise self.error(where, key, f"must be a string, not {_type(value)}")
        if not value or "\0" in value:
            raise self.error(where, key, "must be a non-empty path without NUL bytes")
        path = self.base_dir / Path(value).expanduser()
        if not path.parent.is_dir():
            self.warnings.append(f"[{where}] {key}: no such directory: {path.parent}")
        return str(path)

    def env(self, where: str, value: object) -> dict[str, str]:
        table = self.table(value, where, "env")
        env: dict[str, str] = {}
        for key, item in table.items():
            if not isinstance(item, str):
                raise self.error(f"{where}.env", key, f"must be a string, not {_type(item)}")
            if not key or "=" in key or "\0" in key:
                problem = "not a variable name (empty, or holds '=' or a NUL byte)"
                raise self.error(f"{where}.env", repr(key), problem)
            if "\0" in item:
                raise self.error(f"{where}.env", key, "holds a NUL byte")
            env[key] = item
        return env

    def stop_signal(self, where: str, value: object) -> int:
        if isinstance(value, str):
            name = value.upper()
            name = name if name.startswith("SIG") else "SIG" + name
            member = getattr(signal.Signals, name, None) if name.isidentifier() else None
            if not isinstance(member, signal.Signals):
                raise self.error(where, "stop_signal", f"unknown signal {value!r}")
            return int(member)
        self.check_process("x", where, "stop_signal", value)
        return value  # type: ignore[return-value]  # checked just above

    def depends_on(self, where: str, value: object, name: str, names: list[str]) -> tuple[str, ...]:
        if not _add_accepts("depends_on"):
            raise self.error(where, "depends_on", "not supported by this version of trisup")
        if not isinstance(value, list):
            raise self.error(where, "depends_on", f"must be an array of names, not {_type(value)}")
        items: list[object] = value  # pyright: ignore[reportUnknownVariableType]
        result: list[str] = []
        for item in items:
            if not isinstance(item, str):
                raise self.error(where, "depends_on", f"must hold names, not {_type(item)}")
            if item not in names:
                raise self.error(where, "depends_on", f"no service named {item!r} in this file")
            if item == name or f"services.{item}" == where:
                raise self.error(where, "depends_on", "a service cannot depend on itself")
            result.append(item)
        return tuple(result)

    def http(self, table: dict[str, object]) -> HttpPlan:
        options: dict[str, str] = {}
        for key, value in table.items():
            if key not in _HTTP_KEYS:
                raise self.error("http", key, f"unknown key (expected {', '.join(_HTTP_KEYS)})")
            if not isinstance(value, str):
                raise self.error("http", key, f"must be a string, not {_type(value)}")
            options[key] = value
        bind = options.get("bind")
        if bind is not None:
            host, _, port = bind.rpartition(":")
            if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise self.error("http", "bind", f"must be HOST:PORT, not {bind!r}")
        prefix = options.get("prefix")
        if prefix is not None and not prefix.startswith("/"):
            raise self.error("http", "prefix", f"must start with '/', not {prefix!r}")
        if options.get("token") == "":
            raise self.error("http", "token", "must not be empty")
        return HttpPlan(options=options)

    def check_program(self, where: str, process: Mapping[str, object], key: str) -> None:
        """A program that is not there is a warning (it may be by ``run``); one that
        is there but can never be executed (a directory, no execute permission) an error.
        """
        argv: list[str] = process["argv"]  # type: ignore[assignment]  # set above
        program = argv[0]
        if os.sep in program:
            path = Path(str(process["cwd"])) / program
            if not path.exists():
                self.warnings.append(f"[{where}] program {program!r} not found")
            elif path.is_dir():
                raise self.error(where, key, f"program {program!r} is a directory: {path}")
            elif not os.access(path, os.X_OK):
                raise self.error(where, key, f"program {program!r} is not executable: {path}")
            return
        if shutil.which(program) is not None:
            return
        unusable = _on_path(program)
        if unusable is None:
            self.warnings.append(f"[{where}] program {program!r} not found")
        else:
            kind = "a directory" if unusable.is_dir() else "not executable"
            problem = f"program {program!r} is found on PATH only as {unusable}, {kind}"
            raise self.error(where, key, problem)


def _on_path(program: str) -> Path | None:
    """The first entry named *program* on ``PATH`` (executable or not), or ``None``."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = Path(directory or ".") / program
        if candidate.exists():
            return candidate
    return None


def _console_factory(file: str) -> Callable[..., Service]:
    try:
        module = importlib.import_module("trisup.http")
    except ImportError as exc:
        raise ConfigError(
            file,
            "http",
            None,
            f"the HTTP console is not installed ({exc}); pip install '.[http]'"
            " in a checkout of trisup",
        ) from None
    factory: object = getattr(module, "ConsoleService", None)
    if not callable(factory):
        raise ConfigError(file, "http", None, "trisup.http has no ConsoleService")
    return factory  # pyright: ignore[reportReturnType]  # a service class


def build(plan: Plan, *, with_http: bool = True) -> tuple[Manager, list[ProcessService]]:
    """Make the manager and its services; the console too when *with_http*.

    Raises:
        ConfigError: the ``[http]`` table needs a console that is not installed,
            or the console rejected its options.
    """
    options = {"stop_order": "dependencies", **plan.manager}  # systemd's, unlike Manager's
    manager = Manager(**options)  # type: ignore[arg-type]  # checked when loaded
    processes: list[ProcessService] = []
    for service_plan in plan.services:
        service = service_plan.make_service()
        extra: dict[str, tuple[str, ...]] = {}
        if service_plan.depends_on:  # only where Manager.add takes it (checked when loaded)
            extra["depends_on"] = service_plan.depends_on
        manager.add_with_config(service, service_plan.config, **extra)
        processes.append(service)
    if with_http and plan.http is not None:
        factory = _console_factory(plan.file)
        try:
            console = factory(manager, **plan.http.options)
            manager.add(console)
        except (TypeError, ValueError) as exc:
            raise ConfigError(plan.file, "http", None, str(exc)) from None
    return manager, processes
