"""What an admin key is: a name, the scopes it holds, and the format of its secret. Plain types, no storage:
the registry (tenancy/registry.py) stores admin keys hashed beside the tenants; the HTTP ingress receives an
AdminKey from the TenantSupervisor when a key authenticates, so unpickling one imports this module only.

The first-start admin token (`{data_dir}/admin_token` or $SECUREGATE_ADMIN_TOKEN) is the admin key named
`bootstrap`, holding every scope; once revoked, only named keys work. Named keys look like
`sgadmin_<name>_<secret>`: the name finds the row, the secret (256 random bits) is compared by hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import get_args

from securegate import errors
from securegate.schemas import ADMIN_KEY_NAME_PATTERN, AdminScope

ADMIN_KEY_PREFIX = "sgadmin"
BOOTSTRAP = "bootstrap"  # the first-start token's name; reserved
SCOPES: tuple[str, ...] = get_args(AdminScope)  # each allows one kind of admin work


class AdminKeyError(Exception):
    pass


class NotAnAdminKey(AdminKeyError):
    """Unknown, malformed or revoked: answered alike (403), so a caller learns nothing about which."""

    api_error = errors.Forbidden


class MissingScope(AdminKeyError):
    api_error = errors.Forbidden


class AdminKeyNotFound(AdminKeyError):
    api_error = errors.NotFound


class AdminKeyConflict(AdminKeyError):
    """The name is taken (revoked names too: the audit must never mean two keys by one name), or the
    change would leave no key able to manage admin keys."""

    api_error = errors.Conflict


class InvalidAdminKeyRequest(AdminKeyError, ValueError):
    api_error = errors.InvalidRequest


@dataclass(frozen=True)
class AdminKey:
    name: str
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None

    @property
    def principal(self) -> str:
        """Who this key is in the audit logs (securegate.metrics.current_principal)."""
        return f"admin:{self.name}"

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise MissingScope(f"admin key {self.name!r} lacks the scope {scope!r}")

    def public(self) -> dict:
        return {"name": self.name, "scopes": list(self.scopes), "created_at": self.created_at,
                "revoked_at": self.revoked_at}


def check_name(name: str) -> str:
    if not re.fullmatch(ADMIN_KEY_NAME_PATTERN, name):
        raise InvalidAdminKeyRequest(f"admin key names match {ADMIN_KEY_NAME_PATTERN}")
    if name == BOOTSTRAP:
        raise InvalidAdminKeyRequest(f"{BOOTSTRAP!r} is the first-start token's name")
    return name


def check_scopes(scopes) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidAdminKeyRequest(f"scopes must be a non-empty subset of {list(SCOPES)}; unknown: {unknown}")
    return tuple(s for s in SCOPES if s in set(scopes))  # one canonical order


def parse_admin_key(token: str) -> tuple[str, str] | None:
    """(name, secret) of a named key; None for anything else (the bootstrap token is one random string)."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != ADMIN_KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]
