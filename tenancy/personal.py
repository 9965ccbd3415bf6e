"""A person's personal fields at rest: `external_id` and `metadata` sealed, and the blind index that finds them.

- Each field is sealed on its own with AES-256-GCM under the tenant's data key of purpose `persons`, with
  associated data (tenant, person id, field name): a sealed value copied to another person, another field or
  another tenant's file does not open.
- Lookup and uniqueness by external id go through a blind index: HMAC-SHA256 of the external id under the
  tenant's data key of purpose `blind-index`. The file holds the tag, never the id; without the key a tag
  cannot be tested against guesses.
- Both keys derive from the tenant's content key version (kms.Keyring.data_key), so both rotate with it: a
  content-key rotation re-seals each person under the new version AND recomputes its blind-index tag under
  the new version's blind-index key (TenantStore.reencrypt_persons), before the old version is retired.
  Mid-rotation a lookup tries every version still in use (normally one, two during a rotation).

Normalisation of the indexed value: the exact string, UTF-8 encoded. External ids are identifiers compared
exactly (as SQLite's UNIQUE compared them before they were sealed): folding case or Unicode forms would merge
ids that existing tenants hold as distinct.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from kms import DataKey, RecordCipher
from kms.records import aad

PERSONS_PURPOSE = "persons"
BLIND_INDEX_PURPOSE = "blind-index"
EXTERNAL_ID = "external_id"
METADATA = "metadata"

_AAD_DOMAIN = b"securegate.tenancy.person.v1"
_BLIND_INDEX_DOMAIN = b"securegate.tenancy.external-id.v1\x00"


def field_aad(tenant_id: str, person_id: str, field: str) -> bytes:
    """Associated data binding a sealed field to its tenant, person and field (length-prefixed: no two
    distinct tuples give the same bytes)."""
    return aad(_AAD_DOMAIN, tenant_id, person_id, field)


def blind_index(key: bytes, external_id: str) -> bytes:
    """HMAC-SHA256 of the external id (exact string, UTF-8) under a tenant's blind-index key."""
    return hmac.new(key, _BLIND_INDEX_DOMAIN + external_id.encode("utf-8"), hashlib.sha256).digest()


class PersonKeys:
    """The keys that seal one tenant's personal fields, for one operation: record ciphers (purpose `persons`)
    and blind-index keys (purpose `blind-index`) by content-key version, each fetched once from
    `data_key(version, purpose)` (version None = current). `clear()` drops them when the operation ends."""

    def __init__(self, data_key: Callable[[int | None, str], DataKey]) -> None:
        self._data_key = data_key
        self._ciphers: dict[int, RecordCipher] = {}
        self._index_keys: dict[int, bytes] = {}
        self._current: RecordCipher | None = None

    def current(self) -> RecordCipher:
        """The cipher of the current content-key version (fetched once per operation)."""
        if self._current is None:
            key = self._data_key(None, PERSONS_PURPOSE)
            self._current = self._ciphers[key.version] = key.cipher()
        return self._current

    def cipher(self, version: int) -> RecordCipher:
        if version not in self._ciphers:
            self._ciphers[version] = self._data_key(version, PERSONS_PURPOSE).cipher()
        return self._ciphers[version]

    def blind_index(self, version: int, external_id: str) -> bytes:
        if version not in self._index_keys:
            self._index_keys[version] = self._data_key(version, BLIND_INDEX_PURPOSE).key
        return blind_index(self._index_keys[version], external_id)

    def clear(self) -> None:
        self._ciphers.clear()
        self._index_keys.clear()
        self._current = None

    def __repr__(self) -> str:  # never show key material
        return f"PersonKeys(versions={sorted(self._ciphers)})"
