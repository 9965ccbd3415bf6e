"""Head anchors in the key store (issue 23 §5): the org audit's newest checkpoint, MACed by the key provider (local
file, AWS KMS on a real moto server, SoftHSM2), kept beside the keys, so cutting the audit file's newest entries
together with their checkpoints is found. Without the anchor the cut file verifies (the gap being closed)."""

from __future__ import annotations

import time

import apsw
import pytest

from kms import KeyManager
from kms.anchors import HeadAnchors
from tenancy import audit_log
from tenancy import chain
from tenancy.audit_log import OrgAudit

PROVIDERS = ("local_provider", "aws_provider", "pkcs11_provider")


def test_an_anchor_only_moves_forward_and_persists(tmp_path):
    path = tmp_path / "keys" / "keystore.db"
    anchors = HeadAnchors(path)
    assert anchors.get("org-audit:/data") is None
    assert anchors.advance("org-audit:/data", 5, b"five") is True
    assert anchors.advance("org-audit:/data", 4, b"four") is False  # an older checkpoint cannot lower it
    assert anchors.advance("org-audit:/data", 5, b"five again") is False
    assert anchors.advance("org-audit:/other", 1, b"one") is True  # names keep apart
    assert anchors.get("org-audit:/data") == (5, b"five")
    anchors.close()
    reopened = HeadAnchors(path)
    assert reopened.get("org-audit:/data") == (5, b"five") and reopened.get("org-audit:/other") == (1, b"one")
    for bad in (("", 1, b"x"), ("n", -1, b"x"), ("n", 1, b""), ("n", 1, b"x" * 5000)):
        with pytest.raises(ValueError):
            reopened.advance(*bad)
    reopened.close()


def _write_org_audit(path, manager: KeyManager, name: str, entries: int) -> OrgAudit:
    """A real org audit file, each entry checkpointed with the provider's MAC and anchored, as AuditTrail does."""
    audit = OrgAudit(path)
    for k in range(entries):
        audit.record("admin", "tenant.create", details={"tenant_id": f"t{k}"})
        head, at = audit.pending_checkpoint()
        message = chain.checkpoint_message(audit_log.ORG_CHAIN_ID, head.seq, head.entry_hash, at)
        checkpoint = chain.Checkpoint(head.seq, head.entry_hash, at,
                                      manager.mac(message, audit_log.ORG_PURPOSE).to_bytes())
        audit.store_checkpoint(checkpoint)
        assert manager.anchor(name, checkpoint.seq, checkpoint.to_bytes())
    return audit


def _verify(audit: OrgAudit, manager: KeyManager, anchored: chain.Checkpoint | None) -> chain.VerifyResult:
    entries, checkpoints = audit.read_chain()
    return chain.verify(audit_log.ORG_CHAIN_ID, entries, audit_log.with_outside(checkpoints, anchored),
                        lambda message, tag: manager.verify_mac(message, tag, audit_log.ORG_PURPOSE))


@pytest.mark.parametrize("provider_fixture", PROVIDERS)
def test_cutting_the_org_audit_with_its_checkpoints_is_found(provider_fixture, request, tmp_path):
    manager = KeyManager({}, str(tmp_path / "keys" / "keystore.db"), provider=request.getfixturevalue(provider_fixture))
    name = f"org-audit:{tmp_path / 'data'}"
    audit = _write_org_audit(tmp_path / "data" / "org_audit.db", manager, name, entries=6)
    seq, record = manager.anchored(name)
    anchored = chain.Checkpoint.from_bytes(record)
    assert seq == anchored.seq == 6
    assert _verify(audit, manager, anchored).intact

    # The newest two entries and every checkpoint naming them, deleted from the real file.
    conn = apsw.Connection(str(audit.path))
    with conn:
        conn.execute("DELETE FROM audit_chain WHERE seq > 4")
        conn.execute("DELETE FROM audit_checkpoints WHERE seq > 4")
    conn.close()
    alone = _verify(audit, manager, None)
    assert alone.intact and alone.entries == 4  # the file by itself cannot tell
    cut = _verify(audit, manager, anchored)
    assert (cut.intact, cut.reason, cut.first_bad_seq) == (False, chain.TRUNCATED, 5), cut

    # Appending again after the cut does not hide it: the chain disagrees with the anchor at its seq.
    for k in range(2):
        audit.record("admin", "tenant.create", details={"tenant_id": f"late{k}"})
    rewritten = _verify(audit, manager, anchored)
    assert (rewritten.intact, rewritten.reason) == (False, chain.REWRITTEN), rewritten
    # ...and the anchor refuses to move back to the shorter chain's head.
    head, at = audit.pending_checkpoint()
    assert manager.anchor(name, 5, chain.Checkpoint(5, head.entry_hash, at, b"tag").to_bytes()) is False
    assert manager.anchored(name)[0] == 6

    # An anchor whose MAC does not verify is a forgery, not evidence.
    forged = chain.Checkpoint(anchored.seq, anchored.head_hash, anchored.at + 1, anchored.tag)
    assert _verify(audit, manager, forged).reason == chain.CHECKPOINT_FORGED
    audit.close()
    manager.close()


def test_a_checkpoint_record_round_trips():
    checkpoint = chain.Checkpoint(42, bytes(range(32)), time.time(), b"SGM\x01tag-bytes")
    assert chain.Checkpoint.from_bytes(checkpoint.to_bytes()) == checkpoint
    with pytest.raises(ValueError):
        chain.Checkpoint.from_bytes(b"short")
