"""Content-key rotation: which key versions the file's sealed values are under, and every value re-sealed under
the current one (an event's tags recomputed with it)."""

from __future__ import annotations

import json

from kms.records import RecordCipher
from streams.event_index import EventKeys
from streams.store.file import CameraFile, CipherFor
from streams.store.schema import SET_TAGS


class Resealing:
    def __init__(self, file: CameraFile) -> None:
        self.file = file

    def key_versions(self) -> set[int]:
        """The content-key versions sealed values are under. Every sighting asks (its ciphers): the big tables are
        walked along their key_version index, one probe per distinct version, never row by row."""
        with self.file.lock:
            found = {r[0] for r in self.file.db.execute("SELECT key_version FROM streams UNION SELECT key_version FROM webhooks")}
            for table in ("events", "unknowns"):
                version, probe = -1, f"SELECT MIN(key_version) FROM {table} WHERE key_version > ?"
                while (version := self.file.db.execute(probe, (version,)).fetchone()[0]) is not None:
                    found.add(version)
        return found

    # (table, id column, sealed column): every sealed value, for re-sealing under a new key version.
    SEALED = (("streams", "stream_id", "sealed_url"), ("events", "event_id", "payload"),
              ("unknowns", "unknown_id", "vectors"), ("webhooks", "webhook_id", "sealed"))

    def reseal(self, keys: EventKeys) -> int:
        """Re-seal every value sealed under another key version with the current one (after a content-key
        rotation, before the old version is retired); an event's tags are recomputed under the new version's
        index key with it. Returns how many values were re-sealed."""
        current = keys.current
        done = self._seal_legacy_stream_names(keys, current)
        for table, id_column, column in self.SEALED:
            bound = "model" if table == "unknowns" else "NULL"  # what else the value's associated data names
            with self.file.lock:
                rows = self.file.db.execute(f"SELECT {id_column}, key_version, nonce, {column}, {bound} FROM {table} WHERE key_version != ?",
                                        (current.key_version,)).fetchall()
            for row_id, version, nonce, ciphertext, model in rows:
                also = () if model is None else (model,)
                plaintext = self.file.open(keys, table, row_id, version, nonce, ciphertext, *also)
                sealed = self.file.seal(current, table, row_id, plaintext, *also)
                tags = keys.tags(current.key_version, json.loads(plaintext)) if table == "events" else ()
                retag = f", {SET_TAGS}" if tags else ""
                with self.file.lock:
                    self.file.db.execute(f"UPDATE {table} SET key_version = ?, nonce = ?, {column} = ?{retag} WHERE {id_column} = ? AND key_version = ?",
                                     (sealed.key_version, sealed.nonce, sealed.ciphertext, *tags, row_id, version))
                done += 1
        return done

    def _seal_legacy_stream_names(self, cipher_for: CipherFor, current: RecordCipher) -> int:
        """Rows written before names were sealed (name in clear, URL alone sealed): name and URL sealed together."""
        with self.file.lock:
            rows = self.file.db.execute("SELECT stream_id, name, key_version, nonce, sealed_url FROM streams WHERE name != ''").fetchall()
        for stream_id, name, version, nonce, ciphertext in rows:
            url = self.file.open(cipher_for, "streams", stream_id, version, nonce, ciphertext).decode()
            sealed = self.file.seal(current, "streams", stream_id, json.dumps({"name": name, "url": url}).encode())
            with self.file.lock:
                self.file.db.execute("UPDATE streams SET name = '', key_version = ?, nonce = ?, sealed_url = ? WHERE stream_id = ? AND name = ?",
                                 (sealed.key_version, sealed.nonce, sealed.ciphertext, stream_id, name))
        return len(rows)
