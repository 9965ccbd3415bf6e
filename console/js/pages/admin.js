// Admin: tenants (create, settings, API keys shown once, model migration, delete), key status and rotations
// (live), admin keys, audit verification, health.
import { del, get, patch, post } from "../api.js";
import { adminKeysSection, auditVerifySection, migrationPanel } from "./admin-ops.js";
import { busy, confirmDialog, field, fmt, h, poll, section, shownOnce, statusArea, table, when } from "../ui.js";

export function render(root, { cleanups }) {
  const health = healthSection(cleanups);
  const keys = keysSection(cleanups);
  const audit = auditVerifySection([]);
  const tenants = tenantsSection(() => keys.refresh(), cleanups, (list) => audit.fill(list));
  root.append(tenants.el, keys.el, adminKeysSection(), audit.el, health);
}

// ---- tenants -------------------------------------------------------------------------------------------
function tenantsSection(onKeysChanged, cleanups, onTenants) {
  const status = statusArea();
  const list = h("div", { id: "tenant-list" });
  const keyOnce = h("div", { id: "shown-once" });
  const editor = h("div", { id: "tenant-editor" });

  const name = h("input", { type: "text", id: "tenant-name", required: true, maxlength: 200, autocomplete: "off" });
  const settings = h("textarea", { id: "tenant-settings", rows: 3, spellcheck: false, placeholder: '{"default_threshold": 0.4}' });
  const create = h("button", { type: "submit", class: "primary", id: "create-tenant" }, "Create tenant");
  const form = h(
    "form",
    { class: "grid-form" },
    field("Tenant name", name),
    field("Settings (JSON, optional)", settings, "default_threshold, retention_days, match_on, quality, rate_limit_per_s, rate_limit_burst, shards"),
    h("div", { class: "actions" }, create),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, status, async () => {
      const body = { name: name.value.trim() };
      if (settings.value.trim()) body.settings = parseJson(settings.value);
      const created = await post("/v1/tenants", body);
      showKeyOnce(`Tenant ${body.name} created`, created.tenant_id, created.api_key);
      name.value = "";
      settings.value = "";
      await refresh();
      onKeysChanged();
    });
  });

  function showKeyOnce(title, tenantId, apiKey) {
    shownOnce(keyOnce, {
      title,
      explain: "This API key is shown once: SecureGate keeps only a hash of it. Copy it now and hand it to the tenant.",
      label: `API key for ${tenantId}`,
      value: apiKey,
      id: "new-api-key",
      dataset: { tenant: tenantId },
    });
  }

  async function refresh() {
    try {
      const tenants = await get("/v1/tenants");
      onTenants(tenants);
      list.replaceChildren(
        table(
          [
            { title: "Name", key: "name", cell: (t) => t.name },
            { title: "Tenant id", key: "id", cell: (t) => h("code", {}, t.tenant_id) },
            { title: "Model", key: "model", cell: (t) => `${t.model.name} (${t.model.dim}-d)` },
            { title: "Threshold", key: "threshold", cell: (t) => fmt(t.settings?.default_threshold ?? "model default") },
            { title: "Created", key: "created", cell: (t) => when(t.created_at) },
            { title: "Actions", key: "actions", cell: (t) => tenantActions(t) },
          ],
          tenants,
          { caption: `${tenants.length} tenant(s)`, empty: "No tenants yet: create the first one above." },
        ),
      );
    } catch (err) {
      status.error(err);
    }
  }

  function tenantActions(t) {
    const edit = h("button", { type: "button", onclick: () => editSettings(t) }, "Settings");
    const newKey = h("button", {
      type: "button",
      onclick: () =>
        busy(newKey, status, async () => {
          const ok = await confirmDialog({
            title: `New API key for ${t.name}?`,
            body: h("p", {}, `A new key replaces the current one: clients of ${t.name} using the old key are refused from now on.`),
            confirm: "Issue new key",
          });
          if (!ok) return;
          const { api_key } = await post(`/v1/tenants/${encodeURIComponent(t.tenant_id)}/api-keys`);
          showKeyOnce(`New API key for ${t.name}`, t.tenant_id, api_key);
        }),
    }, "New API key");
    const rotate = h("button", {
      type: "button",
      onclick: () =>
        busy(rotate, status, async () => {
          await post(`/v1/tenants/${encodeURIComponent(t.tenant_id)}/keys/rotate`);
          status.ok(`Data-key rotation started for ${t.name}: progress below under Keys.`);
          onKeysChanged();
        }),
    }, "Rotate data key");
    const remove = h("button", {
      type: "button",
      class: "danger",
      onclick: () =>
        busy(remove, status, async () => {
          const ok = await confirmDialog({
            title: `Delete tenant ${t.name}?`,
            body: [
              h("p", {}, "This destroys, for good:"),
              h(
                "ul",
                {},
                h("li", {}, `tenant ${t.name} (`, h("code", {}, t.tenant_id), ") and its API key"),
                h("li", {}, "every person and every enrolled face of this tenant"),
                h("li", {}, "its audit log, cameras and events"),
                h("li", {}, "its encryption keys (crypto-shredding): no backup of its data can be decrypted afterwards"),
              ),
              h("p", {}, "There is no undo."),
            ],
            confirm: `Delete ${t.name}`,
          });
          if (!ok) return;
          await del(`/v1/tenants/${encodeURIComponent(t.tenant_id)}`);
          status.ok(`Tenant ${t.name} deleted.`);
          editor.replaceChildren();
          await refresh();
          onKeysChanged();
        }),
    }, "Delete");
    const migrate = h("button", { type: "button", onclick: () => {
      editor.replaceChildren(migrationPanel(t, cleanups));
      document.getElementById("migration-pack")?.focus();
    } }, "Migrate model");
    for (const b of [edit, newKey, rotate, migrate, remove]) b.setAttribute("aria-label", `${b.textContent} (${t.name})`);
    return h("div", { class: "row actions-cell" }, edit, newKey, rotate, migrate, remove);
  }

  function editSettings(t) {
    const text = h("textarea", { rows: 12, spellcheck: false, id: "settings-json" });
    text.value = JSON.stringify(t.settings, null, 2);
    const save = h("button", { type: "submit", class: "primary" }, "Save settings");
    const local = statusArea();
    const form = h(
      "form",
      { class: "card inset" },
      h("h3", {}, `Settings of ${t.name}`),
      field("Settings (JSON; keys you leave out keep their value)", text),
      h("div", { class: "actions" }, h("button", { type: "button", onclick: () => editor.replaceChildren() }, "Close"), save),
      local.el,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(save, local, async () => {
        const updated = await patch(`/v1/tenants/${encodeURIComponent(t.tenant_id)}`, { settings: parseJson(text.value) });
        text.value = JSON.stringify(updated.settings, null, 2);
        local.ok("Saved.");
        await refresh();
      });
    });
    editor.replaceChildren(form);
    text.focus();
  }

  refresh();
  return { el: section("Tenants", form, status.el, keyOnce, list, editor), refresh };
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw Object.assign(new Error(`settings are not valid JSON: ${err.message}`), { code: "invalid_json" });
  }
}

