"""Who a child runs as: ``user``, ``group`` and ``umask`` of `ProcessService`.

Names are looked up when the service is made, so an unknown user or group is an
error of the configuration (``trisup check`` reports it). Whether the switch is
allowed depends on who runs the supervisor, so `effective` decides at each spawn.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Protocol, final

__all__ = [
    "Account",
    "Credentials",
    "account_of",
    "describe_credentials",
    "effective",
    "group_of",
    "umask_of",
]


@final
@dataclass(frozen=True, slots=True)
class Credentials:
    """What `subprocess.Popen` gets: ``user``, ``group``, ``extra_groups``, ``umask``."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    umask: int = -1


@final
@dataclass(frozen=True, slots=True)
class Account:
    """A user from the password database, with its groups (``initgroups`` semantics)."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    def env(self) -> dict[str, str]:
        """``HOME``, ``USER`` and ``LOGNAME`` for a child that runs as this user."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


def account_of(user: object) -> Account | None:
    """The account named *user* (a name or a uid), or ``None`` for ``None``.

    Raises:
        TypeError: *user* is neither a str nor an int.
        ValueError: no such user.
    """
    if user is None:
        return None
    try:
        if isinstance(user, str) and user:
            entry = pwd.getpwnam(user)
        elif isinstance(user, int) and not isinstance(user, bool):
            entry = pwd.getpwuid(user)
        else:
            raise TypeError(f"user must be a user name or uid, not {user!r}")
    except (KeyError, OverflowError):
        raise ValueError(f"user {user!r} does not exist") from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def group_of(group: object) -> int | None:
    """The gid of *group* (a name or a gid), or ``None`` for ``None``.

    Raises:
        TypeError: *group* is neither a str nor an int.
        ValueError: no such group.
    """
    if group is None:
        return None
    try:
        if isinstance(group, str) and group:
            return grp.getgrnam(group).gr_gid
        if isinstance(group, int) and not isinstance(group, bool):
            return grp.getgrgid(group).gr_gid
    except (KeyError, OverflowError):
        raise ValueError(f"group {group!r} does not exist") from None
    raise TypeError(f"group must be a group name or gid, not {group!r}")


def umask_of(umask: object) -> int | None:
    """*umask* as an int: an int from 0 to 0o777, or a string of octal digits (``"027"``).

    Raises:
        TypeError: neither an int nor a str.
        ValueError: out of range, or not octal.
    """
    if umask is None:
        return None
    if isinstance(umask, str):
        try:
            value = int(umask, 8)
        except ValueError:
            raise ValueError(f"umask must be octal digits such as '027', not {umask!r}") from None
    elif isinstance(umask, int) and not isinstance(umask, bool):
        value = umask
    else:
        raise TypeError(f"umask must be an int or a string of octal digits, not {umask!r}")
    if not 0 <= value <= 0o777:
        raise ValueError(f"umask must be between 0 and 0o777, not {umask!r}")
    return value


def effective(account: Account | None, gid: int | None, umask: int | None) -> Credentials:
    """The credentials to spawn with, as the supervisor runs now.

    As root, the child switches to *account* (its groups too) and *gid* (default:
    the account's group). Otherwise only a switch to what the supervisor already is
    is allowed, and then nothing is changed.

    Raises:
        PermissionError: a switch that needs root, naming what was asked.
    """
    mask = -1 if umask is None else umask
    if gid is None and account is not None:
        gid = account.gid
    if os.geteuid() == 0:
        return Credentials(
            uid=None if account is None else account.uid,
            gid=gid,
            groups=None if account is None else account.groups,
            umask=mask,
        )
    if account is not None and account.uid != os.geteuid():
        raise PermissionError(
            f"user={account.name!r}: trisup runs as uid {os.geteuid()}, not root,"
            " and cannot switch to another user"
        )
    if gid is not None and gid != os.getegid():
        raise PermissionError(
            f"group {gid}: trisup runs as gid {os.getegid()}, not root,"
            " and cannot switch to another group"
        )
    return Credentials(umask=mask)


class _WithCredentials(Protocol):
    @property
    def user(self) -> Account | None: ...

    @property
    def group(self) -> int | None: ...

    @property
    def umask(self) -> int | None: ...


def describe_credentials(service: _WithCredentials) -> list[str]:
    """What ``trisup check`` says of a service's user, group and umask (nothing if unset)."""
    parts: list[str] = []
    if service.user is not None:
        parts.append(f"user {service.user.name} (uid {service.user.uid})")
    if service.group is not None:
        parts.append(f"group {service.group}")
    if service.umask is not None:
        parts.append(f"umask {service.umask:03o}")
    return [f"runs as {', '.join(parts)}"] if parts else []
