"""The HTTP app of one Ingress replica: every route module's router, our error shape on every answer, the body and
URL limits, and the replica's collaborators in the app's state, where each route module's dependency finds the one
it calls (`request.app.state.<name>`).

Built per replica (Serve calls `Ingress.__serve_build_asgi_app__` after the constructor), so the routes are plain
functions of their modules, not methods of the Ingress, and no app object is shared between replicas or pickled
with the class.
"""

from __future__ import annotations

from fastapi import FastAPI

from deployments.routes import admin, admin_keys, audit, console, faces, health, persons, streams
from deployments.routes.common import BodyLimit, add_error_handlers

TITLE, VERSION, DESCRIPTION = "SecureGate", "0.1.0", "Multi-tenant face recognition on Ray Serve."


def http_app(max_body_bytes: int, **collaborators: object) -> FastAPI:
    """`collaborators`: by the name their route module reads from the app's state (faces, persons, imports,
    admin, admin_keys, audit_logs, cameras, health)."""
    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION)
    app.include_router(streams.router)  # cameras, events, webhooks
    app.include_router(console.router)  # the web console at /console (static files)
    app.include_router(faces.router)  # detect, embed, verify, search
    app.include_router(persons.router)  # a tenant's persons and faces, bulk import
    app.include_router(admin.router)  # tenants, API keys, the key hierarchy, model migrations
    app.include_router(admin_keys.router)  # admin keys and their scopes
    app.include_router(audit.router)  # a tenant's audit log, the org's
    app.include_router(health.router)  # healthz, readyz
    add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    for name, collaborator in collaborators.items():
        setattr(app.state, name, collaborator)
    return app
