"""Files are created private (issue 17 §4): every directory the stores create is 0700 and every database file,
with its -wal and -shm, 0600, whatever the process umask, so no other local user reads a tenant's faces, its
audit, the registry or the key store. Real stores on real files; the umask is the usual 022, under which
plain file creation gives 0644 and 0755."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from kms import Keyring
from kms.providers.local import LocalKeyProvider
from kms.records import RecordCipher
from tenancy.audit_log import OrgAudit, org_audit_path
from tenancy.personal import PersonKeys
from tenancy.registry import TenantRegistry, load_or_create_admin_token
from tenancy.store import TenantStore

MODEL, DIM = "arcface-r100", 8


@pytest.fixture
def usual_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes(root: Path) -> dict[str, str]:
    """{path relative to root ("." for root): octal mode} of everything under root."""
    return {p.relative_to(root).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in [root, *root.rglob("*")]}


def not_private(root: Path) -> dict[str, str]:
    return {p: m for p, m in modes(root).items() if m != ("0o700" if (root / p).is_dir() else "0o600")}


def test_every_store_creates_its_directories_and_files_private(tmp_path, usual_umask):
    data = tmp_path / "data"  # missing: the stores create it
    registry = TenantRegistry(data / "registry.db")
    tenant, _ = registry.create("acme", MODEL, DIM)
    tid = tenant.tenant_id
    load_or_create_admin_token(data, None)
    audit = OrgAudit(org_audit_path(data))
    audit.record("admin", "tenant.create", "ok", {"tenant_id": tid})
    keyring = Keyring(LocalKeyProvider(data / "keys" / "root.key"), data / "keys" / "keystore.db")
    keyring.create_tenant(tid)
    store = TenantStore.open(data / "tenants" / tid / "embeddings.db", tid, MODEL, DIM)
    keys = PersonKeys(lambda version, purpose: keyring.data_key(tid, purpose, version))
    person = store.create_person("ext-1", {"name": "A"}, keys=keys)
    store.add_faces(person.person_id, [np.ones(DIM, np.float32)], RecordCipher(os.urandom(32), 1), [0.9], [0.8])
    try:
        found = modes(data)
        # Open WAL connections: each database has its -wal and -shm beside it, and they are checked too.
        for db in ("registry.db", "org_audit.db", f"tenants/{tid}/embeddings.db", "keys/keystore.db"):
            assert {db, f"{db}-wal", f"{db}-shm"} <= set(found), sorted(found)
        assert {".", "tenants", f"tenants/{tid}", "keys", "admin_token", "keys/root.key"} <= set(found)
        assert not_private(data) == {}
    finally:
        for closable in (registry, audit, store, keyring):
            closable.close()


def test_reopening_tightens_a_world_readable_database(tmp_path, usual_umask):
    """A file left 0644 by an older version (registry.db was) is 0600 once opened again, side files too."""
    path = tmp_path / "registry.db"
    TenantRegistry(path).close()
    leftovers = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    for file in leftovers:
        file.touch()
        os.chmod(file, 0o644)
    registry = TenantRegistry(path)
    registry.create("acme", MODEL, DIM)
    assert {f.name: oct(stat.S_IMODE(f.stat().st_mode)) for f in leftovers} == {f.name: "0o600" for f in leftovers}
    registry.close()
