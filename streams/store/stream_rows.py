"""The `streams` table: camera registrations, the name and the URL (which may hold credentials) sealed together."""

from __future__ import annotations

import json
import time
import uuid

from kms.records import RecordCipher
from streams.store.file import CameraFile, CipherFor


class StreamRows:
    def __init__(self, file: CameraFile) -> None:
        self.file = file

    def add_stream(self, cipher: RecordCipher, name: str, url: str, config: dict) -> str:
        stream_id = "cam_" + uuid.uuid4().hex[:16]
        self.put_stream(cipher, stream_id, name, url, config, time.time())
        return stream_id

    def put_stream(self, cipher: RecordCipher, stream_id: str, name: str, url: str, config: dict, created_at: float) -> None:
        # The name is the tenant's words too ("Anna's office"): sealed with the URL. The clear `name` column
        # stays empty (API names are never empty); rows written before hold their name there and the URL alone.
        sealed = self.file.seal(cipher, "streams", stream_id, json.dumps({"name": name, "url": url}).encode())
        with self.file.lock:
            self.file.db.execute("INSERT OR REPLACE INTO streams VALUES (?,?,?,?,?,?,?)",
                             (stream_id, "", json.dumps(config), created_at, sealed.key_version, sealed.nonce, sealed.ciphertext))

    def streams(self, cipher_for: CipherFor) -> list[dict]:
        with self.file.lock:
            rows = self.file.db.execute("SELECT * FROM streams ORDER BY created_at").fetchall()
        out = []
        for r in rows:
            opened = self.file.open(cipher_for, "streams", r[0], r[4], r[5], r[6]).decode()
            sealed = json.loads(opened) if r[1] == "" else {"name": r[1], "url": opened}
            out.append({"stream_id": r[0], "name": sealed["name"], "config": json.loads(r[2]), "created_at": r[3],
                        "url": sealed["url"]})
        return out

    def delete_stream(self, stream_id: str) -> bool:
        with self.file.lock:
            self.file.db.execute("DELETE FROM streams WHERE stream_id = ?", (stream_id,))
            return self.file.db.changes() > 0
