"""Writes the SQL of a tenant file (schema v6) and of a camera file (events.db) as the code of 820bf94 wrote them,
the last revision that stored sealed values as separate (nonce, ciphertext, key_version) parts, with what they
hold in clear beside them as JSON. tests/tenancy/test_sealed_form.py rebuilds both files from the SQL and reads
every record back through the current code (the migration to one sealed token per value).

The code of 820bf94 is taken from git (`git archive`, never checked out), so this script runs from any revision:

    .venv/bin/python tests/make_sealed_files.py tests/data

Every sealed value is under fixed test keys (`fixture_key`); the values are synthetic. Random ids (uuid4) and
nonces are what they are: the JSON names the ids.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REVISION = "820bf94"
TENANT = "tenant-sealed"
MODEL, DIM = "fixture/8", 8
NEXT_MODEL, NEXT_DIM = "fixture-next/4", 4
DAY = 1_699_920_000.0  # 2023-11-14 00:00 UTC
REPO = Path(__file__).resolve().parents[1]


def fixture_key(version: int, purpose: str) -> bytes:
    """The data key of (content-key version, purpose) every fixture value is sealed under."""
    return hashlib.sha256(f"securegate-fixture/{purpose}/{version}".encode()).digest()


def audit_mac(message: bytes) -> bytes:
    return hmac.new(fixture_key(0, "audit-checkpoint"), message, hashlib.sha256).digest()


def vector(seed: int, dim: int = DIM) -> list[float]:
    import numpy as np

    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def write_tenant_file(path: Path) -> dict:
    """A v6 tenant file: three persons (two sealed, under versions 1 and 2; one legacy clear row of key version 0),
    faces under versions 1 and 2, a kept crop, a shadow vector per face, a rejection, audit entries and a MACed
    checkpoint. Returns what it holds in clear."""
    import numpy as np

    from kms.keyring import DataKey
    from tenancy.audit_log import AuditRecord
    from tenancy.chain import CheckpointPolicy
    from tenancy.personal import PersonKeys
    from tenancy.store import TenantStore

    def data_key(version, purpose):
        version = 2 if version is None else version
        return DataKey(TENANT, purpose, version, fixture_key(version, purpose))

    def cipher(version):
        return data_key(version, "embeddings").cipher()

    store = TenantStore.open(path, TENANT, MODEL, DIM)
    keys_v1 = PersonKeys(lambda version, purpose: data_key(1 if version is None else version, purpose))
    keys_v2 = PersonKeys(data_key)
    who = AuditRecord("key:fixture", "enrol")
    anna = store.create_person("anna", {"name": "Anna", "team": "A"}, keys=keys_v1, audit=who).person_id
    ben = store.create_person(None, {"name": "Ben"}, keys=keys_v2, audit=who).person_id
    # A person written before schema v3, still in clear awaiting sealing (key version 0).
    store.file.conn.execute("INSERT INTO persons (person_id, key_version, blind_index, external_id, metadata, created_at)"
                            " VALUES (?, 0, NULL, ?, ?, ?)", ("c" * 32, "carl", json.dumps({"name": "Carl"}), DAY))
    faces = {}
    for seed, (person, version) in enumerate([(anna, 1), (anna, 2), (ben, 2), ("c" * 32, 1)]):
        crop = np.full((4, 3, 3), seed, np.uint8) if seed == 0 else None
        record = store.add_face(person, np.asarray(vector(seed), np.float32), cipher(version), 0.9, 0.8, audit=who, crop=crop)
        faces[record.face_id] = {"person_id": person, "key_version": version, "vector": vector(seed),
                                 "crop": None if crop is None else crop.tolist()}
    store.add_shadow(NEXT_MODEL, NEXT_DIM, list(faces), np.asarray([vector(100 + i, NEXT_DIM) for i in range(len(faces))]),
                     cipher(2))
    shadow = {face_id: vector(100 + i, NEXT_DIM) for i, face_id in enumerate(faces)}
    [rejection] = store.add_rejections(ben, [np.asarray(vector(50), np.float32)], cipher(1), "image", audit=who)
    store.record_audit(AuditRecord("key:fixture", "search", "ok", {"faces": 1}))
    store.checkpoint_audit(audit_mac, CheckpointPolicy(every_entries=1, every_s=3600), force=True)
    store.close()
    return {"tenant_id": TENANT, "model": MODEL, "dim": DIM, "next_model": NEXT_MODEL, "next_dim": NEXT_DIM,
            "persons": {anna: {"external_id": "anna", "metadata": {"name": "Anna", "team": "A"}, "key_version": 1},
                        ben: {"external_id": None, "metadata": {"name": "Ben"}, "key_version": 2},
                        "c" * 32: {"external_id": "carl", "metadata": {"name": "Carl"}, "key_version": 0}},
            "faces": faces, "shadow": shadow,
            "rejections": {rejection: {"person_id": ben, "key_version": 1, "vector": vector(50)}}}


def write_camera_file(path: Path) -> dict:
    """An events.db: a camera, events of a person and of an unknown, an unknown's vectors, a webhook with a
    delivery; sealed under versions 1 and 2. Returns what it holds in clear."""
    import numpy as np

    from kms.records import RecordCipher
    from streams.event_index import EventKeys
    from streams.store import StreamStore

    keys = EventKeys(tenant_id=TENANT)
    for version in (1, 2):
        keys.add(version, RecordCipher(fixture_key(version, "events"), version), fixture_key(version, "events-index"),
                 current=version == 1)
    store = StreamStore(path, TENANT)
    stream = store.add_stream(keys(1), "front door", "rtsp://user:pw@camera/1", {"fps": 5.0})
    events = {}
    for hour, payload in enumerate([{"person_id": "a" * 32, "external_id": "anna", "tracks": 1},
                                    {"unknown_id": "unk_00000000000000c1", "tracks": 2}]):
        event = store.add_event(keys, "person_seen" if hour == 0 else "unknown_seen", stream, DAY + hour * 3600,
                                DAY + hour * 3600 + 30, payload)
        events[event["seq"]] = payload
    vectors = np.asarray([vector(7), vector(8)], np.float32)
    store.put_unknown(keys(2), "unk_00000000000000c1", vectors, DAY, DAY + 3600, MODEL)
    webhook = store.add_webhook(keys(2), "https://hooks.example/x", "whsec_dGVzdA==", ["person_seen"], 3)
    store.add_delivery(webhook, next(iter(events)))
    store.close()
    return {"tenant_id": TENANT, "stream": {"stream_id": stream, "name": "front door", "url": "rtsp://user:pw@camera/1",
                                            "key_version": 1},
            "events": {str(seq): payload for seq, payload in events.items()},
            "unknown": {"unknown_id": "unk_00000000000000c1", "model": MODEL, "vectors": vectors.tolist(), "key_version": 2},
            "webhook": {"webhook_id": webhook, "url": "https://hooks.example/x", "secret": "whsec_dGVzdA==", "key_version": 2}}


def dump(db: Path, sql_path: Path) -> None:
    """The file's schema and rows (blobs as hex), and its user_version (the schema version; iterdump omits it)."""
    conn = sqlite3.connect(db)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    sql_path.write_text("\n".join(conn.iterdump()) + f"\nPRAGMA user_version={version};\n")
    conn.close()


def generate(out_dir: Path) -> None:
    """Run with the code of REVISION on sys.path (see main)."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, write in (("tenant", write_tenant_file), ("events", write_camera_file)):
            db = Path(tmp) / f"{name}.db"
            clear = write(db)
            dump(db, out_dir / f"{name}-{REVISION}.sql")
            (out_dir / f"{name}-{REVISION}.json").write_text(json.dumps(clear, indent=1, sort_keys=True) + "\n")


def main(out_dir: Path) -> None:
    """Extract REVISION's tree into a temporary directory and run `generate` in a child with it first on sys.path."""
    with tempfile.TemporaryDirectory() as code:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", REVISION], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(code, filter="data")
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {code!r}); sys.path.insert(1, {str(REPO / 'tests')!r});"
                        f" import make_sealed_files as m; m.generate(__import__('pathlib').Path({str(out_dir.resolve())!r}))"],
                       check=True, cwd=code)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
