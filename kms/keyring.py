"""The key hierarchy: org root (OEK, in the provider) -> tenant TEK -> tenant CEK versions -> data keys.

- TEK: 32 random bytes from `provider.generate_data_key({"tenant_id": t, "purpose": "tek"})`, stored
  wrapped by the OEK. Rotating the root re-wraps TEKs only; nothing below changes.
- CEK v1, v2, ...: 32 random bytes, stored wrapped by the TEK with AES-256-GCM, AAD = tenant + version.
- Data key: HKDF-SHA256(CEK, info = tenant, purpose, version), derived per call, never stored.

Wrapped keys live in a SQLite key store (apsw; secure_delete, WAL, synchronous=FULL; private: see `connect_keystore`);
no plaintext key is ever written. Destroying a tenant deletes its TEK and CEKs and checkpoints the WAL, so the
key-store files no longer hold them: records sealed under them are unrecoverable (crypto-shredding).

Unwrapped TEKs/CEKs are cached for `cache_ttl_s` so a burst does not call the provider per request. The
key-store row is still read on every `data_key` call (a few microseconds), so a destroyed tenant or a
retired version stops working at once, even in another process sharing the key store.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import apsw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kms.errors import InvalidCiphertext, KeyNotFound
from kms.providers.base import KeyProvider
from kms.records import RecordCipher

KEY_BYTES = 32
_NONCE_BYTES = 12
_MAX_NAME_CHARS = 128

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id       TEXT PRIMARY KEY,
    tek_wrapped     BLOB NOT NULL,      -- TEK wrapped by the provider's root (OEK)
    root_id         TEXT NOT NULL,      -- root the TEK is wrapped under (lets rotate_root resume)
    current_version INTEGER NOT NULL,
    created_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ceks (
    tenant_id   TEXT NOT NULL REFERENCES tenants(tenant_id),
    version     INTEGER NOT NULL,
    cek_wrapped BLOB NOT NULL,          -- nonce | AES-256-GCM_TEK(CEK), AAD = tenant + version
    created_at  REAL NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
"""


@dataclass(frozen=True, slots=True)
class DataKey:
    """A per-operation record key. Use `.cipher()` and drop it; the key bytes never appear in repr."""

    tenant_id: str
    purpose: str
    version: int
    key: bytes = field(repr=False)

    def cipher(self) -> RecordCipher:
        return RecordCipher(self.key, self.version)


