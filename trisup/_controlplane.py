"""``trisup run``'s control plane, made from a loaded file: the socket, the console, reload.

The server itself (`trisup.http._plane.ControlPlane`) needs the HTTP console's
packages, which the ``cli`` extra installs; without them ``trisup run`` says so.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._manager import Manager
from ._reload import Reloader
from ._socketpath import SocketError, default_socket
from ._tomlconfig import ConfigError, Plan
from .process import ProcessService

if TYPE_CHECKING:
    from .http._plane import ControlPlane

__all__ = ["control_plane"]


def control_plane(
    plan: Plan, manager: Manager, processes: MutableSequence[ProcessService]
) -> ControlPlane:
    """The control plane of *manager*, built from *plan*, its socket bound (`prepare`).

    Raises:
        ConfigError: the ``[http]`` console rejected its options.
        SocketError: the packages are missing, the socket cannot be served, or
            the console's port cannot be bound.
    """
    try:
        from .http._plane import ControlPlane
    except ImportError as exc:
        raise SocketError(
            f"trisup run serves its control socket with the HTTP console's packages ({exc}); "
            "install the cli extra: pip install 'trisup[cli]'"
        ) from None
    path = Path(plan.socket) if plan.socket is not None else default_socket(manager.name)
    planes: list[ControlPlane] = []
    reloader = Reloader(manager, plan, processes, stopping=lambda: planes[0].stopping())
    options = plan.http.options if plan.http is not None else None
    try:
        plane = ControlPlane(manager, path, reloader=reloader, console_options=options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(plan.file, "http", None, str(exc)) from None
    planes.append(plane)
    plane.prepare()
    return plane
