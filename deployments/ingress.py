"""HTTP and Python entry point of SecureGate: the Ingress holds one collaborator per concern, each built here with
exactly what it needs (deployment handles, the face pipeline, settings); the handle API (plain async methods for
Serve-handle callers) is their methods, and the HTTP routes, one module per resource in deployments/routes/, call
the same collaborators through the app's state (deployments/routes/app.py).

Both surfaces run the same methods, so a Python caller and an HTTP client get the same answers and the same error
codes. Orchestration only: models live in the Detector and Embedder deployments, tenants and their faces behind
the TenantSupervisor, cameras behind the StreamSupervisor. Exceptions become API errors through the one table in
securegate/errors.py, so this replica imports no tenancy module that holds an index or a store (faiss, apsw).

| collaborator | module                         | handles it is given                  |
|--------------|--------------------------------|--------------------------------------|
| pipeline     | deployments/face_pipeline.py   | Detector, Embedder(s)                |
| faces        | deployments/face_api.py        | pipeline, TenantSupervisor               |
| persons      | deployments/person_api.py      | pipeline, TenantSupervisor, cameras      |
| imports      | deployments/import_api.py      | pipeline, TenantSupervisor               |
| cameras      | deployments/stream_api.py      | StreamSupervisor, TenantSupervisor           |
| admin        | deployments/admin_api.py       | TenantSupervisor, KeyService, pipeline   |
| admin_keys   | deployments/admin_keys.py      | TenantSupervisor                         |
| audit_logs   | deployments/audit_api.py       | TenantSupervisor                         |
| health       | deployments/readiness.py       | pipeline, KeyService, TenantSupervisor   |
"""

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.admin_api import AdminApi
from deployments.admin_keys import AdminAuth, AdminKeyApi
from deployments.api_calls import ServedBy
from deployments.audit_api import AuditApi
from deployments.face_api import FaceApi
from deployments.face_pipeline import FacePipeline
from deployments.import_api import ImportApi
from deployments.person_api import PersonApi
from deployments.readiness import Readiness
from deployments.routes.app import http_app
from deployments.stream_api import StreamApi
from deployments.tenant_calls import TenantCalls
from deployments.tenant_models import TenantModels
from securegate.settings import Settings


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
@serve.ingress()  # the app is built per replica, by __serve_build_asgi_app__
class Ingress:
    def __init__(self, settings: dict, detector: DeploymentHandle, embedder: DeploymentHandle,
                 tenants: DeploymentHandle, keys: DeploymentHandle, streams: DeploymentHandle | None = None,
                 embedders: dict[str, DeploymentHandle] | None = None) -> None:
        settings = Settings.model_validate(settings)
        limits = settings.limits
        self.max_body_bytes = limits.max_body_bytes
        self.pipeline = FacePipeline(detector, embedder, embedders, limits.max_image_pixels,
                                     settings.admission.latency_budget_s)
        calls = TenantCalls(tenants, TenantModels(self.pipeline.packs))  # which model each key's tenant is bound to
        auth = AdminAuth(tenants)
        self.cameras = StreamApi(streams, tenants, calls, limits.max_image_pixels)
        self.faces = FaceApi(self.pipeline, tenants, calls, settings.verify_threshold)
        self.persons = PersonApi(self.pipeline, tenants, calls, self.cameras)
        self.imports = ImportApi(self.pipeline, tenants, calls)
        self.admin = AdminApi(tenants, keys, self.pipeline, auth, self.cameras)
        self.admin_keys = AdminKeyApi(tenants, auth)
        self.audit_logs = AuditApi(tenants, calls, auth)
        self.health = Readiness(self.pipeline, keys, tenants)

    def __serve_build_asgi_app__(self):
        """Serve calls this after the constructor: this replica's HTTP app, over its collaborators."""
        return http_app(self.max_body_bytes, faces=self.faces, persons=self.persons, imports=self.imports,
                        cameras=self.cameras, admin=self.admin, admin_keys=self.admin_keys,
                        audit_logs=self.audit_logs, health=self.health)

    # ============================================ the handle API: each method is its collaborator's, by name
    model_info = ServedBy("pipeline")
    ready = ServedBy("health")
    # faces without a gallery, and against a tenant's
    detect = ServedBy("faces")
    embed = ServedBy("faces")
    verify = ServedBy("faces")
    search = ServedBy("faces")
    verify_person = ServedBy("faces")
    # a tenant's persons, faces and corrections; bulk import
    create_person = ServedBy("persons")
    list_persons = ServedBy("persons")
    get_person = ServedBy("persons")
    delete_person = ServedBy("persons")
    enrol_face = ServedBy("persons")
    delete_face = ServedBy("persons")
    reject = ServedBy("persons")
    list_rejections = ServedBy("persons")
    delete_rejection = ServedBy("persons")
    merge_persons = ServedBy("persons")
    move_face = ServedBy("persons")
    import_faces = ServedBy("imports")
    # audit logs and erasure receipts
    audit = ServedBy("audit_logs")
    verify_audit = ServedBy("audit_logs")
    admin_verify_audit = ServedBy("audit_logs")
    org_audit = ServedBy("audit_logs")
    erasure_receipt = ServedBy("audit_logs")
    receipt_keys = ServedBy("audit_logs")
    # operators: tenants, keys, model migrations; admin keys
    create_tenant = ServedBy("admin")
    list_tenants = ServedBy("admin")
    get_tenant = ServedBy("admin")
    tenant_placement = ServedBy("admin")
    update_tenant = ServedBy("admin")
    delete_tenant = ServedBy("admin")
    rotate_api_key = ServedBy("admin")
    rotate_root_key = ServedBy("admin")
    rotate_tenant_key = ServedBy("admin")
    migrate_tenant = ServedBy("admin")
    migration_status = ServedBy("admin")
    key_status = ServedBy("admin")
    create_admin_key = ServedBy("admin_keys")
    list_admin_keys = ServedBy("admin_keys")
    revoke_admin_key = ServedBy("admin_keys")
    # cameras, events, unknowns, webhooks
    create_stream = ServedBy("cameras")
    list_streams = ServedBy("cameras")
    get_stream = ServedBy("cameras")
    update_stream = ServedBy("cameras")
    delete_stream = ServedBy("cameras")
    push_frame = ServedBy("cameras")
    events = ServedBy("cameras")
    event_feed = ServedBy("cameras")
    attendance = ServedBy("cameras")
    list_unknowns = ServedBy("cameras")
    promote_unknown = ServedBy("cameras")
    create_webhook = ServedBy("cameras")
    list_webhooks = ServedBy("cameras")
    delete_webhook = ServedBy("cameras")
    webhook_deliveries = ServedBy("cameras")
    retry_delivery = ServedBy("cameras")
