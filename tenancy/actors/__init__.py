"""One Ray actor per active tenant shard (TenantShardActor wrapping TenantShard): the tenant's store on disk and
its decrypted FaceIndex in memory.

Activation (on first use, and again after a crash) decrypts the tenant's faces into memory and builds the index; the
data keys it used are dropped right after. Writes go to the file first (durable when they return), then
to memory, so a crash between the two heals at the next activation. The actor is sync: Ray runs its
methods one at a time, which is what keeps the file and the index in step without locks.

Sharded tenants (setting `shards` = N > 1): N actors, `tenant-shard:<id>` (shard 0, the primary) and
`tenant-shard:<id>#k`. A face lives in shard `shard_of(face_id, N)`. The primary is the only writer of the
tenant's file (persons, faces, deletes, re-encryption, retention); after each commit it forwards the index
change (add vector / remove ids) to the owning shard and waits for it, so a write is searchable everywhere
when it is acknowledged, and forwards from the one primary reach a shard in order. Each shard activates by
decrypting only its own rows. Forwards are idempotent (adds skip ids already indexed, removes ignore unknown
ids, and a shard that is not active ignores them: its activation reads the committed file), so a shard that
crashes and restarts heals from the file. If the primary itself crashes between a commit and a forward, its
re-activation reconciles every shard against the file (face ids only, nothing decrypted unless they differ).
The TenantService scatters searches to all shards and merges (`tenancy.index.merge_search`).

The rooms: `shard` (the `TenantShard` facade Ray calls, and `TenantShardActor`) hands itself and what each needs
to `activation` (activation, the primary's store, reconciliation), `forwarding` (the primary's forwards, a
shard's side of them), `auditing` (entries and checkpoints), `persons`, `faces` (enrolment, import, expiry),
`corrections` (rejections, merge, move), `local_reads` (this shard's part of a read) and `model_steps` (rotation
and migration batches). `names` (actor names, the file's path), `keys` (data keys, ciphers, the audit MAC) and
`runtime` (Ray context, blocking handles) serve them all. Callers import from here.
"""

from tenancy.actors.keys import FaceKeys, KeyServiceAuditMac, KeyServiceDataKeys, KeySource
from tenancy.actors.names import NAMESPACE, NotPrimary, actor_name, tenant_db_path
from tenancy.actors.runtime import blocking_handle, placement
from tenancy.actors.shard import TenantShard, TenantShardActor

__all__ = [
    "NAMESPACE", "FaceKeys", "KeyServiceAuditMac", "KeyServiceDataKeys", "KeySource", "NotPrimary", "TenantShard",
    "TenantShardActor", "actor_name", "blocking_handle", "placement", "tenant_db_path",
]
