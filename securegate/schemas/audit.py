"""Audit pages, chain verification, erasure receipts and their signing keys."""

from typing import Any

from pydantic import BaseModel, Field



class AuditEvent(BaseModel):
    seq: int
    at: float
    actor: str = Field(..., description="key:<api key id>, admin, or retention")
    action: str = Field(..., examples=["face.enrol"])
    outcome: str = Field(..., description="ok, or the error code")
    counts: dict[str, float]
    ids: dict[str, str] = Field(default_factory=dict, description="corrections: the person, face ids they touched")


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next_since: int = Field(..., description="pass as `since` for the next page")


class AuditVerification(BaseModel):
    """An audit chain checked against its hash links and its provider-MACed checkpoints (tenancy/chain.py)."""

    intact: bool
    first_bad_seq: int | None = Field(..., description="earliest entry that may have been tampered with")
    reason: str | None = Field(..., description="edited, deleted, reordered, truncated, rewritten or checkpoint_forged")
    detail: str
    entries: int
    checkpoints: int = Field(..., description="checkpoints whose MAC verified")
    last_checkpoint_seq: int
    unsealed_tail: int = Field(..., description="entries after the newest checkpoint: hash-linked, not yet MACed")
    anchored_seq: int | None = Field(None, description="where the copy of the chain's newest checkpoint kept outside "
                                     "its file says it reaches (entries cut below it show as truncated); None: no copy yet")
    anchored_in: str | None = Field(None, description="where that copy is kept: org_audit (a tenant chain's mirror) "
                                    "or key_store (the org chain's anchor)")


class OrgAuditEvent(BaseModel):
    seq: int
    at: float
    actor: str = Field(..., description="admin:<key name>, admin, or rotation")
    action: str = Field(..., examples=["tenant.erase"])
    outcome: str
    details: dict[str, Any] = Field(..., description="ids and counts (an erasure receipt: what was destroyed)")


class OrgAuditPage(BaseModel):
    events: list[OrgAuditEvent]
    next_since: int


class ReceiptSignature(BaseModel):
    key_id: str = Field(..., description="the signing key (a KMS key ARN, an HSM label, local:vN)")
    algorithm: str = Field(..., examples=["ECDSA_P256_SHA256"])
    value: str = Field(..., description="base64 of the DER ECDSA signature over the receipt's canonical JSON "
                       "(keys sorted, separators ',' and ':', UTF-8)")
    public_key_pem: str | None = Field(None, description="the key that checks it (also at GET /v1/erasure-receipts/keys)")


class ErasureReceipt(BaseModel):
    """What was destroyed when a tenant was erased, signed so that anyone holding the public key can check it."""

    receipt: dict[str, Any] = Field(..., description="type, tenant_id, deleted_at (ISO 8601), counts, key_ids")
    signature: ReceiptSignature
    org_audit_seq: int = Field(..., description="the org audit entry that holds it")


class SigningKeyView(BaseModel):
    key_id: str
    algorithm: str
    public_key_pem: str


class SigningKeys(BaseModel):
    keys: list[SigningKeyView] = Field(..., description="the current key first; older ones check older receipts")
