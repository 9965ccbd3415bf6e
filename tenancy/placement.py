"""Where a tenant's shard actors run: the scheduling each shard actor is created with, where each one is now, and
how long a caller waits for one that has no node to run on.

Spread. The shards of a sharded tenant (shards > 1) are created with Ray's SPREAD scheduling strategy on top of
the configured actor options (resources such as `securegate_index`, GPUs, CPUs: configs/*.yaml): each goes to
another node that offers those resources while there is one, so a tenant's memory and scan time divide over
its index nodes and one node's loss takes only its shards. When a node dies, Ray restarts its actors
(max_restarts=-1) wherever the resources fit, even beside a sibling shard: availability before spread. Why
SPREAD and not a placement group per tenant: docs/placement.md (measured). An unsharded tenant's actor keeps
Ray's default policy, and a `scheduling_strategy` written in the config wins over both.

Where. Ray's GCS actor table says each actor's state (ALIVE, RESTARTING, PENDING_CREATION, DEAD), node and
process, without calling the actor (which may be busy or gone) and without the dashboard (Ray's state API
needs it; index-node clusters may run without one). It is `ray._private.state`, the one private Ray API used
here, for that reason; a failure to read it reports the state `UNKNOWN`, never an error.

Waiting. A call to an actor that Ray is restarting waits until it runs again, and with no node that has room
(no free `securegate_index` slot or CPUs left) that is forever. `ShardWatch` bounds it: a call still running
after `check_s` looks at its actors' states, and once one of them has been RESTARTING for `give_up_s` the caller
gets `ShardsUnplaced` (HTTP 503 `unavailable`) and the call, if it never started, is cancelled (Ray drops a
queued actor task it is told to cancel), so a refused write is not done later behind the client's back. Only
RESTARTING counts: Ray's table does not tell an actor waiting for room from one whose process is starting (both
PENDING_CREATION, and a restarting actor keeps its old pid), and a first creation is bounded by the activation
timeout already (tenancy/service.py). A call whose actors are ALIVE is never cut short: activation of a large
tenant legitimately takes seconds. The TenantSupervisor watches the primary it calls (`result`); the primary, gathering the
other shards' parts of a read, watches them (`gather`), and forwards a write past one being restarted
(`alive_or_gone`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import ray

from securegate import errors

log = logging.getLogger(__name__)

ALIVE = "ALIVE"
RESTARTING = "RESTARTING"  # its process is gone (crash, node lost) and Ray has not started it again yet
UNKNOWN = "UNKNOWN"
INACTIVE = "INACTIVE"  # no actor under the shard's name: the tenant is not active (it activates on first use)


class ShardsUnplaced(RuntimeError):
    """A tenant's shard actor has had no running process for longer than the wait allows (its node was lost and
    no other node has room for it yet). The client may retry: it runs again once a node has room."""

    api_error = errors.ServiceUnavailable


def shard_options(actor_options: dict[str, Any], shards: int) -> dict[str, Any]:
    """The Ray actor options of one shard of a tenant with `shards` shards: the configured options, with SPREAD
    scheduling when the tenant is sharded and the config names no strategy of its own."""
    options = dict(actor_options)
    if shards > 1:
        options.setdefault("scheduling_strategy", "SPREAD")
    return options


def actor_state(handle) -> dict[str, Any]:
    """{state, node_id, node_ip, pid, restarts} of one actor, from the GCS actor table (see the module doc). The
    node and process are the ones it runs on while ALIVE; otherwise None."""
    try:
        from ray._private import state as gcs_state

        info = gcs_state.actors(actor_id=handle._actor_id.hex())
    except Exception as exc:
        log.warning("actor table unreadable: %s", exc)
        return {"state": UNKNOWN, "node_id": None, "node_ip": None, "pid": None, "restarts": None}
    state = info.get("State", UNKNOWN)
    alive = state == ALIVE
    address = info.get("Address") or {}
    return {"state": state, "node_id": address.get("NodeID") if alive else None,
            "node_ip": address.get("IPAddress") if alive else None, "pid": info.get("Pid") if alive else None,
            "restarts": info.get("NumRestarts")}


def shard_report(names: Sequence[str], namespace: str) -> list[dict[str, Any]]:
    """Per shard (its actor's name, in shard order): `shard` and actor_state, or INACTIVE when no actor has the name."""
    report = []
    for k, name in enumerate(names):
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            report.append({"shard": k, "state": INACTIVE, "node_id": None, "node_ip": None, "pid": None, "restarts": None})
            continue
        report.append({"shard": k, **actor_state(handle)})
    return report


def restarting(handles: Sequence) -> list[int]:
    """Indexes of the actors among `handles` that Ray is restarting now (an unreadable table says no: the caller
    then keeps waiting, as it did before this check existed)."""
    return [k for k, handle in enumerate(handles) if actor_state(handle)["state"] == RESTARTING]


class _Outage:
    """How long some watched actor has been RESTARTING, without a check in between that found none."""

    def __init__(self, give_up_s: float) -> None:
        self.give_up_s, self.since = give_up_s, None

    def too_long(self, down: Sequence[int]) -> bool:
        """Record one check (`down`: the actors found RESTARTING); True once the outage has lasted `give_up_s`."""
        if not down:
            self.since = None
            return False
        if self.since is None:
            self.since = time.monotonic()
        return self.seconds() >= self.give_up_s

    def seconds(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since


class ShardWatch:
    """Bounds the wait for a tenant's actors that have no process (module doc)."""

    def __init__(self, give_up_s: float = 20.0, check_s: float = 1.0) -> None:
        self.give_up_s, self.check_s = give_up_s, check_s

    async def result(self, tenant_id: str, work: Awaitable, handles: Sequence, what: str,
                     cancel: Sequence[ray.ObjectRef] = ()) -> Any:
        """Await `work` (calls on `handles`, a tenant's shard actors in shard order). Raises ShardsUnplaced once one
        of them has been RESTARTING for `give_up_s`, cancelling the actor tasks `cancel` first."""
        task = asyncio.ensure_future(work)
        outage = _Outage(self.give_up_s)
        while True:
            done, _ = await asyncio.wait({task}, timeout=self.check_s)
            if done:
                return task.result()
            try:
                down = await asyncio.to_thread(restarting, handles)
            except RuntimeError:
                # The loop's executor is shut down: this replica is stopping and the call is cancelled with it. Not
                # an outage of the tenant's actors (a model migration recorded it as its failure and stopped).
                down = []
            if not outage.too_long(down):
                continue
            for ref in cancel:
                ray.cancel(ref)
            task.cancel()
            log.warning("tenant %s: %s refused: shard(s) %s restarting for %.0f s (no node with room for them yet)",
                        tenant_id, what, down, outage.seconds())
            raise ShardsUnplaced(f"tenant {tenant_id}: shard(s) {down} are waiting for a node with room after a node "
                                 f"loss; {what} not done, retry")

    def gather(self, refs: Sequence[ray.ObjectRef], handles: Sequence, shards: Sequence[int], what: str) -> list:
        """Inside an actor (the primary gathering the other shards' parts of a read): every result of `refs`, calls
        on `handles` (shards `shards`). Raises ShardsUnplaced, cancelling the calls still queued, once one of them
        has been RESTARTING for `give_up_s`: the primary's thread does not wait for a node with room."""
        if not refs:  # an unsharded tenant's read: nothing to ask Ray for
            return []
        outage = _Outage(self.give_up_s)
        while True:
            _, pending = ray.wait(list(refs), num_returns=len(refs), timeout=self.check_s)
            if not pending:
                return ray.get(list(refs))
            down = [shards[k] for k in restarting(handles)]
            if not outage.too_long(down):
                continue
            for ref in pending:
                ray.cancel(ref)
            raise ShardsUnplaced(f"shard(s) {down} are waiting for a node with room after a node loss; {what} not "
                                 f"done, retry")

    def alive_or_gone(self, ref: ray.ObjectRef, handle) -> bool:
        """Inside an actor (the primary forwarding to a shard): wait for `ref`, a call on `handle`; False, leaving the
        call queued, as soon as Ray is restarting that actor (it reloads from the file when it runs again, and the
        queued call is idempotent)."""
        while True:
            ready, _ = ray.wait([ref], timeout=self.check_s)
            if ready:
                return True
            if actor_state(handle)["state"] == RESTARTING:
                return False
