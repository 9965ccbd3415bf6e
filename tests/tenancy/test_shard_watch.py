"""tenancy.placement.ShardWatch in a stopping replica: when the event loop's executor is already shut down (Serve
stopping the replica, an app restart), the watch's look at Ray's actor table cannot run; the call it watches is
not an outage of the tenant's actors. A model migration caught by an app restart recorded that RuntimeError as
its failure ("cannot schedule new futures after shutdown") instead of resuming (test_model_migration flaked)."""

from __future__ import annotations

import asyncio

from tenancy.placement import ShardWatch


def test_a_watch_in_a_loop_whose_executor_is_shut_down_waits_for_the_call():
    async def scenario():
        await asyncio.get_running_loop().shutdown_default_executor()
        watch = ShardWatch(give_up_s=0.05, check_s=0.02)
        # No actor handle is needed: the table is never read once the executor is gone.
        return await watch.result("t1", asyncio.sleep(0.2, result="answered"), [], "activation")

    assert asyncio.run(scenario()) == "answered"
