"""A service's lifecycle as one state machine: its phases, the moves between them, its status.

Pure (no trio import). The runner (`_runner.py`) is the only writer of a service's
phase, through ``Runner._move``, which checks each move against `MOVES`; the manager
and the tree ask the runner for what they want (start, stop, restart, delete, a
group or dependency restart) and the runner's task decides, in one place, what its
instance does next. The public `ServiceStatus` is derived from the phase by
`status_of`, never stored beside it.

The phases and the moves between them (the runner task drives every arrow but
those marked *verb*, which a control verb makes while no task runs)::

    IDLE ──spawn (verb)──▶ STARTING ◀──────────────── BACKOFF ◀──┐
      ▲   ▲                 │  │  started()                  ▲   │ failure, clean
      │   │                 │  ▼                             │   │ return (ALWAYS),
      │   │  WAITING_DEPS ──┘ RUNNING ──attempt ends─────────┴───┘ RestartNow
      │   │  (dependencies      │  │
      │   │   not ready)        │  └──▶ COMPLETED / FAILED (no restart)
      │   │                     ▼
      │   └───── exit ────── STOPPING (a stop, restart, delete, shutdown, group
      │                         │       or dependency restart was requested)
      │                         ├──▶ GROUP_WAIT (a group restart stopped it) ──▶ STARTING
      │                         └──▶ REMOVED (deleted: unregistered once exited)
      └── reset (verb): FAILED ──▶ IDLE

Beside the phase, a service may be *held*: stopped by hand (``stop_service``, or
``auto_start=False`` and never started). A held service shows ``STOPPED`` whatever
its phase, and nothing but a manual start or restart runs it again.

================  =====================================================  ==============
phase             what the service's instance is doing                   a task lives
================  =====================================================  ==============
``IDLE``          nothing: not started yet, or ended by a stop or         no
                  the manager's shutdown
``WAITING_DEPS``  waits until every dependency is running and ready       yes
``STARTING``      spawned, or in ``serve`` and not ready yet              yes
``RUNNING``       in ``serve``, ready                                     yes
``STOPPING``      a stop was requested; the instance has not exited       yes
``BACKOFF``       waits out the delay before its next attempt             yes
``GROUP_WAIT``    stopped by a group restart, waiting for it to end       yes
``COMPLETED``     ended cleanly, not restarted                            no
``FAILED``        ended by a failure that is not restarted                no
``REMOVED``       deleted (and unregistered)                              no
================  =====================================================  ==============
"""

from __future__ import annotations

from ._status import Phase, ServiceStatus

__all__ = ["LIVE", "MOVES", "Phase", "status_of"]


# Module constants: the runner compares phases on every attempt, and an Enum member
# looked up on its class costs ~70 ns on Python 3.11, a global ~5 ns.
IDLE, WAITING_DEPS, STARTING, RUNNING = (
    Phase.IDLE,
    Phase.WAITING_DEPS,
    Phase.STARTING,
    Phase.RUNNING,
)
STOPPING, BACKOFF, GROUP_WAIT = Phase.STOPPING, Phase.BACKOFF, Phase.GROUP_WAIT
COMPLETED, FAILED, REMOVED = Phase.COMPLETED, Phase.FAILED, Phase.REMOVED

LIVE = frozenset({WAITING_DEPS, STARTING, RUNNING, STOPPING, BACKOFF, GROUP_WAIT})
"""The phases in which the service's runner task lives."""

_EXITS = frozenset({IDLE, REMOVED})  # the task ends (REMOVED: deleted)
_ATTEMPT = frozenset({STARTING, RUNNING})  # an attempt begins
_ENDS = frozenset({BACKOFF, GROUP_WAIT, COMPLETED, FAILED})  # an attempt ended on its own
_NEXT = frozenset({*_ATTEMPT, WAITING_DEPS, GROUP_WAIT})  # the task goes on

MOVES: dict[Phase, frozenset[Phase]] = {
    IDLE: frozenset({STARTING, *_EXITS}),
    COMPLETED: frozenset({STARTING, *_EXITS}),
    FAILED: frozenset({STARTING, *_EXITS}),
    WAITING_DEPS: frozenset({*_NEXT, *_EXITS}),
    STARTING: frozenset({RUNNING, STOPPING, WAITING_DEPS, *_ENDS, *_EXITS}),
    RUNNING: frozenset({STOPPING, *_ENDS, *_EXITS}),
    STOPPING: frozenset({*_NEXT, *_EXITS}),
    BACKOFF: frozenset({*_NEXT, *_EXITS}),
    GROUP_WAIT: frozenset({*_NEXT, *_EXITS}),
    REMOVED: frozenset(),
}
"""Every allowed move: ``MOVES[old]`` holds the phases a service may go to from *old*.

Only an attempt in ``serve`` passes ``STOPPING``: a stop of a parked task
(``WAITING_DEPS``, ``BACKOFF``, ``GROUP_WAIT``) ends the park at once, and the task
leaves for ``IDLE`` or ``REMOVED`` (or goes on, if a later request asked for a
new start). A task that goes on after a stop goes straight back to ``STARTING``
or ``WAITING_DEPS`` without passing ``IDLE``, so no second task can start meanwhile.
"""


_STATUS = ServiceStatus
_RUNNING_LIKE = frozenset({RUNNING, STOPPING, BACKOFF, GROUP_WAIT})


def status_of(phase: Phase, *, held: bool, consec_failures: int, ready: bool) -> ServiceStatus:
    """The public status of a service (SPEC §4, first match wins).

    Args:
        phase: what its instance is doing.
        held: stopped by hand (or ``auto_start=False`` and never started).
        consec_failures: its consecutive failures.
        ready: its current attempt has reported readiness (used while ``STOPPING``).
    """
    if held:
        return _STATUS.STOPPED
    if phase is FAILED:
        return _STATUS.FAILED
    if phase is COMPLETED:
        return _STATUS.COMPLETED
    if phase is STARTING or (phase is STOPPING and not ready):
        return _STATUS.STARTING
    if phase in _RUNNING_LIKE:
        return _STATUS.CRASHING if consec_failures else _STATUS.RUNNING
    return _STATUS.ERROR if consec_failures else _STATUS.IDLE
