"""Prometheus metrics of a manager, read from its info at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .._manager import Manager
from .._status import Phase, ServiceInfo, ServiceStatus

__all__ = ["MANAGER_STATES", "SupervisorCollector"]

MANAGER_STATES = ("serving", "stopping", "stopped")
"""The values of the ``state`` label of ``trisup_manager_state``."""

_SERVICE = ["manager", "service"]
_PHASES = tuple(p for p in Phase if p is not Phase.REMOVED)


class SupervisorCollector(Collector):
    """A Prometheus collector for one manager's services.

    Every scrape reads `Manager.get_services_info`; nothing is kept between
    scrapes. Register it with any ``prometheus_client`` registry::

        REGISTRY.register(SupervisorCollector(manager))

    Metrics (labels ``manager`` and ``service``):

    ================================================  =======  ==========================
    name                                              type     value
    ================================================  =======  ==========================
    ``trisup_service_up``                             gauge    1 while an attempt is in
                                                               ``serve``
    ``trisup_service_status``                         gauge    1 for the current ``status``
    ``trisup_service_phase``                          gauge    1 for the current ``phase``
    ``trisup_service_starts_total``                   counter  attempts started
    ``trisup_service_successes_total``                counter  clean ends and stops
    ``trisup_service_errors_total``                   counter  failures
    ``trisup_service_restarts``                       gauge    restarts since the last
                                                               manual start or reset
    ``trisup_service_restarts_in_window``             gauge    restarts in the window
    ``trisup_service_consecutive_failures``           gauge    failures in a row
    ``trisup_service_restart_delay_seconds``          gauge    the current backoff delay
    ``trisup_service_uptime_seconds``                 gauge    this run's uptime
    ``trisup_service_run_seconds_total``              counter  uptime of all runs
    ``trisup_manager_state``                          gauge    1 for the current ``state``
                                                               (the console's only)
    ``trisup_manager_services``                       gauge    registered services
    ================================================  =======  ==========================

    ``trisup_service_phase``'s ``phase`` label takes every `Phase` value but
    ``removed`` (a removed service is not listed); a service stopped by hand shows
    its phase there (``idle``, or ``stopping`` while it exits) and ``stopped`` in
    ``trisup_service_status``. ``trisup_service_up`` is ``ServiceInfo.running``.
    ``trisup_manager_state`` (``state`` is ``serving``, ``stopping`` or
    ``stopped``) is reported by the console's collector, which follows the
    manager's events; this one cannot know the state from the info alone.

    Args:
        manager: the manager to report on.

    .. versionadded:: 0.1.0
    """

    def __init__(self, manager: Manager) -> None:
        self._manager = manager

    def _manager_state(self) -> str | None:
        """The manager's state, if known (a subclass may know it)."""
        return None

    def _snapshot(self) -> tuple[list[ServiceInfo], str | None]:
        """The services' info and the manager's state (if known) a scrape reports."""
        return self._manager.get_services_info(), self._manager_state()

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families of one scrape."""
        infos, current = self._snapshot()
        m = self._manager.name

        def gauge(name: str, doc: str, labels: list[str] = _SERVICE) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels)

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, doc, labels=_SERVICE)

        up = gauge("trisup_service_up", "Whether an attempt of the service is in serve.")
        status = gauge(
            "trisup_service_status",
            "The service's status: 1 for the current one, 0 for the others.",
            [*_SERVICE, "status"],
        )
        phase = gauge(
            "trisup_service_phase",
            "The service's lifecycle phase: 1 for the current one, 0 for the others.",
            [*_SERVICE, "phase"],
        )
        starts = counter("trisup_service_starts", "Attempts started.")
        successes = counter("trisup_service_successes", "Attempts that ended cleanly or stopped.")
        errors = counter("trisup_service_errors", "Attempts that failed.")
        restarts = gauge(
            "trisup_service_restarts", "Restarts since the last manual start, restart or reset."
        )
        window = gauge(
            "trisup_service_restarts_in_window", "Restarts counted in the restart window."
        )
        consec = gauge("trisup_service_consecutive_failures", "Failures in a row.")
        delay = gauge(
            "trisup_service_restart_delay_seconds", "The delay before the next restart, in seconds."
        )
        uptime = gauge("trisup_service_uptime_seconds", "Uptime of the current run, in seconds.")
        run = counter("trisup_service_run_seconds", "Uptime of all runs together, in seconds.")
        for info in infos:
            labels = [m, info.name]
            metric = info.metric
            up.add_metric(labels, 1.0 if info.running else 0.0)
            for s in ServiceStatus:
                status.add_metric([*labels, str(s)], 1.0 if s is info.status else 0.0)
            for p in _PHASES:
                phase.add_metric([*labels, str(p)], 1.0 if p is info.phase else 0.0)
            starts.add_metric(labels, metric.start_count)
            successes.add_metric(labels, metric.success_count)
            errors.add_metric(labels, metric.error_count)
            restarts.add_metric(labels, info.restart_count)
            window.add_metric(labels, info.window_restarts)
            consec.add_metric(labels, metric.consec_failures)
            delay.add_metric(labels, info.current_delay)
            uptime.add_metric(labels, metric.current_uptime)
            run.add_metric(labels, metric.total_uptime)
        yield from (up, status, phase, starts, successes, errors, restarts, window, consec, delay)
        yield from (uptime, run)
        if current is not None:
            state = gauge(
                "trisup_manager_state",
                "The manager's state: 1 for the current one, 0 for the others.",
                ["manager", "state"],
            )
            for value in MANAGER_STATES:
                state.add_metric([m, value], 1.0 if value == current else 0.0)
            yield state
        services = gauge("trisup_manager_services", "Services registered.", ["manager"])
        services.add_metric([m], len(infos))
        yield services