// ---- keys ----------------------------------------------------------------------------------------------
function keysSection(cleanups) {
  const status = statusArea();
  const body = h("div", { id: "key-status" }, h("p", { class: "info" }, "Loading…"));
  const rotateRoot = h("button", {
    type: "button",
    onclick: () =>
      busy(rotateRoot, status, async () => {
        const ok = await confirmDialog({
          title: "Rotate the org root key?",
          body: h("p", {}, "Every tenant's key-encryption key is re-wrapped under a new root key; face records are not touched."),
          confirm: "Rotate root key",
          danger: false,
        });
        if (!ok) return;
        const r = await post("/v1/admin/keys/rotate-root");
        status.ok(`Root key rotated: ${r.rewrapped} key(s) of ${r.tenants} tenant(s) re-wrapped under ${r.root_id}.`);
        await refresh();
      }),
  }, "Rotate root key");

  async function refresh() {
    try {
      const s = await get("/v1/admin/keys/status");
      const rotations = Object.values(s.rotations ?? {});
      body.replaceChildren(
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Provider"), h("dd", {}, s.provider),
          h("dt", {}, "Root key"), h("dd", {}, h("code", {}, s.root_id)),
          h("dt", {}, "Tenants with keys"), h("dd", {}, String(s.tenant_count)),
        ),
        h("h3", {}, "Data-key rotations"),
        rotations.length
          ? h("ul", { class: "rotations" }, rotations.map(rotationRow))
          : h("p", { class: "empty" }, "No rotation since the server started."),
        table(
          [
            { title: "Tenant id", cell: ([id]) => h("code", {}, id) },
            { title: "Current version", cell: ([, k]) => String(k.current_version) },
            { title: "Versions held", cell: ([, k]) => (k.versions ?? []).join(", ") },
            { title: "Wrapped under root", cell: ([, k]) => h("code", {}, k.root_id ?? "—") },
          ],
          Object.entries(s.tenants ?? {}),
          { caption: "Tenant keys", empty: "No tenant keys." },
        ),
      );
    } catch (err) {
      status.error(err);
    }
  }
  poll(refresh, 2000, cleanups);
  return { el: section("Keys", h("div", { class: "actions" }, rotateRoot), status.el, body), refresh };
}

