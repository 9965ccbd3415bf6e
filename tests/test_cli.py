"""The `securegate` command line against the running application (admin commands talk HTTP)."""

import contextlib
import io
import json

from securegate import cli


def run(*args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(list(args))
    return code, out.getvalue()


def test_models_reports_the_active_pack(models_dir):
    code, out = run("models", "--models", str(models_dir))
    info = json.loads(out)
    assert code == 0 and info["name"] == "mobilefacenet_arcface_w128" and info["dim"] == 128
    assert "CPUExecutionProvider" in info["available_providers"]


def test_tenants_lifecycle(app, http, data_dir):
    http.get("/v1/readyz")
    # No --admin-token: the CLI reads the token the service generated into its data dir.
    common = ["--url", app[1], "--data-dir", str(data_dir)]
    code, out = run("tenants", "create", "cli-made", "--settings", '{"default_threshold": 0.5}', *common)
    created = json.loads(out)
    assert code == 0 and created["api_key"].startswith("sg_")
    auth = {"Authorization": f"Bearer {created['api_key']}"}
    assert http.get("/v1/persons", headers=auth).status_code == 200

    code, out = run("tenants", "list", *common)
    listed = {t["tenant_id"]: t for t in json.loads(out)}
    assert code == 0 and listed[created["tenant_id"]]["settings"]["default_threshold"] == 0.5

    code, out = run("tenants", "rotate-key", created["tenant_id"], *common)
    assert code == 0 and http.get("/v1/persons", headers=auth).status_code == 401
    new_auth = {"Authorization": f"Bearer {json.loads(out)['api_key']}"}
    assert http.get("/v1/persons", headers=new_auth).status_code == 200

    code, _ = run("tenants", "delete", created["tenant_id"], *common)
    assert code == 0 and http.get("/v1/persons", headers=new_auth).status_code == 401
    code, out = run("tenants", "delete", created["tenant_id"], *common)
    assert code == 1 and json.loads(out)["error"]["code"] == "not_found"


def test_openapi_and_docs_pages_are_served(http):
    schema = http.get("/openapi.json").json()
    assert {"/v1/search", "/v1/persons/{person_id}/faces", "/v1/tenants", "/v1/audit"} <= set(schema["paths"])
    search_errors = schema["paths"]["/v1/search"]["post"]["responses"]
    assert {"400", "401", "413", "422", "429", "503"} <= set(search_errors)
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
