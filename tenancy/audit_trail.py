"""AuditTrail: the TenantService's audit chains as a service: reads, verification, the org audit's entries and
checkpoints, and the copies of each chain's newest checkpoint kept outside its own file (tenancy/audit_log.py says
why: truncation).

- A tenant chain is written by its primary shard actor; here it is only read, from its file (read-side, so
  neither reading nor verifying activates the tenant), and its newest checkpoint is mirrored into the org audit
  (`mirror_tenant`: the TenantService's housekeeping and eviction call it).
- The org chain is written here; each entry is checkpointed with the provider's MAC (purpose `org-audit`) and
  the checkpoint anchored in the KeyService's key store under `anchor_name` (kms/anchors.py), one name per data
  dir, so two services on two data dirs sharing one KeyService keep apart.
- Erasure receipts (issue 23 §6) are signed by the provider's asymmetric key (ECDSA P-256; kms `sign`), so a
  data subject or a regulator checks one with the published public key alone, with no key of ours. What is
  signed: the receipt's canonical JSON (keys sorted, separators "," and ":", UTF-8, no floats: the time is an
  ISO 8601 string), the receipt naming its own type (`securegate.erasure-receipt/v1`). The receipt and its
  signature are one org audit entry (`tenant.erase`), covered by the chain's MACs besides.
"""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path

import apsw

from securegate import errors
from tenancy import audit_log
from tenancy import chain, sqlite
from tenancy.actors import tenant_db_path
from tenancy.audit_log import OrgAudit, org_audit_path

log = logging.getLogger(__name__)

RECEIPT_TYPE = "securegate.erasure-receipt/v1"
ERASE_ACTION = "tenant.erase"


