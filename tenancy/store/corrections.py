"""Corrections that move a person's faces: a merge of two persons, a face moved to another person. Face and
rejection seals bind their own ids, not the person's: nothing is re-sealed, rows only change owner."""

from __future__ import annotations

from tenancy.audit_log import AuditRecord
from tenancy.store.audit import StoreAudit
from tenancy.store.errors import NotFound, SamePerson
from tenancy.store.file import StoreFile
from tenancy.store.persons import person_exists


class Corrections:
    def __init__(self, file: StoreFile, audit: StoreAudit) -> None:
        self._file = file
        self._conn = file.conn
        self._audit = audit

    def merge_persons(self, person_id: str, merged_person_id: str, *, audit: AuditRecord | None = None) -> dict:
        """`merged_person_id`'s faces and rejections become `person_id`'s and the merged person is deleted, in
        one transaction."""
        with self._conn:
            for pid in (person_id, merged_person_id):  # unknown ids first: 404 says nothing about anyone else's
                if not person_exists(self._conn, pid):
                    raise NotFound(f"person {pid} does not exist")
            if person_id == merged_person_id:
                raise SamePerson(f"cannot merge person {person_id} into itself")
            face_ids = [face_id for (face_id,) in self._conn.execute("SELECT face_id FROM faces WHERE person_id = ?",
                                                                     (merged_person_id,))]
            self._conn.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            self._conn.execute("UPDATE rejections SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            rejections = self._conn.changes()
            # A photo imported for both keeps the surviving person's record; the merged one's goes with it.
            self._conn.execute("UPDATE OR IGNORE import_photos SET person_id = ? WHERE person_id = ?", (person_id, merged_person_id))
            self._conn.execute("DELETE FROM persons WHERE person_id = ?", (merged_person_id,))
            self._audit.append(audit and audit.with_counts(faces=len(face_ids), rejections=rejections, persons=1)
                               .with_ids(person_id=person_id, merged_person_id=merged_person_id))
        self._file.checkpoint()  # the merged person's sealed fields leave the WAL
        return {"face_ids": face_ids, "rejections": rejections}

    def move_face(self, person_id: str, face_id: str, to_person_id: str, *, audit: AuditRecord | None = None) -> None:
        """Face `face_id` of `person_id` becomes `to_person_id`'s."""
        with self._conn:
            if self._conn.execute("SELECT 1 FROM faces WHERE face_id = ? AND person_id = ?", (face_id, person_id)).fetchone() is None:
                raise NotFound(f"face {face_id} of person {person_id} does not exist")
            if not person_exists(self._conn, to_person_id):
                raise NotFound(f"person {to_person_id} does not exist")
            if person_id == to_person_id:
                raise SamePerson(f"face {face_id} already belongs to person {person_id}")
            self._conn.execute("UPDATE faces SET person_id = ? WHERE face_id = ?", (to_person_id, face_id))
            self._conn.execute("UPDATE OR IGNORE import_photos SET person_id = ? WHERE face_id = ?", (to_person_id, face_id))
            self._conn.execute("DELETE FROM import_photos WHERE face_id = ? AND person_id != ?", (face_id, to_person_id))
            self._audit.append(audit and audit.with_counts(faces=1)
                               .with_ids(person_id=person_id, to_person_id=to_person_id, face_id=face_id))