class KeyCache:
    """Tiny monotonic-clock TTL cache for unwrapped keys (values are bytes; never persisted)."""

    __slots__ = ("_ttl", "_items", "_lock", "hits", "misses")

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._items: dict[tuple, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None and item[0] > time.monotonic():
                self.hits += 1
                return item[1]
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None

    def put(self, key: tuple, value: bytes) -> None:
        if self._ttl > 0:
            with self._lock:
                self._items[key] = (time.monotonic() + self._ttl, value)

    def drop_tenant(self, tenant_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[1] == tenant_id]:
                del self._items[key]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Keyring:
    """Per-tenant keys under an org root held by a `KeyProvider`; wrapped keys persist in SQLite."""

    def __init__(self, provider: KeyProvider, keystore_path: str | os.PathLike[str], cache_ttl_s: float = 60.0,
                 *, vfs: str | None = None) -> None:
        """`vfs`: an apsw VFS name to run the key store through (the power-loss test's); None = the default."""
        self.provider = provider
        self.keystore_path = Path(keystore_path)
        # Held around every statement (an apsw connection is for one thread at a time) and every transaction.
        self._db_lock = threading.RLock()
        self._db = connect_keystore(self.keystore_path, vfs)
        self._db.execute(_SCHEMA)
        self._cache = KeyCache(cache_ttl_s)

    # -- tenants -----------------------------------------------------------------------------------
    def create_tenant(self, tenant_id: str) -> None:
        """Create the tenant's TEK and CEK v1. Idempotent; writes nothing if the provider fails."""
        _check_name("tenant_id", tenant_id)
        if self._tenant_row(tenant_id) is not None:
            return
        # Provider call first, outside any transaction: an outage leaves no partial tenant behind.
        tek, tek_wrapped = self.provider.generate_data_key(_tek_context(tenant_id))
        root_id = self.provider.current_root_id()
        cek_wrapped = _wrap_cek(tek, tenant_id, 1, os.urandom(KEY_BYTES))
        now = time.time()
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO tenants VALUES (?, ?, ?, 1, ?)", (tenant_id, tek_wrapped, root_id, now))
            inserted = db.changes()
            if inserted:  # lost a creation race otherwise: keep the winner's keys
                db.execute("INSERT INTO ceks VALUES (?, 1, ?, ?)", (tenant_id, cek_wrapped, now))
        if inserted:
            self._cache.put(("tek", tenant_id), tek)  # first data_key needs no provider round trip

    def data_key(self, tenant_id: str, purpose: str = "embeddings", version: int | None = None) -> DataKey:
        """Derive the record key for (tenant, purpose, CEK version); version None = current."""
        _check_name("purpose", purpose)
        with self._db_lock:
            if version is None:
                row = self._db.execute(
                    "SELECT c.version, c.cek_wrapped FROM tenants t JOIN ceks c"
                    " ON c.tenant_id = t.tenant_id AND c.version = t.current_version WHERE t.tenant_id = ?",
                    (tenant_id,),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT version, cek_wrapped FROM ceks WHERE tenant_id = ? AND version = ?",
                    (tenant_id, int(version)),
                ).fetchone()
        if row is None:
            what = "tenant" if version is None else f"key version {version} of tenant"
            raise KeyNotFound(f"{what} {tenant_id!r} does not exist (never created, retired or destroyed)")
        cek_version, cek_wrapped = row
        cek = self._cek(tenant_id, cek_version, cek_wrapped)
        return DataKey(tenant_id, purpose, cek_version, _derive_data_key(cek, tenant_id, purpose, cek_version))

    def current_version(self, tenant_id: str) -> int:
        row = self._tenant_row(tenant_id)
        if row is None:
            raise KeyNotFound(f"tenant {tenant_id!r} does not exist")
        return row[2]

    def versions(self, tenant_id: str) -> list[int]:
        self.current_version(tenant_id)  # KeyNotFound for unknown tenants rather than []
        with self._db_lock:
            rows = self._db.execute(
                "SELECT version FROM ceks WHERE tenant_id = ? ORDER BY version", (tenant_id,)
            ).fetchall()
        return [r[0] for r in rows]

    # -- rotation ----------------------------------------------------------------------------------
    def rotate_root(self) -> dict:
        """Make a new provider root current and re-wrap every TEK under it (CEKs, records untouched)."""
        previous = self.provider.current_root_id()
        self.provider.rotate_root()
        self._cache.clear()  # TEK bytes are unchanged, but a rotation is when stale state should go
        result = self.rewrap_tenants()
        return {"previous_root_id": previous, **result}

    def rewrap_tenants(self) -> dict:
        """Re-wrap TEKs not yet under the current root. Safe to re-run after a partial failure."""
        root_id = self.provider.current_root_id()
        with self._db_lock:
            rows = self._db.execute(
                "SELECT tenant_id, tek_wrapped FROM tenants WHERE root_id != ?", (root_id,)
            ).fetchall()
        rewrapped = 0
        for tenant_id, old_wrapped in rows:
            context = _tek_context(tenant_id)
            new_wrapped = self.provider.wrap(self.provider.unwrap(old_wrapped, context), context)
            with self._transaction() as db:
                # Compare-and-swap: skip a tenant destroyed or re-wrapped meanwhile.
                db.execute(
                    "UPDATE tenants SET tek_wrapped = ?, root_id = ? WHERE tenant_id = ? AND tek_wrapped = ?",
                    (new_wrapped, root_id, tenant_id, old_wrapped),
                )
                rewrapped += db.changes()
        with self._db_lock:
            total = self._db.execute("SELECT COUNT(*) FROM tenants").fetchone()[0]
        return {"root_id": root_id, "rewrapped": rewrapped, "tenants": total}

    def rotate_tenant(self, tenant_id: str) -> int:
        """Add CEK version N+1 and make it current; older versions stay readable until retired."""
        row = self._tenant_row(tenant_id)
        if row is None:
            raise KeyNotFound(f"tenant {tenant_id!r} does not exist")
        tek = self._tek(tenant_id, row[1])
        cek = os.urandom(KEY_BYTES)
        with self._transaction() as db:
            current = db.execute(
                "SELECT current_version FROM tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            if current is None:
                raise KeyNotFound(f"tenant {tenant_id!r} was destroyed")
            new_version = current[0] + 1
            db.execute(
                "INSERT INTO ceks VALUES (?, ?, ?, ?)",
                (tenant_id, new_version, _wrap_cek(tek, tenant_id, new_version, cek), time.time()),
            )
            db.execute("UPDATE tenants SET current_version = ? WHERE tenant_id = ?", (new_version, tenant_id))
        self._cache.drop_tenant(tenant_id)
        return new_version

    def retire_version(self, tenant_id: str, version: int) -> None:
        """Shred one old CEK version, once the caller has re-encrypted its records. Not the current one."""
        with self._transaction() as db:
            row = db.execute("SELECT current_version FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"tenant {tenant_id!r} does not exist")
            if int(version) == row[0]:
                raise ValueError("cannot retire the current key version; rotate_tenant first")
            db.execute("DELETE FROM ceks WHERE tenant_id = ? AND version = ?", (tenant_id, int(version)))
            if not db.changes():
                raise KeyNotFound(f"key version {version} of tenant {tenant_id!r} does not exist")
        self._cache.drop_tenant(tenant_id)
        self._checkpoint()

    def destroy_tenant(self, tenant_id: str) -> None:
        """Crypto-shred a tenant: delete its TEK and every CEK and purge them from the key-store files."""
        with self._transaction() as db:
            db.execute("DELETE FROM ceks WHERE tenant_id = ?", (tenant_id,))
            db.execute("DELETE FROM tenants WHERE tenant_id = ?", (tenant_id,))
            deleted = db.changes()
        self._cache.drop_tenant(tenant_id)
        self._checkpoint()
        if not deleted:
            raise KeyNotFound(f"tenant {tenant_id!r} does not exist")

    # -- introspection -----------------------------------------------------------------------------
    def status(self) -> dict:
        with self._db_lock:
            tenants = self._db.execute(
                "SELECT tenant_id, current_version, root_id FROM tenants ORDER BY tenant_id"
            ).fetchall()
            versions = self._db.execute("SELECT tenant_id, version FROM ceks ORDER BY tenant_id, version").fetchall()
        by_tenant: dict[str, list[int]] = {}
        for tenant_id, version in versions:
            by_tenant.setdefault(tenant_id, []).append(version)
        return {
            "provider": self.provider.name,
            "root_id": self.provider.current_root_id(),
            "tenant_count": len(tenants),
            "tenants": {
                t: {"current_version": cur, "versions": by_tenant.get(t, []), "root_id": root}
                for t, cur, root in tenants
            },
            "cache": {"hits": self._cache.hits, "misses": self._cache.misses},
        }

    def close(self) -> None:
        with self._db_lock:
            self._db.close()

    # -- internals ---------------------------------------------------------------------------------
    def _tenant_row(self, tenant_id: str) -> tuple | None:
        with self._db_lock:
            return self._db.execute(
                "SELECT tenant_id, tek_wrapped, current_version FROM tenants WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()

    def _tek(self, tenant_id: str, tek_wrapped: bytes) -> bytes:
        cached = self._cache.get(("tek", tenant_id))
        if cached is not None:
            return cached
        tek = self.provider.unwrap(tek_wrapped, _tek_context(tenant_id))
        self._cache.put(("tek", tenant_id), tek)
        return tek

    def _cek(self, tenant_id: str, version: int, cek_wrapped: bytes) -> bytes:
        cached = self._cache.get(("cek", tenant_id, version))
        if cached is not None:
            return cached
        row = self._tenant_row(tenant_id)
        if row is None:
            raise KeyNotFound(f"tenant {tenant_id!r} was destroyed")
        cek = _unwrap_cek(self._tek(tenant_id, row[1]), tenant_id, version, cek_wrapped)
        self._cache.put(("cek", tenant_id, version), cek)
        return cek

    @contextmanager
    def _transaction(self) -> Iterator[apsw.Connection]:
        """One transaction under the connection lock (BEGIN IMMEDIATE: the write lock is taken at once, so a
        read-then-write never fails to upgrade); commits, or rolls back on any exception."""
        with self._db_lock, self._db:
            yield self._db

    def _checkpoint(self) -> None:
        # Move the zeroed pages into the main file and truncate the WAL, whose old frames still hold
        # the deleted wrapped keys.
        with self._db_lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def __repr__(self) -> str:
        return f"Keyring(provider={self.provider.name!r}, keystore={str(self.keystore_path)!r})"


# The same settings as tenancy/sqlite.py's `connect`, which says why apsw and why each one (kms imports
# nothing of ours, so it keeps this copy): change both together.
_PRAGMAS = ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON", "foreign_keys=ON")
_BUSY_TIMEOUT_MS = 5_000


def connect_keystore(path: Path, vfs: str | None) -> apsw.Connection:
    """The key store, private (directories created 0700; the file 0600 before SQLite opens it, so its -wal
    and -shm get 0600 too; an existing one tightened) and durable, with IMMEDIATE transactions."""
    missing = [d for d in (path.parent, *path.parent.parents) if not d.is_dir()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, *(Path(f"{path}{suffix}") for suffix in ("-wal", "-shm", "-journal"))):
        if file.exists():
            os.chmod(file, 0o600)
    conn = apsw.Connection(str(path), vfs=vfs)
    try:
        conn.set_busy_timeout(_BUSY_TIMEOUT_MS)
        for pragma in _PRAGMAS:
            conn.execute(f"PRAGMA {pragma}")
        conn.transaction_mode = "IMMEDIATE"
    except BaseException:
        conn.close()
        raise
    return conn


def _tek_context(tenant_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "purpose": "tek"}


def _encode_fields(*fields: str | int) -> bytes:
    """Length-prefixed encoding, so ("ab", "c") and ("a", "bc") never collide."""
    out = bytearray()
    for value in fields:
        raw = value.encode("utf-8") if isinstance(value, str) else struct.pack(">Q", value)
        out += struct.pack(">I", len(raw)) + raw
    return bytes(out)


def _cek_aad(tenant_id: str, version: int) -> bytes:
    return b"securegate/cek/v1" + _encode_fields(tenant_id, version)


def _wrap_cek(tek: bytes, tenant_id: str, version: int, cek: bytes) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(tek).encrypt(nonce, cek, _cek_aad(tenant_id, version))


def _unwrap_cek(tek: bytes, tenant_id: str, version: int, wrapped: bytes) -> bytes:
    try:
        return AESGCM(tek).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _cek_aad(tenant_id, version))
    except InvalidTag as exc:
        raise InvalidCiphertext(f"CEK v{version} of tenant {tenant_id!r} failed authentication") from exc


def _derive_data_key(cek: bytes, tenant_id: str, purpose: str, version: int) -> bytes:
    info = b"securegate/data-key/v1" + _encode_fields(tenant_id, purpose, version)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(cek)


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME_CHARS or "\x00" in value:
        raise ValueError(f"{what} must be a non-empty string of at most {_MAX_NAME_CHARS} chars without NUL")
