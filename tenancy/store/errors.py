"""The typed errors `TenantStore` raises, each declaring the API error it becomes (securegate/errors.py)."""

from __future__ import annotations

from securegate import errors


class StoreError(Exception):
    """Base class of the typed errors raised by `TenantStore`."""


class ModelMismatch(StoreError):
    """The file was created for another embedding model or dimension; its vectors are not comparable."""

    api_error = errors.ModelMismatch


class TenantMismatch(StoreError):
    """The file belongs to another tenant."""


class DuplicateExternalId(StoreError):
    """Another person of this tenant already has that external id."""

    api_error = errors.Conflict


class InvalidMetadata(StoreError, ValueError):
    """A person's metadata that cannot be stored as standard JSON and read back (NaN, infinity, unencodable)."""

    api_error = errors.InvalidRequest


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor this store did not hand out."""

    api_error = errors.InvalidRequest


class NotFound(StoreError):
    """The person or face does not exist (or the face does not belong to that person)."""

    api_error = errors.NotFound


class CorruptPerson(StoreError):
    """A person's sealed external id or metadata failed authentication: tampered, moved, or wrong key."""

    api_error = errors.CorruptRecord

    def __init__(self, person_id: str) -> None:
        super().__init__(f"person {person_id}: sealed personal fields failed authentication")
        self.person_id = person_id

    def api_details(self) -> dict:
        return {"person_id": self.person_id}


class SamePerson(StoreError, ValueError):
    """A correction that names one person twice: a merge into itself, a face moved to its own person, a
    person's own face given as a rejection of that person."""

    api_error = errors.SamePerson


class CorruptRecord(StoreError):
    """A sealed embedding failed authentication: tampered, moved between rows/tenants, or wrong key."""

    api_error = errors.CorruptRecord

    def __init__(self, face_id: str) -> None:
        super().__init__(f"face {face_id}: sealed embedding failed authentication")
        self.face_id = face_id

    def api_details(self) -> dict:
        return {"face_id": self.face_id}
