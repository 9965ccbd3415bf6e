"""Which events are about whom, found without opening them: the event log's blind index.

An event's payload is sealed (streams/store.py); who it is about (`person_id`, `external_id`, `unknown_id`)
is inside. So that a person's events are found by an index rather than by opening every event of the tenant,
each of those values, when present, is also stored beside the event as a tag:

    HMAC-SHA256(index key, domain | field | value), first 16 bytes

under the tenant's data key of purpose `events-index` (kms: derived from the content-key version the row is
sealed under, like tenancy/personal.py's blind index of external ids). The file holds tags, never the ids;
without the key a tag cannot be tested against guesses. The field is part of the tag, so the same string as
a person id and as an external id gives unrelated tags. 128 bits: a tag is a lookup key, and every row a
lookup selects is opened and its payload compared before it is used, so a collision could only cost an
extra decryption. The tags follow the key: re-sealing an event under a new version re-tags it, and during
a rotation a lookup tries the tags of every version in use (normally one, two while rotating).

`EventKeys` holds one operation's record ciphers and index keys by content-key version.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from kms.records import RecordCipher

RECORD_PURPOSE = "events"
INDEX_PURPOSE = "events-index"
TAGGED_FIELDS = ("person_id", "external_id", "unknown_id")
TAG_COLUMNS = dict(zip(TAGGED_FIELDS, ("person_tag", "external_tag", "unknown_tag")))  # each field's column in events
TAG_BYTES = 16

_DOMAIN = b"securegate.streams.event-person.v1\x00"


def event_tag(key: bytes, field: str, value: str) -> bytes:
    """The tag of `value` (exact string, UTF-8) in `field` of an event's payload, under an index key."""
    message = _DOMAIN + field.encode() + b"\x00" + value.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


class EventKeys:
    """The record ciphers (purpose `events`) and index keys (purpose `events-index`) of one tenant, by content-key
    version, and which version is current. Filled by `load` from the KeyService, or by `add` (tests, benchmarks)."""

    def __init__(self, keys=None, tenant_id: str | None = None) -> None:
        self.keys, self.tenant_id = keys, tenant_id  # keys: the KeyService handle
        self._ciphers: dict[int, RecordCipher] = {}
        self._index_keys: dict[int, bytes] = {}
        self.current: RecordCipher | None = None

    def add(self, version: int, cipher: RecordCipher, index_key: bytes, *, current: bool = False) -> "EventKeys":
        self._ciphers[version], self._index_keys[version] = cipher, index_key
        if current:
            self.current = cipher
        return self

    async def load(self, versions: Iterable[int] = (), current: bool = True) -> "EventKeys":
        """Fetch the current version's keys (when `current`) and those of `versions` not held yet."""
        if current:
            record = await self.keys.data_key.remote(self.tenant_id, RECORD_PURPOSE, None)
            index = await self.keys.data_key.remote(self.tenant_id, INDEX_PURPOSE, record.version)
            self.add(record.version, record.cipher(), index.key, current=True)
        for version in set(versions) - set(self._ciphers):
            record = await self.keys.data_key.remote(self.tenant_id, RECORD_PURPOSE, version)
            index = await self.keys.data_key.remote(self.tenant_id, INDEX_PURPOSE, version)
            self.add(version, record.cipher(), index.key)
        return self

    def __call__(self, version: int) -> RecordCipher:
        return self._ciphers[version]

    def tags(self, version: int, payload: dict) -> tuple[bytes | None, ...]:
        """(person_tag, external_tag, unknown_tag) of an event payload sealed under `version`."""
        key = self._index_keys[version]
        return tuple(None if payload.get(field) is None else event_tag(key, field, str(payload[field]))
                     for field in TAGGED_FIELDS)

    def lookup(self, field: str, value: str) -> list[bytes]:
        """The tags `value` in `field` has under every version held (a rotation in progress: more than one)."""
        return [event_tag(key, field, value) for key in self._index_keys.values()]

    def __repr__(self) -> str:  # never show key material
        return f"EventKeys(tenant={self.tenant_id!r}, versions={sorted(self._ciphers)})"
