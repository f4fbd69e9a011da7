"""The events a manager emits, one frozen class per transition.

Subscribe with ``async with manager.subscribe() as events: async for event in events``.
"""

from __future__ import annotations

from ._events import (
    Event,
    ManagerGaveUp,
    ManagerStarted,
    ManagerStopped,
    ManagerStopping,
    ServiceAdded,
    ServiceBackingOff,
    ServiceEvent,
    ServiceExited,
    ServiceFailed,
    ServicePhaseChanged,
    ServiceReady,
    ServiceRemoved,
    ServiceRestarting,
    ServiceStarting,
    ServiceStatusChanged,
    ServiceStopDone,
    ServiceStopTimedOut,
    Subscription,
    TreeSubscription,
)

__all__ = [
    "Event",
    "ManagerGaveUp",
    "ManagerStarted",
    "ManagerStopped",
    "ManagerStopping",
    "ServiceAdded",
    "ServiceBackingOff",
    "ServiceEvent",
    "ServiceExited",
    "ServiceFailed",
    "ServicePhaseChanged",
    "ServiceReady",
    "ServiceRemoved",
    "ServiceRestarting",
    "ServiceStarting",
    "ServiceStatusChanged",
    "ServiceStopDone",
    "ServiceStopTimedOut",
    "Subscription",
    "TreeSubscription",
]
