"""The one place that binds SecureGate's deployments into a Serve application.

    serve run graph:app                 # embedded defaults (+ SECUREGATE_MODELS / SECUREGATE_DATA_DIR)
    serve run configs/local.yaml        # operators: replicas, resources and args from a config file
    securegate serve                    # the CLI does the same in-process
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from deployments.detector import Detector
from deployments.embedder import Embedder
from deployments.ingress import Ingress
from deployments.keys import KeyService
from deployments.streams import StreamSupervisor
from deployments.tenants import TenantSupervisor
from securegate.settings import DEFAULT_PACK, Settings


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder (`import_path: graph:build_app`): exactly one parameter, the config's
    `args` (SecureGate settings), as Serve requires; Serve applies the config's `deployments:` itself."""
    return bind_app(args)


def bind_app(args: dict[str, Any] | None = None, deployment_options: dict[str, dict] | None = None) -> Application:
    """The application for Python callers that run it with `serve.run` (tests, benchmarks): `args` are
    SecureGate settings, `deployment_options` ({deployment name: Serve options}) a config's `deployments:`
    section (`cli.serve.load_serve_config` reads both from a config file)."""
    settings = Settings.from_args(args).model_dump()
    options = deployment_options or {}

    bound: set[str] = set()

    def configured(deployment):
        bound.add(deployment.name)
        return deployment.options(**options.get(deployment.name, {}))

    embedder = configured(Embedder).bind(settings)
    # One Embedder deployment per further pack (settings `packs`), named Embedder-<pack> so a config's
    # `deployments:` can size each; the Detector stays one (aligned crops do not depend on the recognizer) and
    # hands an image's crops to the Embedder of the model its caller names.
    embedders = {DEFAULT_PACK: embedder}
    for name in settings["packs"]:
        embedders[name] = configured(Embedder.options(name=f"Embedder-{name}")).bind(settings, name)
    detector = configured(Detector).bind(settings, embedders)
    keys = configured(KeyService).bind(settings)
    tenants = configured(TenantSupervisor).bind(settings, keys, embedders)
    streams = configured(StreamSupervisor).bind(settings, keys, tenants, detector, embedder)
    ingress = configured(Ingress).bind(settings, detector, embedder, tenants, keys, streams, embedders)
    # As `serve run` / `serve deploy` do: options for no deployment of the app are a mistake (a renamed
    # deployment, docs/operations.md "Renamed in this version"), not something to drop in silence.
    unknown = sorted(set(options) - bound)
    if unknown:
        raise ValueError(f"the config's deployments: {unknown} name no deployment of the application "
                         f"(it has {sorted(bound)}; see docs/operations.md \"Renamed in this version\")")
    return ingress


app = bind_app()
