"""Keyed tags of imported photos (tenancy/bulk_import.py), so a re-import skips what is enrolled."""

from __future__ import annotations

from collections.abc import Sequence

import apsw


class ImportTags:
    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def imported_face(self, person_id: str, tags: Sequence[bytes]) -> str | None:
        """The face imported from a photo of this person whose keyed tag is one of `tags`, while it is enrolled."""
        if not tags:
            return None
        row = self._conn.execute(f"SELECT face_id FROM import_photos WHERE person_id = ? AND photo_tag IN ({','.join('?' * len(tags))})",
                                 (person_id, *tags)).fetchone()
        return row[0] if row else None

    def record(self, person_id: str, face_id: str, tag: bytes, key_version: int) -> None:
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO import_photos (person_id, photo_tag, key_version, face_id) VALUES (?, ?, ?, ?)",
                               (person_id, tag, key_version, face_id))

    def key_versions(self) -> list[int]:
        return [version for (version,) in self._conn.execute("SELECT DISTINCT key_version FROM import_photos ORDER BY key_version")]
