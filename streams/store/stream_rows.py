"""The `streams` table: camera registrations, the name and the URL (which may hold credentials) sealed together."""

from __future__ import annotations

import json
import time
import uuid
from typing import NamedTuple

from kms.records import RecordCipher
from streams.store.file import StreamFile, CipherFor
from tenancy.sqlite import columns, placeholders


class StreamRow(NamedTuple):
    stream_id: str
    name: str  # "" since names are sealed with the URL; rows written before hold the name here, the URL alone sealed
    config: str  # JSON
    created_at: float
    key_version: int
    sealed: bytes  # the token (kms/records.py)


class StreamRows:
    def __init__(self, file: StreamFile) -> None:
        self.file = file

    def add_stream(self, cipher: RecordCipher, name: str, url: str, config: dict) -> str:
        stream_id = "cam_" + uuid.uuid4().hex[:16]
        self.put_stream(cipher, stream_id, name, url, config, time.time())
        return stream_id

    def put_stream(self, cipher: RecordCipher, stream_id: str, name: str, url: str, config: dict, created_at: float) -> None:
        # The name is the tenant's words too ("Anna's office"): sealed with the URL. The clear `name` column
        # stays empty (API names are never empty); rows written before hold their name there and the URL alone.
        sealed = self.file.seal(cipher, "streams", stream_id, json.dumps({"name": name, "url": url}).encode())
        row = StreamRow(stream_id, "", json.dumps(config), created_at, cipher.key_version, sealed)
        with self.file.lock:
            self.file.db.execute(f"INSERT OR REPLACE INTO streams ({columns(StreamRow)}) VALUES ({placeholders(StreamRow)})", row)

    def streams(self, cipher_for: CipherFor) -> list[dict]:
        with self.file.lock:
            rows = list(map(StreamRow._make, self.file.db.execute(f"SELECT {columns(StreamRow)} FROM streams ORDER BY created_at")))
        out = []
        for row in rows:
            opened = self.file.open(cipher_for, "streams", row.stream_id, row.sealed).decode()
            sealed = json.loads(opened) if row.name == "" else {"name": row.name, "url": opened}
            out.append({"stream_id": row.stream_id, "name": sealed["name"], "config": json.loads(row.config),
                        "created_at": row.created_at, "url": sealed["url"]})
        return out

    def delete_stream(self, stream_id: str) -> bool:
        with self.file.lock:
            self.file.db.execute("DELETE FROM streams WHERE stream_id = ?", (stream_id,))
            return self.file.db.changes() > 0
