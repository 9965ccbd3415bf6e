"""Tenant registry: who the tenants are, their settings, their model binding and their API keys.

One small SQLite file (`{data_dir}/registry.db`). API keys are shown once and stored only as a SHA-256
hash of their secret part (the secret is 256 random bits, so a plain hash is enough: there is nothing to
brute-force); lookups go by the public key id and compare hashes in constant time. Admin keys
(tenancy/admin_keys.py) are stored the same way, by name, with their scopes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import uuid
from pathlib import Path

from tenancy import sqlite
from tenancy.admin_keys import (ADMIN_KEY_PREFIX, BOOTSTRAP, SCOPES, AdminKey, AdminKeyConflict, AdminKeyNotFound,
                                NotAnAdminKey, check_name, check_scopes, parse_admin_key)
from tenancy.tenant import KEY_PREFIX, InvalidApiKey, Tenant, TenantNotFound, TenantSettings, parse_api_key


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class TenantRegistry:
    def __init__(self, path: str | Path, *, vfs: str | None = None) -> None:
        self.path = Path(path)
        # Every statement runs under the lock (an apsw connection is not for two threads at once); writes
        # take the write lock at BEGIN, so a read-then-write transaction never fails to upgrade.
        self._lock = threading.RLock()
        self._db = sqlite.connect(self.path, vfs=vfs)
        self._db.transaction_mode = "IMMEDIATE"
        self._db.execute(
            """
            CREATE TABLE IF NOT EXISTS tenants (
                tenant_id TEXT PRIMARY KEY, name TEXT NOT NULL, model TEXT NOT NULL, dim INTEGER NOT NULL,
                settings TEXT NOT NULL, created_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS api_keys (
                key_id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(tenant_id) ON DELETE CASCADE,
                secret_hash BLOB NOT NULL, created_at REAL NOT NULL, revoked_at REAL);
            CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys(tenant_id);
            CREATE TABLE IF NOT EXISTS admin_keys (
                name TEXT PRIMARY KEY, scopes TEXT NOT NULL, secret_hash BLOB NOT NULL,
                created_at REAL NOT NULL, revoked_at REAL);
            """
        )

    # ---- tenants ----------------------------------------------------------------------------------------
    def create(self, name: str, model: str, dim: int, settings: TenantSettings | None = None) -> tuple[Tenant, str]:
        """A new tenant and its first API key (returned once, never stored)."""
        tenant = Tenant(uuid.uuid4().hex, name, model, dim, settings or TenantSettings(), time.time())
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO tenants VALUES (?,?,?,?,?,?)",
                (tenant.tenant_id, name, model, dim, tenant.settings.model_dump_json(), tenant.created_at),
            )
            api_key = self._issue_key(tenant.tenant_id)
        return tenant, api_key

    def get(self, tenant_id: str) -> Tenant:
        with self._lock:
            row = self._db.execute("SELECT * FROM tenants WHERE tenant_id=?", (tenant_id,)).fetchone()
        if row is None:
            raise TenantNotFound(tenant_id)
        return self._tenant(row)

    def list(self) -> list[Tenant]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM tenants ORDER BY created_at, tenant_id").fetchall()
        return [self._tenant(r) for r in rows]

    def update_settings(self, tenant_id: str, patch: dict) -> Tenant:
        with self._lock:
            tenant = self.get(tenant_id)
            merged = tenant.settings.model_dump()
            for key, value in patch.items():
                if key == "quality" and isinstance(value, dict):
                    merged["quality"].update(value)
                else:
                    merged[key] = value
            settings = TenantSettings.model_validate(merged)
            self._db.execute("UPDATE tenants SET settings=? WHERE tenant_id=?", (settings.model_dump_json(), tenant_id))
        return self.get(tenant_id)

    def set_model(self, tenant_id: str, model: str, dim: int) -> Tenant:
        """The tenant's model binding: changed only by a model migration's switch (tenancy/migration.py)."""
        with self._lock, self._db:
            self.get(tenant_id)
            self._db.execute("UPDATE tenants SET model=?, dim=? WHERE tenant_id=?", (model, dim, tenant_id))
        return self.get(tenant_id)

    def delete(self, tenant_id: str) -> None:
        with self._lock:
            self.get(tenant_id)
            self._db.execute("DELETE FROM tenants WHERE tenant_id=?", (tenant_id,))
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---- API keys -----------------------------------------------------------------------------------------
    def rotate_key(self, tenant_id: str) -> str:
        """A new key; every older key of the tenant is revoked in the same transaction."""
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM tenants WHERE tenant_id=?", (tenant_id,)).fetchone() is None:
                raise TenantNotFound(tenant_id)
            self._db.execute("UPDATE api_keys SET revoked_at=? WHERE tenant_id=? AND revoked_at IS NULL", (time.time(), tenant_id))
            return self._issue_key(tenant_id)

    def authenticate(self, api_key: str) -> Tenant:
        key_id, secret = parse_api_key(api_key)
        with self._lock:
            row = self._db.execute(
                "SELECT tenant_id, secret_hash FROM api_keys WHERE key_id=? AND revoked_at IS NULL", (key_id,)
            ).fetchone()
        # Compare against a dummy hash when the id is unknown so timing does not reveal which ids exist.
        expected = row[1] if row else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None:
            raise InvalidApiKey("unknown or revoked API key")
        return self.get(row[0])

    def _issue_key(self, tenant_id: str) -> str:
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32).replace("_", "-")
        self._db.execute("INSERT INTO api_keys VALUES (?,?,?,?,NULL)", (key_id, tenant_id, _hash(secret), time.time()))
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    # ---- admin keys ---------------------------------------------------------------------------------------
    # No cache anywhere: every check reads the row, so a revocation holds at once on every replica.
    def set_bootstrap_admin_key(self, token: str) -> None:
        """The first-start token is the admin key `bootstrap` (every scope). A revoked bootstrap stays
        revoked, whatever token a restart brings; a live one follows the token (the env value may change)."""
        if not token:
            raise ValueError("the admin token is empty")
        if parse_admin_key(token) is not None:
            raise ValueError(f"the admin token must not have the format of a named admin key ({ADMIN_KEY_PREFIX}_...)")
        with self._lock, self._db:
            self._db.execute("INSERT OR IGNORE INTO admin_keys VALUES (?,?,?,?,NULL)",
                             (BOOTSTRAP, json.dumps(SCOPES), _hash(token), time.time()))
            self._db.execute("UPDATE admin_keys SET secret_hash=?, scopes=? WHERE name=? AND revoked_at IS NULL",
                             (_hash(token), json.dumps(SCOPES), BOOTSTRAP))

    def create_admin_key(self, name: str, scopes) -> tuple[AdminKey, str]:
        """A new named admin key and its secret (returned once, stored as a hash)."""
        name, scopes = check_name(name), check_scopes(scopes)
        secret = secrets.token_urlsafe(32).replace("_", "-")
        with self._lock, self._db:
            if self._db.execute("SELECT 1 FROM admin_keys WHERE name=?", (name,)).fetchone() is not None:
                raise AdminKeyConflict(f"an admin key named {name!r} exists or existed; names are never reused")
            created_at = time.time()
            self._db.execute("INSERT INTO admin_keys VALUES (?,?,?,?,NULL)", (name, json.dumps(scopes), _hash(secret), created_at))
        return AdminKey(name, scopes, created_at), f"{ADMIN_KEY_PREFIX}_{name}_{secret}"

    def admin_keys(self) -> list[AdminKey]:
        """Every admin key, revoked ones included (their names stay taken), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT name, scopes, created_at, revoked_at FROM admin_keys ORDER BY created_at, name").fetchall()
        return [AdminKey(r[0], tuple(json.loads(r[1])), r[2], r[3]) for r in rows]

    def revoke_admin_key(self, name: str) -> AdminKey:
        """Revoked at once (idempotent). Refused when it would leave no live key holding `admin-keys:write`:
        nobody could make a key again."""
        with self._lock, self._db:
            row = self._db.execute("SELECT name, scopes, created_at, revoked_at FROM admin_keys WHERE name=?", (name,)).fetchone()
            if row is None:
                raise AdminKeyNotFound(f"no admin key named {name!r}")
            if row[3] is not None:
                return AdminKey(row[0], tuple(json.loads(row[1])), row[2], row[3])
            managers = [n for n, s in self._db.execute("SELECT name, scopes FROM admin_keys WHERE revoked_at IS NULL")
                        if "admin-keys:write" in json.loads(s)]
            if managers == [name]:
                raise AdminKeyConflict(f"{name!r} is the last live admin key holding 'admin-keys:write'; "
                                       "create another before revoking it")
            revoked_at = time.time()
            self._db.execute("UPDATE admin_keys SET revoked_at=? WHERE name=?", (revoked_at, name))
        return AdminKey(row[0], tuple(json.loads(row[1])), row[2], revoked_at)

    def authenticate_admin(self, token: str) -> AdminKey:
        """The live admin key `token` is, or NotAnAdminKey (unknown, malformed and revoked alike)."""
        name, secret = parse_admin_key(token) or (BOOTSTRAP, token)
        with self._lock:
            row = self._db.execute("SELECT name, scopes, created_at, secret_hash FROM admin_keys "
                                   "WHERE name=? AND revoked_at IS NULL", (name,)).fetchone()
        # Compare against a dummy hash when the name is unknown so timing does not reveal which names exist.
        expected = row[3] if row else _hash("")
        if not hmac.compare_digest(expected, _hash(secret)) or row is None:
            raise NotAnAdminKey("not a live admin key")
        return AdminKey(row[0], tuple(json.loads(row[1])), row[2])

    @staticmethod
    def _tenant(row) -> Tenant:
        return Tenant(row[0], row[1], row[2], row[3], TenantSettings.model_validate(json.loads(row[4])), row[5])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def load_or_create_admin_token(data_dir: str | Path, env_value: str | None) -> tuple[str, bool]:
    """(token, newly_created). The env value wins; else a token generated once into data_dir (mode 0600)."""
    if env_value:
        return env_value, False
    path = sqlite.private_dir(data_dir) / "admin_token"
    if path.exists():
        return path.read_text().strip(), False
    # Written whole under a private name, then linked into place: replicas starting together never read a
    # half-written token (one link wins; the others read the winner's).
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):  # argparse would read `--admin-token -x...` as another option: never hand one out
        token = secrets.token_urlsafe(32)
    draft = path.with_name(f".admin_token.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(draft, path)
    except FileExistsError:
        return path.read_text().strip(), False
    finally:
        draft.unlink(missing_ok=True)
    return token, True

