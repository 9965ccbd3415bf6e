"""Content-key rotation: which key versions the file's sealed values are under, and every value re-sealed under
the current one (an event's tags recomputed with it)."""

from __future__ import annotations

import json
from typing import NamedTuple

from kms.records import RecordCipher
from streams.event_index import EventKeys
from streams.store.file import StreamFile, CipherFor
from streams.store.schema import SET_TAGS
from tenancy.sqlite import columns


class SealedValue(NamedTuple):
    row_id: str
    key_version: int
    sealed: bytes  # the token (kms/records.py)
    model: str | None  # what else the value is bound to (an unknown's model); None for the others


class LegacyStream(NamedTuple):
    stream_id: str
    name: str
    key_version: int
    sealed: bytes  # the URL alone


class Resealing:
    def __init__(self, file: StreamFile) -> None:
        self.file = file

    def key_versions(self) -> set[int]:
        """The content-key versions sealed values are under. Every sighting asks (its ciphers): the big tables are
        walked along their key_version index, one probe per distinct version, never row by row."""
        with self.file.lock:
            found = {version for (version,) in self.file.db.execute("SELECT key_version FROM streams UNION SELECT key_version FROM webhooks")}
            for table in ("events", "unknowns"):
                version, probe = -1, f"SELECT MIN(key_version) FROM {table} WHERE key_version > ?"
                while (version := self.file.db.execute(probe, (version,)).fetchone()[0]) is not None:
                    found.add(version)
        return found

    # (table, id column): every sealed value (column `sealed`), for re-sealing under a new key version.
    SEALED = (("streams", "stream_id"), ("events", "event_id"), ("unknowns", "unknown_id"), ("webhooks", "webhook_id"))

    def reseal(self, keys: EventKeys) -> int:
        """Re-seal every value sealed under another key version with the current one (after a content-key
        rotation, before the old version is retired); an event's tags are recomputed under the new version's
        index key with it. Returns how many values were re-sealed."""
        current = keys.current
        done = self._seal_legacy_stream_names(keys, current)
        for table, id_column in self.SEALED:
            bound = "model" if table == "unknowns" else "NULL"  # what else the value's associated data names
            with self.file.lock:
                rows = list(map(SealedValue._make, self.file.db.execute(
                    f"SELECT {id_column}, key_version, sealed, {bound} FROM {table} WHERE key_version != ?", (current.key_version,))))
            for row in rows:
                also = () if row.model is None else (row.model,)
                plaintext = self.file.open(keys, table, row.row_id, row.sealed, *also)
                sealed = self.file.seal(current, table, row.row_id, plaintext, *also)
                tags = keys.tags(current.key_version, json.loads(plaintext)) if table == "events" else ()
                retag = f", {SET_TAGS}" if tags else ""
                with self.file.lock:
                    self.file.db.execute(f"UPDATE {table} SET key_version = ?, sealed = ?{retag} WHERE {id_column} = ? AND key_version = ?",
                                         (current.key_version, sealed, *tags, row.row_id, row.key_version))
                done += 1
        return done

    def _seal_legacy_stream_names(self, cipher_for: CipherFor, current: RecordCipher) -> int:
        """Rows written before names were sealed (name in clear, URL alone sealed): name and URL sealed together."""
        with self.file.lock:
            rows = list(map(LegacyStream._make, self.file.db.execute(
                f"SELECT {columns(LegacyStream)} FROM streams WHERE name != ''")))
        for row in rows:
            url = self.file.open(cipher_for, "streams", row.stream_id, row.sealed).decode()
            sealed = self.file.seal(current, "streams", row.stream_id, json.dumps({"name": row.name, "url": url}).encode())
            with self.file.lock:
                self.file.db.execute("UPDATE streams SET name = '', key_version = ?, sealed = ? WHERE stream_id = ? AND name = ?",
                                     (current.key_version, sealed, row.stream_id, row.name))
        return len(rows)
