"""Per-tenant encrypted face store: one SQLite file per tenant, every embedding sealed with AES-256-GCM.

Guarantees:
- No plaintext vector ever reaches SQLite: embeddings are sealed before they are bound to a statement and
  opened only in `load_all` / `reencrypt`, in process memory.
- Each record's associated data is (tenant_id, face_id, model name), so a row copied to another face id
  or into another tenant's file fails authentication instead of silently matching someone else.
- Nothing a tenant says about a person is in clear either (tenancy/personal.py): `external_id` and `metadata`
  are sealed per field (AAD: tenant, person id, field), and the external id is found and kept unique through
  a keyed blind index (HMAC-SHA256), re-computed under the new key when the content key rotates.
- Every sealed value is stored as one token (kms/records.py: format | key version | nonce | ciphertext+tag),
  its key version also in an indexed `key_version` column for rotation (docs/security.md, storage).
- `add_face` returns only after a durable commit (WAL + synchronous=FULL fsyncs the WAL on commit).
- Deletion is real: secure_delete zeroes freed cells and pages, and delete paths truncate the WAL so the
  old page images (which still hold the ciphertext, face id and external id) do not linger there.

The file is opened by `tenancy.sqlite.connect` (apsw, and why): `with conn:` really begins a transaction and
nests, so `transaction()` groups calls into one commit and a read takes one snapshot (`with conn:` around a
SELECT). (No SQLite extension is loaded: sqlite-vec is only a benchmark baseline.)

The rooms: `tenant_store` (the `TenantStore` facade) hands one open `file` (connection, WAL hygiene), one
`codec` (each record kind's AAD and plaintext form) and the `audit` chain to the table groups: `persons`,
`faces`, `kept` (kept crops and a model migration's shadow vectors), `rejections`, `imports` (imported
photos' tags), `corrections` (merge, move) and `resealing` (content-key rotation). `schema` holds the tables
and their forward migrations. Callers import from here.
"""

from tenancy.store.codec import VECTOR_DTYPE, decode_crop, encode_crop, record_aad
from tenancy.store.errors import (
    CorruptPerson,
    CorruptRecord,
    DuplicateExternalId,
    InvalidCursor,
    InvalidMetadata,
    ModelMismatch,
    NotFound,
    SamePerson,
    StoreError,
    TenantMismatch,
)
from tenancy.store.faces import FaceRecord, LoadedFaces
from tenancy.store.persons import Person
from tenancy.store.schema import MIGRATIONS, SCHEMA_VERSION, shard_of
from tenancy.store.tenant_store import TenantStore

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "VECTOR_DTYPE", "CorruptPerson", "CorruptRecord", "DuplicateExternalId", "FaceRecord",
    "InvalidCursor", "InvalidMetadata", "LoadedFaces", "ModelMismatch", "NotFound", "Person", "SamePerson", "StoreError",
    "TenantMismatch", "TenantStore", "decode_crop", "encode_crop", "record_aad", "shard_of",
]
