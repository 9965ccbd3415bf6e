"""SecureGate as the benchmarks measure it: deployed from a Serve config the way `securegate serve --config`
deploys it (cli.serve.deploy), on a free port, with a fresh data dir."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def deployed(config_path: Path, models: Path, prefix: str = "sg-bench-") -> Iterator[tuple[str, str]]:
    """Yields (base URL, admin token); shuts Serve and Ray down afterwards."""
    import ray
    from ray import serve

    from cli.serve import deploy, read_config, securegate_app, start_ray

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    config = read_config(config_path)
    app = securegate_app(config)
    app.args = {**(app.args or {}), "models": str(models), "data_dir": str(data_dir)}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        config.http_options.port = s.getsockname()[1]
    start_ray(include_dashboard=False, log_to_driver=False)
    try:
        deploy(config)
        yield f"http://127.0.0.1:{config.http_options.port}", (data_dir / "admin_token").read_text().strip()
    finally:
        serve.shutdown()
        ray.shutdown()
