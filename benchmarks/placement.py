"""Shard placement over index nodes: Ray's default policy vs SPREAD vs a placement group per sharded tenant.

    .venv/bin/python benchmarks/placement.py                  # 4 tenants x 3 shards on 3 index nodes (~3-5 min)
    .venv/bin/python benchmarks/placement.py --tenants 2      # quicker

Starts a cluster of its own (`ray start` raylets on this host with their own temp dirs and free ports, logical
resources, as tests/test_multinode.py does): a head without index capacity and --nodes index nodes, each
`{"securegate_index": 100}` and 4 logical CPUs. For each strategy it creates the shard actors of --tenants
tenants with --shards shards each, as TenantService does (the real TenantShardActor class with the index
actor options of configs/cluster.yaml; the actors are not activated: placement is what is measured), then
SIGKILLs every process of one index node (by PID) and waits until every shard runs again.

  default    the options as configured, no strategy (what SecureGate did before: Ray's hybrid policy)
  spread     tenancy.placement.shard_options: SPREAD on sharded tenants (what SecureGate ships)
  pg_spread  one placement group per tenant, a bundle per shard, strategy SPREAD (soft), actor k in bundle k
  pg_strict  the same with STRICT_SPREAD (distinct nodes or nothing)

Per strategy: seconds to create and reach every shard, tenants whose shards all sit on distinct nodes, actors
per node; after the node loss, seconds until every shard answers again (or that it did not within
--restart-deadline), and the most shards of one tenant on one node. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Ray reads its auth mode when it is imported (the test helpers below import it): this driver joins a token cluster.
os.environ["RAY_AUTH_MODE"] = "token"

from tests.processes import kill_pids, process_tree, stop_cluster  # noqa: E402
from tests.test_multinode import FAST_HEALTH_CHECKS, node_args, ray_start  # noqa: E402
from tests.conftest import free_port  # noqa: E402

STRATEGIES = ("default", "spread", "pg_spread", "pg_strict")
INDEX_RESOURCE = "securegate_index"


def no_key(*_args, **_kwargs):
    raise RuntimeError("placement benchmark: actors are never activated")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--restart-deadline", type=float, default=30.0)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    ns = parser.parse_args()

    config = yaml.safe_load((REPO / "configs" / "cluster.yaml").read_text())
    actor_options = config["applications"][0]["args"]["tenancy"]["shard_actor_options"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(FAST_HEALTH_CHECKS, RAY_AUTH_MODE="token",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    base = Path(tempfile.mkdtemp(prefix="sgpl-", dir="/tmp"))
    dirs = {"head": base / "h"}
    results: dict[str, dict] = {}
    try:
        port = free_port()
        ray_start(["--head", "--port", str(port), "--include-dashboard=false", "--ray-client-server-port",
                   str(free_port()), *node_args(dirs["head"], {"securegate_api": 10}, 2)], env)
        address = (dirs["head"] / "ray_current_cluster").read_text().strip()
        started_nodes = 0

        def add_index_node() -> Path:
            nonlocal started_nodes
            started_nodes += 1
            directory = dirs[f"n{started_nodes}"] = base / f"n{started_nodes}"
            ray_start(["--address", address, *node_args(directory, {INDEX_RESOURCE: 100}, 4)], env)
            return directory

        index_dirs = [add_index_node() for _ in range(ns.nodes)]

        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from tenancy.actors import TenantShardActor
        from tenancy.placement import actor_state, shard_options

        ray.init(address=address, log_to_driver=False)
        wait_nodes(ray, ns.nodes + 1)

        for strategy in ns.strategies.split(","):
            groups = []
            created = time.perf_counter()
            tenants: list[list] = []
            for t in range(ns.tenants):
                if strategy.startswith("pg_"):
                    bundle = {"CPU": actor_options["num_cpus"], **actor_options["resources"]}
                    group = placement_group([bundle] * ns.shards, strategy="SPREAD" if strategy == "pg_spread" else "STRICT_SPREAD")
                    groups.append(group)
                    options = [{**actor_options, "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=k)}
                               for k in range(ns.shards)]
                else:
                    options = [shard_options(actor_options, ns.shards if strategy == "spread" else 1)] * ns.shards
                handles = [TenantShardActor.options(name=f"bench-{strategy}-{t}#{k}", namespace="sgbench", **options[k])
                           .remote(f"t{t}", str(base), "m", 8, no_key, None, k, ns.shards) for k in range(ns.shards)]
                ray.get([h.position.remote() for h in handles], timeout=180)
                tenants.append(handles)
            create_s = time.perf_counter() - created
            before = [[actor_state(h)["node_id"] for h in handles] for handles in tenants]
            per_node = Counter(node for nodes in before for node in nodes)
            victim_node = per_node.most_common(1)[0][0]
            victim_dir = next(d for d in index_dirs if node_dir_of(ray, victim_node) == d)
            moved = sum(1 for nodes in before for node in nodes if node == victim_node)

            pids = process_tree(str(victim_dir))
            killed = time.perf_counter()
            assert kill_pids(pids, signal.SIGKILL, 10) == set()
            restart_s = None
            deadline = killed + ns.restart_deadline
            while time.perf_counter() < deadline:
                states = [actor_state(h) for handles in tenants for h in handles]
                if all(s["state"] == "ALIVE" and s["node_id"] != victim_node for s in states):
                    ray.get([h.position.remote() for handles in tenants for h in handles], timeout=60)
                    restart_s = time.perf_counter() - killed
                    break
                time.sleep(0.2)
            after = [[actor_state(h)["node_id"] for h in handles] for handles in tenants]
            results[strategy] = {
                "create_s": round(create_s, 2),
                "distinct_tenants": sum(1 for nodes in before if len(set(nodes)) == ns.shards),
                "actors_per_node": sorted(per_node.values(), reverse=True),
                "moved": moved,
                "restart_s": round(restart_s, 2) if restart_s is not None else None,
                "restarted": restart_s is not None,
                "max_colocated_after": max((max(Counter(n for n in nodes if n).values(), default=0) for nodes in after)),
                "unplaced_after": sum(1 for nodes in after for n in nodes if n is None),
            }
            print(strategy, results[strategy], flush=True)
            for handles in tenants:
                for h in handles:
                    ray.kill(h, no_restart=True)
            for group in groups:
                remove_placement_group(group)
            # the lost node comes back (a fresh raylet) so every strategy starts from the same cluster
            index_dirs[index_dirs.index(victim_dir)] = add_index_node()
            wait_nodes(ray, ns.nodes + 1)
        ray.shutdown()
    finally:
        leftover = stop_cluster(base, dirs)
    summary = {"benchmark": "placement", "date": time.strftime("%Y-%m-%d"), "host": "shared", "tenants": ns.tenants,
               "shards": ns.shards, "index_nodes": ns.nodes, "results": results, "leftover_pids": sorted(leftover)}
    print(json.dumps(summary))
    return 0


def wait_nodes(ray, count: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(1 for n in ray.nodes() if n["Alive"]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} nodes alive")
        time.sleep(0.5)


def node_dir_of(ray, node_id: str) -> Path:
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    return Path(node["RayletSocketName"]).parents[2]  # <dir>/session_xxx/sockets/raylet


if __name__ == "__main__":
    sys.exit(main())
