"""The `securegate` command line: a top-level entry like `graph.py`, so it may import every layer (graph,
deployments' settings, tenancy, evaluation) while nothing imports it.

`main` (the parser), `serve` (run the application from a Serve config), `admin` (tenants and keys through a
running service's admin API), `evaluate` (`securegate eval`: thresholds from labelled photos).
"""
