"""Who is on the other end of the socket: the peer's uid from SO_PEERCRED, and the role it maps to."""

from __future__ import annotations

import os
import pwd
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

from regd.domain import Role

_UCRED = struct.Struct("3i")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}


@dataclass(frozen=True)
class Caller:
    """The identity the audit log records and the role checks read."""

    pid: int
    uid: int
    gid: int
    name: str
    role: Role


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected, as the kernel vouches for it."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


@lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The login name of a uid, or ``uid:<n>`` when the system has no name for it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid:{uid}"


def role_for(uid: int, name: str, roles: dict[str, Role], default: Role) -> Role:
    """The daemon's owner is admin; others get their configured role, else the default."""
    if uid == os.getuid():
        return Role.ADMIN
    return roles.get(name, default)


def identify(sock: socket.socket | None, roles: dict[str, Role], default: Role) -> Caller:
    """Build the caller of a connection (an in-process call has no socket: it is the owner)."""
    if sock is None:
        uid = os.getuid()
        return Caller(os.getpid(), uid, os.getgid(), user_name(uid), Role.ADMIN)
    pid, uid, gid = peer_credentials(sock)
    name = user_name(uid)
    return Caller(pid, uid, gid, name, role_for(uid, name, roles, default))
