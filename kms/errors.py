"""Typed KMS errors.

Callers branch on the class, never on messages. `transient` says whether retrying later can succeed:
the API answers those with 503 `kms_unavailable`; everything else is a permanent failure for that input.
"""

from __future__ import annotations

from typing import ClassVar


class KmsError(Exception):
    """Base class of every error raised by `kms`."""

    transient: ClassVar[bool] = False


class KeyNotFound(KmsError):
    """The key (root, tenant TEK/CEK or version) does not exist or was destroyed."""


class KeyDisabled(KmsError):
    """The key exists but the provider refuses to use it (disabled, pending deletion)."""


class InvalidCiphertext(KmsError):
    """A wrapped blob failed authentication: tampered, truncated, or presented with another context."""


class Throttled(KmsError):
    """The provider kept throttling after our bounded retries."""

    transient = True


class ProviderUnavailable(KmsError):
    """The provider could not be reached or failed on its side (connection, timeout, 5xx, HSM down)."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    """True when `exc` is a KMS error worth retrying later (API: 503 `kms_unavailable`)."""
    return isinstance(exc, KmsError) and exc.transient


__all__ = [
    "KmsError",
    "KeyNotFound",
    "KeyDisabled",
    "InvalidCiphertext",
    "Throttled",
    "ProviderUnavailable",
    "is_transient",
]
