"""Build a `KeyProvider` from a plain config dict: {"provider": "local"|"aws"|"pkcs11", ...options}.

Options are the provider constructor's keyword arguments; unknown ones are refused (a typo in a
security setting must not be silently ignored). Provider modules are imported lazily so a deployment
needs only the client library of the provider it uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from kms.providers.base import KeyProvider

PROVIDERS = ("local", "aws", "pkcs11")


def build_provider(config: Mapping[str, Any]) -> KeyProvider:
    """E.g. {"provider": "local", "root_key_path": "/data/keys/root.json"} or
    {"provider": "aws", "key_alias": "alias/securegate-root", "region": "eu-west-1"} or
    {"provider": "pkcs11", "token_label": "securegate", "pin_env": "SECUREGATE_HSM_PIN"}."""
    options = dict(config)
    kind = options.pop("provider", None)
    if kind == "local":
        from kms.providers.local import LocalKeyProvider as provider_class
    elif kind == "aws":
        from kms.providers.aws import AwsKmsProvider as provider_class
    elif kind == "pkcs11":
        from kms.providers.pkcs11 import Pkcs11KeyProvider as provider_class
    else:
        raise ValueError(f"config 'provider' must be one of {PROVIDERS}, got {kind!r}")
    accepted = {
        name for name, p in inspect.signature(provider_class).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in ("session", "client", "sleep")
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"unknown {kind} provider option(s) {unknown}; accepted: {sorted(accepted)}")
    return provider_class(**options)
