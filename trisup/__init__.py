"""trisup: a Trio-native service supervisor.

A `Manager` runs named services, each in its own task and cancel scope, with
restart policies, exponential backoff, a restart window and budget, metrics
and runtime control. ``trio.run(manager.serve)`` is a complete program.
"""

from __future__ import annotations

from ._background import BackgroundServe
from ._config import (
    Option,
    ServiceConfig,
    ServiceFields,
    with_auto_start,
    with_backoff,
    with_max_restarts,
    with_restart_delay,
    with_restart_policy,
    with_restart_window,
    with_start_timeout,
)
from ._current import CurrentService, current_service
from ._errors import (
    DoNotRestart,
    FatalError,
    RestartIntensityExceeded,
    RestartNow,
    ServiceAlreadyExists,
    ServiceNotFound,
    ServiceRunning,
    ServiceStartTimeout,
    ServiceStopped,
    ServiceStopTimeout,
    SupervisorError,
    TerminateSupervisor,
    as_fatal,
    is_fatal,
    is_fatal_err,
    is_no_restart,
    no_restart,
    restart_now,
)
from ._manager import Manager
from ._service import Service, new_service
from ._status import ExitStatus, Metric, Phase, RestartPolicy, ServiceInfo, ServiceStatus
from ._tree import Strategy
from .process import ProcessService

__version__ = "0.1.0"

__all__ = [
    "BackgroundServe",
    "CurrentService",
    "DoNotRestart",
    "ExitStatus",
    "FatalError",
    "Manager",
    "Metric",
    "Option",
    "Phase",
    "ProcessService",
    "RestartIntensityExceeded",
    "RestartNow",
    "RestartPolicy",
    "Service",
    "ServiceAlreadyExists",
    "ServiceConfig",
    "ServiceFields",
    "ServiceInfo",
    "ServiceNotFound",
    "ServiceRunning",
    "ServiceStartTimeout",
    "ServiceStatus",
    "ServiceStopTimeout",
    "ServiceStopped",
    "Strategy",
    "SupervisorError",
    "TerminateSupervisor",
    "__version__",
    "as_fatal",
    "current_service",
    "is_fatal",
    "is_fatal_err",
    "is_no_restart",
    "new_service",
    "no_restart",
    "restart_now",
    "with_auto_start",
    "with_backoff",
    "with_max_restarts",
    "with_restart_delay",
    "with_restart_policy",
    "with_restart_window",
    "with_start_timeout",
]
