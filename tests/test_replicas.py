"""``replicas = N``: services ``NAME-0`` ... ``NAME-(N-1)``, with ``{index}`` substituted."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from trisup import ServiceStatus
from trisup._tomlconfig import ConfigError, Plan, build, parse_config

PY = json.dumps(sys.executable)
SLOT = (  # {index}: substituted by replicas
    "open('out-{index}.txt', 'w').write('{index}');"
    " print('up {index}', flush=True); import time; time.sleep(30)"
)


def parse(text: str, base_dir: Path) -> Plan:
    return parse_config(textwrap.dedent(text), file="f.toml", base_dir=base_dir)


def test_replicas_make_numbered_services(tmp_path: Path) -> None:
    """Each replica gets its index in command, env values and cwd; the rest is shared."""
    for i in range(3):
        (tmp_path / f"slot{i}").mkdir()
    plan = parse(
        """
        [services.worker]
        replicas = 3
        command = "echo --slot {index} '{{literal}}'"
        env = { SLOT = "{index}", "{index}" = "names stay" }
        cwd = "slot{index}"
        restart_delay = 2
        """,
        tmp_path,
    )
    assert [s.name for s in plan.services] == ["worker-0", "worker-1", "worker-2"]
    for i, service in enumerate(plan.services):
        assert service.process["argv"] == ["echo", "--slot", str(i), "{literal}"]
        assert service.process["env"] == {"SLOT": str(i), "{index}": "names stay"}
        assert service.process["cwd"] == str(tmp_path / f"slot{i}")
        assert service.config.restart_delay == 2


def test_every_process_key_is_substituted_generically(tmp_path: Path) -> None:
    """A string key of the process (ready_pattern here) gets its index like the others."""
    plan = parse(
        """
        [services.w]
        replicas = 2
        argv = ["echo", "w{index}"]
        ready_pattern = "^ready {index}$"
        """,
        tmp_path,
    )
    assert [s.process["ready_pattern"] for s in plan.services] == ["^ready 0$", "^ready 1$"]
    assert [s.process["argv"] for s in plan.services] == [["echo", "w0"], ["echo", "w1"]]


def test_depending_on_a_replicated_service_means_all_its_replicas(tmp_path: Path) -> None:
    """``depends_on = ["db"]`` names every replica of db; a replica may be named alone."""
    plan = parse(
        """
        [services.db]
        replicas = 2
        command = "true"

        [services.web]
        replicas = 2
        command = "true"
        depends_on = ["db"]

        [services.admin]
        command = "true"
        depends_on = ["db-1", "web"]
        """,
        tmp_path,
    )
    deps = {s.name: s.depends_on for s in plan.services}
    assert deps == {
        "db-0": (),
        "db-1": (),
        "web-0": ("db-0", "db-1"),
        "web-1": ("db-0", "db-1"),
        "admin": ("db-1", "web-0", "web-1"),
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("replicas = 0", "f.toml: [services.w] replicas: must be from 1 to 1000, not 0"),
        ("replicas = 1001", "f.toml: [services.w] replicas: must be from 1 to 1000, not 1001"),
        ('replicas = "2"', "f.toml: [services.w] replicas: must be an integer, not str"),
        ("replicas = true", "f.toml: [services.w] replicas: must be an integer, not bool"),
        (
            'replicas = 2\nenv = { HOME = "${HOME}/x" }',
            "f.toml: [services.w.env] HOME: unknown placeholder {HOME}"
            " (only {index}; write {{ and }} for literal braces)",
        ),
        (
            'replicas = 2\ncwd = "{index:02}"',
            "f.toml: [services.w] cwd: unknown placeholder {index:02}"
            " (only {index}; write {{ and }} for literal braces)",
        ),
        (
            'replicas = 2\nargv = ["echo", "{"]',
            "f.toml: [services.w] argv[1]: Single '{' encountered in format string"
            " (write {{ and }} for literal braces)",
        ),
        (
            'replicas = 2\ndepends_on = ["w"]',
            "f.toml: [services.w] depends_on: a service cannot depend on itself",
        ),
    ],
)
def test_errors_name_the_key(table: str, message: str, tmp_path: Path) -> None:
    """A bad count, placeholder or brace is an error naming the table and key."""
    with pytest.raises(ConfigError) as caught:
        parse(f'[services.w]\ncommand = "true"\n{table}\n', tmp_path)
    assert str(caught.value) == message


def test_a_replica_name_that_is_taken(tmp_path: Path) -> None:
    """A replica named like another table is refused."""
    with pytest.raises(ConfigError) as caught:
        parse(
            '[services.w]\nreplicas = 2\ncommand = "true"\n[services.w-1]\ncommand = "true"\n',
            tmp_path,
        )
    assert (
        str(caught.value)
        == "f.toml: [services.w] replicas: makes 'w-1', the name of another service"
    )


def test_without_replicas_braces_are_literal(tmp_path: Path) -> None:
    """A table without replicas is not substituted: ``${HOME}`` stays as written."""
    plan = parse('[services.w]\ncommand = "true"\nenv = { A = "${HOME} {index}" }\n', tmp_path)
    assert plan.services[0].process["env"] == {"A": "${HOME} {index}"}


async def test_replicas_run_with_their_index(tmp_path: Path) -> None:
    """Real processes: each replica prints its own index and writes its own file."""
    plan = parse(
        f"""
        [services.w]
        replicas = 3
        argv = [{PY}, "-c", "{SLOT}"]
        ready_pattern = "^up {{index}}$"
        """,
        tmp_path,
    )
    manager, processes = build(plan)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.serve)
            infos = {i.name: i.status for i in manager.get_services_info()}
            assert infos == {f"w-{i}": ServiceStatus.RUNNING for i in range(3)}
            assert [p.output_tail() for p in processes] == [
                [("stdout", f"up {i}")] for i in range(3)
            ]
            nursery.cancel_scope.cancel()
    assert [(tmp_path / f"out-{i}.txt").read_text() for i in range(3)] == ["0", "1", "2"]