class AuditTrail:
    """`keys`: the KeyService handle (mac, verify_mac, anchor, anchored)."""

    def __init__(self, data_dir: str | Path, keys) -> None:
        self.data_dir = Path(data_dir)
        self.keys = keys
        self.org = OrgAudit(org_audit_path(self.data_dir))
        self.anchor_name = f"org-audit:{self.data_dir.resolve()}"
        self._mirrored: dict[str, int] = {}  # tenant id -> seq of its newest checkpoint mirrored (a cache)

    # ---- a tenant's chain (read-side) ----------------------------------------------------------------------
    def _read_tenant(self, tenant_id: str, read):
        path = tenant_db_path(self.data_dir, tenant_id)
        if not path.exists():
            return None
        conn = sqlite.connect(path)
        try:
            with conn:  # one snapshot
                return read(conn)
        except apsw.SQLError as exc:  # a file the tenant never opened since the audit moved in: no chain yet
            if "no such table" not in str(exc):
                raise
            return None
        finally:
            conn.close()

    def tenant_chain(self, tenant_id: str) -> tuple[list[chain.ChainEntry], list[chain.Checkpoint]]:
        return self._read_tenant(tenant_id, audit_log.read_chain) or ([], [])

    def tenant_events(self, tenant_id: str, since: int = 0, limit: int = 100) -> list[dict]:
        return self._read_tenant(tenant_id, lambda conn: audit_log.events(conn, since, limit)) or []

    async def verify_tenant(self, tenant_id: str) -> dict:
        """The tenant's chain checked against its own checkpoints and the newest one mirrored in the org audit."""
        entries, checkpoints = self.tenant_chain(tenant_id)
        mirrored = self.org.mirrored(tenant_id)
        return await self._verify(audit_log.tenant_chain_id(tenant_id), entries,
                                  audit_log.with_outside(checkpoints, mirrored), audit_log.TENANT_PURPOSE, tenant_id,
                                  mirrored, "org_audit")

    def mirror_tenant(self, tenant_id: str) -> bool:
        """Copy the tenant chain's newest checkpoint (read from its file) into the org audit, if not there yet.
        The org checkpoint that covers the copy is the caller's to make (`checkpoint_org`)."""
        newest = self._read_tenant(tenant_id, audit_log.last_checkpoint)
        if newest is None:
            return False
        if tenant_id not in self._mirrored:
            known = self.org.mirrored(tenant_id)
            self._mirrored[tenant_id] = known.seq if known else -1
        if newest.seq <= self._mirrored[tenant_id]:
            return False
        self.org.mirror(tenant_id, newest)
        self._mirrored[tenant_id] = newest.seq
        return True

    def forget_tenant(self, tenant_id: str) -> None:
        self._mirrored.pop(tenant_id, None)

    # ---- the org chain --------------------------------------------------------------------------------------
    def org_events(self, since: int = 0, limit: int = 100) -> list[dict]:
        return self.org.events(since, limit)

    async def verify_org(self) -> dict:
        """The org chain checked against its own checkpoints and its head anchored in the key store."""
        entries, checkpoints = self.org.read_chain()
        found = await self.keys.anchored.remote(self.anchor_name)
        anchored = chain.Checkpoint.from_bytes(found[1]) if found else None
        return await self._verify(audit_log.ORG_CHAIN_ID, entries, audit_log.with_outside(checkpoints, anchored),
                                  audit_log.ORG_PURPOSE, None, anchored, "key_store")

    async def record(self, principal: str, action: str, outcome: str = "ok", details: dict | None = None) -> int:
        """Append to the org audit, then checkpoint and anchor its head."""
        seq = self.org.record(principal, action, outcome, details)
        await self.checkpoint_org()
        return seq

    async def checkpoint_org(self, force: bool = False) -> None:
        pending = self.org.pending_checkpoint(force)
        if pending is None:
            return
        head, at = pending
        seq, head_hash = (head.seq, head.entry_hash) if head else (0, chain.GENESIS_HASH)
        message = chain.checkpoint_message(audit_log.ORG_CHAIN_ID, seq, head_hash, at)
        try:
            tag = await self.keys.mac.remote(message, audit_log.ORG_PURPOSE, None)
            checkpoint = chain.Checkpoint(seq, head_hash, at, tag)
            self.org.store_checkpoint(checkpoint)
            await self.keys.anchor.remote(self.anchor_name, seq, checkpoint.to_bytes())
        except Exception:  # the entry is chained; the next checkpoint covers it once the provider answers
            log.exception("org audit checkpoint failed")

    # ---- erasure receipts -------------------------------------------------------------------------------------
    async def sign_erasure(self, tenant_id: str, destroyed: dict, key_ids: list[str]) -> tuple[dict, dict | None]:
        """The receipt of an erasure about to be done, and its signature: made before anything is destroyed, so a
        key provider that cannot answer now (503) stops the erasure with nothing done. A provider without a
        signing key (not configured) leaves the receipt unsigned, logged, rather than the tenant undeletable."""
        receipt = {"type": RECEIPT_TYPE, "tenant_id": tenant_id,
                   "deleted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **destroyed, "key_ids": key_ids}
        try:
            signed = await self.keys.sign.remote(chain.canonical_body(receipt))
        except Exception as exc:
            if getattr(errors.root_cause(exc), "status", None) == 503:
                raise
            log.error("the erasure receipt of tenant %s is not signed: %s", tenant_id, errors.root_cause(exc))
            return receipt, None
        return receipt, {"key_id": signed["key_id"], "algorithm": signed["algorithm"],
                         "value": base64.b64encode(signed["value"]).decode()}

    async def record_erasure(self, principal: str, receipt: dict, signature: dict | None) -> int:
        """Keep the (signed) receipt in the org audit, once the erasure is done."""
        return await self.record(principal, ERASE_ACTION, details={**receipt, "signature": signature})

    async def erasure_receipt(self, tenant_id: str) -> dict | None:
        """The signed receipt of the tenant's erasure with the public key that checks it, or None."""
        entry = self.org.latest(ERASE_ACTION, tenant_id)
        if entry is None or not entry["details"].get("signature"):  # erased before receipts were signed, or unsigned
            return None
        receipt = dict(entry["details"])
        signature = receipt.pop("signature")
        keys = {k["key_id"]: k for k in await self.keys.signing_keys.remote()}
        public = keys.get(signature["key_id"])
        return {"receipt": receipt, "signature": {**signature, "public_key_pem": public["public_key_pem"] if public else None},
                "org_audit_seq": entry["seq"]}

    async def signing_keys(self) -> list[dict]:
        return await self.keys.signing_keys.remote()

    # ---- verification ----------------------------------------------------------------------------------------
    async def _verify(self, chain_id: str, entries, checkpoints, purpose: str, tenant_id: str | None,
                      outside: chain.Checkpoint | None, where: str) -> dict:
        # The provider checks each checkpoint's tag (awaited here: chain.verify's callback is synchronous).
        verdicts = {}
        for checkpoint in checkpoints:
            message = chain.checkpoint_message(chain_id, checkpoint.seq, checkpoint.head_hash, checkpoint.at)
            verdicts[(message, bytes(checkpoint.tag))] = await self.keys.verify_mac.remote(
                message, bytes(checkpoint.tag), purpose, tenant_id)
        result = chain.verify(chain_id, entries, checkpoints, lambda message, tag: verdicts[(message, bytes(tag))])
        return {**result.to_dict(), "anchored_seq": outside.seq if outside else None,
                "anchored_in": where if outside else None}
