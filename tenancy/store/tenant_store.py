"""`TenantStore`: one tenant's file, the facade its callers use (actors, reads, service, migration). It opens
the file and hands the connection, the record codec and the audit chain to the table groups that do the work."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from kms.records import RecordCipher
from tenancy import chain, fence
from tenancy.audit_log import AuditRecord
from tenancy.personal import PersonKeys
from tenancy.store.audit import StoreAudit
from tenancy.store.codec import RecordCodec
from tenancy.store.corrections import Corrections
from tenancy.store.faces import FaceRecord, Faces, LoadedFaces
from tenancy.store.file import StoreFile
from tenancy.store.imports import ImportTags
from tenancy.store.kept import KeptVectors
from tenancy.store.persons import Person, Persons
from tenancy.store.rejections import Rejections
from tenancy.store.resealing import Resealer


class TenantStore:
    """One tenant's persons and sealed face embeddings in a single SQLite file. Synchronous API."""

    def __init__(self, file: StoreFile, tenant_id: str, model: str, dim: int) -> None:
        self.file = file
        self._conn = file.conn
        self.path = file.path
        self.tenant_id = tenant_id
        self.codec = codec = RecordCodec(tenant_id, model, dim)
        self.audit = audit = StoreAudit(file.conn, tenant_id)
        self.persons = Persons(file, codec, audit)
        self.faces = Faces(file, codec, audit)
        self.kept = KeptVectors(file, codec, audit)
        self.rejections = Rejections(file, codec, audit)
        self.imports = ImportTags(file.conn)
        self.corrections = Corrections(file, audit)
        self.resealer = Resealer(file, codec, audit)

    @property
    def model(self) -> str:
        """The embedding model the file is bound to (changes at a model migration's switch)."""
        return self.codec.model

    @property
    def dim(self) -> int:
        return self.codec.dim

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: str | Path, tenant_id: str, model: str, dim: int, *, vfs: str | None = None) -> TenantStore:
        """Open (or create) the tenant's file; `vfs` names an apsw VFS to run it through (the power-loss test)."""
        return cls(StoreFile.open(path, tenant_id, model, dim, vfs=vfs), tenant_id, model, dim)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> TenantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def claim_writer(self, owner: str | None = None, wait_s: float | None = None) -> fence.Claim:
        """Become the file's one writer (tenancy/fence.py): an earlier claimant's writes are refused from now on."""
        return fence.claim(self._conn, self.tenant_id, owner, wait_s)

    def transaction(self) -> AbstractContextManager[None]:
        """Group many calls into one durable commit (bulk enrolment); nested calls become savepoints."""
        return self.file.transaction()

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and truncate it to zero bytes; False if a reader blocked it."""
        return self.file.checkpoint()

    def vacuum(self) -> None:
        self.file.vacuum()

    # ------------------------------------------------------------------ persons (tenancy/store/persons.py)
    def create_person(self, external_id: str | None, metadata: dict[str, Any], *, keys: PersonKeys,
                      audit: AuditRecord | None = None, person_id: str | None = None) -> Person:
        return self.persons.create(external_id, metadata, keys=keys, audit=audit, person_id=person_id)

    def has_person(self, person_id: str) -> bool:
        return self.persons.exists(person_id)

    def get_person(self, person_id: str, *, keys: PersonKeys) -> Person | None:
        return self.persons.get(person_id, keys=keys)

    def get_person_by_external_id(self, external_id: str, *, keys: PersonKeys) -> Person | None:
        return self.persons.by_external_id(external_id, keys=keys)

    def list_persons(self, limit: int, cursor: str | None = None, *, keys: PersonKeys) -> tuple[list[Person], str | None]:
        return self.persons.page(limit, cursor, keys=keys)

    def external_ids(self, keys: PersonKeys, person_ids: set[str] | None = None) -> dict[str, str | None]:
        return self.persons.external_ids(keys, person_ids)

    def person_key_versions(self) -> dict[int, int]:
        return self.persons.key_versions()

    def seal_legacy_persons(self, keys: PersonKeys, batch_size: int = 500) -> int:
        return self.persons.seal_legacy(keys, batch_size)

    def reencrypt_persons(self, keys: PersonKeys, batch_size: int = 500) -> Iterator[tuple[int, int]]:
        return self.persons.reencrypt(keys, batch_size)

    def delete_person(self, person_id: str, *, audit: AuditRecord | None = None) -> list[str]:
        return self.persons.delete(person_id, audit=audit)

    # ------------------------------------------------------------------ faces (tenancy/store/faces.py)
    def add_face(self, person_id: str, embedding: np.ndarray, cipher: RecordCipher, det_score: float, quality: float,
                 *, audit: AuditRecord | None = None, crop: np.ndarray | None = None) -> FaceRecord:
        """Seal and insert one embedding (and its aligned crop, when kept); durable when it returns."""
        return self.faces.add(person_id, [embedding], cipher, [det_score], [quality], audit=audit,
                              crops=None if crop is None else [crop])[0]

    def add_faces(self, person_id: str, embeddings: Sequence[np.ndarray] | np.ndarray, cipher: RecordCipher,
                  det_scores: Sequence[float], qualities: Sequence[float], *, audit: AuditRecord | None = None,
                  crops: Sequence[np.ndarray | None] | None = None) -> list[FaceRecord]:
        return self.faces.add(person_id, embeddings, cipher, det_scores, qualities, audit=audit, crops=crops)

    def delete_face(self, person_id: str, face_id: str, *, audit: AuditRecord | None = None) -> None:
        self.faces.delete(person_id, face_id, audit=audit)

    def delete_faces(self, face_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        self.faces.delete_many(face_ids, audit=audit)

    def faces_of(self, person_id: str) -> list[FaceRecord]:
        return self.faces.records("person_id = ?", (person_id,))

    def faces_created_before(self, cutoff: float) -> list[FaceRecord]:
        """Faces older than `cutoff` (unix time): what a retention period expires."""
        return self.faces.records("created_at < ?", (cutoff,))

    def face_owner(self, face_id: str) -> str | None:
        return self.faces.owner(face_id)

    def count_faces(self) -> int:
        return self.faces.count()

    def face_ids(self, shard: tuple[int, int] | None = None) -> set[str]:
        return self.faces.ids(shard)

    def load_all(self, cipher_for_version: Callable[[int], RecordCipher], shard: tuple[int, int] | None = None) -> LoadedFaces:
        return self.faces.load_all(cipher_for_version, shard)

    # ------------------------------------------------------------------ kept crops, model migration (kept.py)
    def crop_counts(self) -> dict[str, int]:
        return self.kept.crop_counts()

    def load_crops(self, face_ids: Sequence[str], cipher_for_version: Callable[[int], RecordCipher]) -> dict[str, np.ndarray]:
        return self.kept.load_crops(face_ids, cipher_for_version)

    def shadow_missing(self, model: str, limit: int) -> tuple[list[str], int, int]:
        return self.kept.shadow_missing(model, limit)

    def shadow_count(self, model: str) -> int:
        return self.kept.shadow_count(model)

    def add_shadow(self, model: str, dim: int, face_ids: Sequence[str], vectors: np.ndarray, cipher: RecordCipher) -> int:
        return self.kept.add_shadow(model, dim, face_ids, vectors, cipher)

    def switch_model(self, model: str, dim: int, *, audit: AuditRecord | None = None) -> int | None:
        return self.kept.switch_model(model, dim, audit=audit)

    def clear_shadow(self) -> None:
        self.kept.clear_shadow()

    # ------------------------------------------------------------------ rejections (rejections.py)
    def add_rejections(self, person_id: str, embeddings: Sequence[np.ndarray] | np.ndarray, cipher: RecordCipher,
                       source: str, *, audit: AuditRecord | None = None) -> list[str]:
        return self.rejections.add(person_id, embeddings, cipher, source, audit=audit)

    def rejections_of(self, person_id: str) -> list[dict]:
        return self.rejections.of_person(person_id)

    def delete_rejection(self, person_id: str, rejection_id: str, *, audit: AuditRecord | None = None) -> None:
        self.rejections.delete(person_id, rejection_id, audit=audit)

    def delete_rejections(self, rejection_ids: Sequence[str], *, audit: AuditRecord | None = None) -> None:
        self.rejections.delete_many(rejection_ids, audit=audit)

    def rejections_created_before(self, cutoff: float) -> list[str]:
        return self.rejections.created_before(cutoff)

    def load_rejections(self, cipher_for_version: Callable[[int], RecordCipher]) -> LoadedFaces:
        return self.rejections.load_all(cipher_for_version)

    def rejection_count(self) -> int:
        return self.rejections.count()

    def rejection_ids(self) -> set[str]:
        return self.rejections.ids()

    # ------------------------------------------------------------------ corrections (corrections.py)
    def merge_persons(self, person_id: str, merged_person_id: str, *, audit: AuditRecord | None = None) -> dict:
        return self.corrections.merge_persons(person_id, merged_person_id, audit=audit)

    def move_face(self, person_id: str, face_id: str, to_person_id: str, *, audit: AuditRecord | None = None) -> None:
        self.corrections.move_face(person_id, face_id, to_person_id, audit=audit)

    # ------------------------------------------------------------------ imported photos (imports.py)
    def imported_face(self, person_id: str, tags: Sequence[bytes]) -> str | None:
        return self.imports.imported_face(person_id, tags)

    def record_import(self, person_id: str, face_id: str, tag: bytes, key_version: int) -> None:
        self.imports.record(person_id, face_id, tag, key_version)

    def import_key_versions(self) -> list[int]:
        return self.imports.key_versions()

    # ------------------------------------------------------------------ key rotation (resealing.py)
    def key_versions_in_use(self) -> dict[int, int]:
        return self.resealer.key_versions_in_use()

    def reencrypt(self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher, batch_size: int = 500,
                  *, audit: AuditRecord | None = None) -> Iterator[tuple[int, int]]:
        return self.resealer.vectors(cipher_for_version, new_cipher, batch_size, audit=audit)

    def reencrypt_kept(self, cipher_for_version: Callable[[int], RecordCipher], new_cipher: RecordCipher,
                       batch_size: int = 500) -> int:
        return self.resealer.kept(cipher_for_version, new_cipher, batch_size)

    # ------------------------------------------------------------------ audit (audit.py)
    @property
    def chain_id(self) -> str:
        return self.audit.chain_id

    def record_audit(self, record: AuditRecord) -> None:
        self.audit.record(record)

    def audit_events(self, since: int = 0, limit: int = 100) -> list[dict]:
        return self.audit.events(since, limit)

    def checkpoint_audit(self, mac: Callable[[bytes], bytes] | None, policy: chain.CheckpointPolicy,
                         *, force: bool = False) -> chain.Checkpoint | None:
        return self.audit.checkpoint(mac, policy, force=force)

    def verify_audit(self, verify_tag: Callable[[bytes, bytes], bool]) -> chain.VerifyResult:
        return self.audit.verify(verify_tag)