function rotationRow(r) {
  const total = r.total ?? 0;
  const done = total - (r.remaining ?? 0);
  const label = `${r.tenant_id} → version ${r.version}: ${r.state}` + (total ? ` (${done} of ${total} records)` : "");
  const bar = h("progress", { max: Math.max(total, 1), value: r.state === "done" ? Math.max(total, 1) : done, "aria-label": label });
  return h("li", { dataset: { state: r.state } }, bar, " ", h("span", {}, label), r.error ? h("span", { class: "error-text" }, ` ${r.error}`) : null);
}

// ---- health --------------------------------------------------------------------------------------------
function healthSection(cleanups) {
  const body = h("div", { id: "health" });
  poll(async () => {
    const rows = [];
    try {
      const up = await get("/v1/healthz");
      rows.push(["Process", up.status, "ok"]);
    } catch (err) {
      rows.push(["Process", `${err.code}: ${err.message}`, "bad"]);
    }
    try {
      const r = await get("/v1/readyz");
      rows.push(["Ready", r.ready ? "ready" : "not ready", r.ready ? "ok" : "bad"]);
      rows.push(["Recognizer", describe(r.embedder), "ok"]);
      rows.push(["Detector", describe(r.detector), "ok"]);
      rows.push(["Key provider", r.keys ? "reachable" : "unreachable", r.keys ? "ok" : "bad"]);
      if (r.storage && r.storage.free_bytes !== undefined) {
        rows.push(["Data disk", `writable, ${Math.floor(r.storage.free_bytes / 2 ** 20)} MiB free`, "ok"]);
      }
    } catch (err) {
      rows.push(["Ready", `${err.code}: ${err.message}`, "bad"]);
    }
    body.replaceChildren(h("dl", { class: "facts" }, rows.flatMap(([k, v, state]) => [h("dt", {}, k), h("dd", { class: `state-${state}` }, v)])));
  }, 5000, cleanups);
  return section("Health", body);
}

function describe(info) {
  if (!info || typeof info !== "object") return String(info);
  const parts = [info.name, info.dim ? `${info.dim}-d` : null, info.providers ? [].concat(info.providers).join(", ") : null];
  return parts.filter(Boolean).join(" · ") || JSON.stringify(info);
}
