"""The control plane of a manager over HTTP (the ``http`` extra: ``pip install '.[http]'``).

- `ConsoleService`: a service serving the Go package's JSON API, a live web
  page, Prometheus metrics and health probes, with Hypercorn's Trio worker.
- `SupervisorCollector`: the Prometheus collector behind ``/metrics``, for use
  with any ``prometheus_client`` registry.

See the console page of the documentation for the routes, bodies and the
security model.
"""

from __future__ import annotations

try:
    from ._console import ConsoleService
    from ._metrics import SupervisorCollector
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the installed extras
    if exc.name not in ("hypercorn", "prometheus_client", "starlette"):
        raise
    raise ImportError(
        "trisup.http needs the 'http' extra: pip install '.[http]' in a checkout of trisup"
    ) from exc

__all__ = ["ConsoleService", "SupervisorCollector"]
