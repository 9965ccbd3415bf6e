// The Admin page's operations beyond tenants: admin keys with scopes (create, list, revoke), model migration
// (start, progress) and audit verification of a tenant's chain or the org's, with the verdict explained.
import { del, get, post } from "../api.js";
import { verdict } from "../audit-verdict.js";
import { busy, confirmDialog, field, fmt, h, section, shownOnce, statusArea, table, when } from "../ui.js";

// securegate/schemas.py AdminScope, with what each lets a key do.
const SCOPES = {
  "tenants:read": "list and read tenants",
  "tenants:write": "create, change and delete tenants, issue their API keys",
  "keys:read": "read the key status",
  "keys:rotate": "rotate the root key and tenants' data keys",
  "audit:read": "read and verify the org audit and tenants' audits",
  "admin-keys:read": "list admin keys",
  "admin-keys:write": "create and revoke admin keys",
  "models:migrate": "start model migrations and read their progress",
};
const seg = encodeURIComponent;

// ---- admin keys ----------------------------------------------------------------------------------------
export function adminKeysSection() {
  const status = statusArea();
  const list = h("div", { id: "admin-key-list" });
  const keyOnce = h("div", { id: "admin-key-once" });
  const name = h("input", { type: "text", id: "admin-key-name", required: true, maxlength: 63, pattern: "[a-z0-9][a-z0-9\\-]{0,62}", autocomplete: "off" });
  const scopes = Object.keys(SCOPES).map((s) => h("input", { type: "checkbox", value: s, id: `scope-${s.replace(":", "-")}` }));
  const create = h("button", { type: "submit", class: "primary", id: "create-admin-key" }, "Create admin key");
  const form = h(
    "form",
    { class: "grid-form" },
    field("Name (lower case letters, digits and -; never reused)", name),
    h("fieldset", { class: "scopes" }, h("legend", {}, "Scopes (a subset of your own key's)"),
      ...scopes.map((c) => h("label", { for: c.id, class: "check" }, c, " ", h("code", {}, c.value), ` — ${SCOPES[c.value]}`))),
    h("div", { class: "actions" }, create),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, status, async () => {
      const made = await post("/v1/admin-keys", { name: name.value.trim(), scopes: scopes.filter((c) => c.checked).map((c) => c.value) });
      name.value = "";
      scopes.forEach((c) => (c.checked = false));
      shownOnce(keyOnce, {
        title: `Admin key ${made.name} created`,
        explain: "It is shown once: SecureGate keeps only a hash of it. Copy it now.",
        label: `Admin key ${made.name}`,
        value: made.admin_key,
        id: "new-admin-key",
      });
      await refresh();
    });
  });

  async function refresh() {
    try {
      const { admin_keys: keys } = await get("/v1/admin-keys");
      list.replaceChildren(
        table(
          [
            { title: "Name", key: "name", cell: (k) => k.name },
            { title: "Scopes", key: "scopes", cell: (k) => k.scopes.join(", ") },
            { title: "Created", key: "created", cell: (k) => when(k.created_at) },
            { title: "State", key: "state", cell: (k) => (k.revoked_at ? h("span", { class: "state-bad" }, `revoked ${when(k.revoked_at)}`) : h("span", { class: "state-ok" }, "active")) },
            { title: "", key: "revoke", cell: (k) => (k.revoked_at ? "" : revokeButton(k)) },
          ],
          keys,
          { caption: "Named admin keys (the first-start token is not listed)", empty: "No named admin keys yet." },
        ),
      );
    } catch (err) {
      status.error(err);
    }
  }
  const revokeButton = (k) => {
    const b = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${k.name}` }, "Revoke");
    b.addEventListener("click", () =>
      busy(b, status, async () => {
        const ok = await confirmDialog({
          title: `Revoke admin key ${k.name}?`,
          body: h("p", {}, `Every request made with ${k.name} is refused from now on. The name ${k.name} is never issued again.`),
          confirm: `Revoke ${k.name}`,
        });
        if (!ok) return;
        await del(`/v1/admin-keys/${seg(k.name)}`);
        status.ok(`Admin key ${k.name} revoked.`);
        await refresh();
      }),
    );
    return b;
  };
  refresh();
  return section("Admin keys", form, status.el, keyOnce, list);
}

// ---- model migration ------------------------------------------------------------------------------------
/** One tenant's migration: start it (pack, hold, batch size) and follow its progress every 2 s. */
export function migrationPanel(tenant, cleanups) {
  const status = statusArea();
  const progress = h("div", { id: "migration-progress", "aria-live": "polite" });
  const pack = h("input", { type: "text", id: "migration-pack", value: "default", required: true, autocomplete: "off" });
  const hold = h("input", { type: "checkbox", id: "migration-hold" });
  const batch = h("input", { type: "number", id: "migration-batch", min: 1, max: 1024, value: 64 });
  const start = h("button", { type: "submit", class: "primary", id: "start-migration" }, "Start migration");
  const form = h(
    "form",
    { class: "card inset", "aria-labelledby": "migration-title" },
    h("h3", { id: "migration-title" }, `Model migration of ${tenant.name}`),
    h("p", { class: "hint" }, `Bound to ${tenant.model.name} (${tenant.model.dim}-d). The kept enrolment crops are re-embedded with the pack's model into a shadow index, then the tenant switches; searches answer from the old model until then.`),
    h("div", { class: "grid-form" },
      field("Pack (default, or one of the server's packs)", pack),
      field("Crops per step", batch),
      h("label", { for: hold.id, class: "check" }, hold, " Hold before the switch (start again without it to switch)")),
    h("div", { class: "actions" }, start),
    status.el,
    progress,
  );
  let timer = null;
  const follow = async () => {
    try {
      show(await get(`/v1/admin/tenants/${seg(tenant.tenant_id)}/migrate`));
    } catch (err) {
      if (err.code === "not_found") progress.replaceChildren(h("p", { class: "empty" }, "No migration of this tenant since the server started."));
      else status.error(err);
      return;
    }
  };
  const show = (m) => {
    const total = m.total ?? 0;
    const label = `${m.from_model} → ${m.to_model}: ${m.state}` + (total ? `, ${fmt(m.done ?? 0)} of ${fmt(total)} faces re-embedded` : "") +
      (m.crops_per_s ? ` (${fmt(m.crops_per_s, 1)} crops/s)` : "");
    progress.replaceChildren(
      h("p", { dataset: { state: m.state } }, h("progress", { max: Math.max(total, 1), value: m.state === "done" ? Math.max(total, 1) : m.done ?? 0, "aria-label": label }), " ", label),
      m.state === "ready" ? h("p", { class: "hint" }, "The shadow index is complete and held: start the migration again without “Hold” to switch.") : null,
      m.error ? h("p", { class: "error-text" }, m.error) : null,
    );
    clearInterval(timer);
    if (m.state === "running") timer = setInterval(follow, 2000);
  };
  cleanups.push(() => clearInterval(timer));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(start, status, async () => {
      show(await post(`/v1/admin/tenants/${seg(tenant.tenant_id)}/migrate`, { to: pack.value.trim(), hold: hold.checked, batch_size: Number(batch.value) || 64 }));
      status.ok(`Migration of ${tenant.name} to pack ${pack.value.trim()} started.`);
    });
  });
  follow();
  return form;
}

// ---- audit verification -----------------------------------------------------------------------------------
export function auditVerifySection(tenants) {
  const status = statusArea();
  const out = h("div", { id: "audit-verdict" });
  const which = h("select", { id: "audit-chain" });
  const go = h("button", { type: "submit", id: "verify-audit" }, "Verify");
  const form = h("form", { class: "row" }, field("Audit chain", which), go);
  const fill = (list) => {
    const chosen = which.value;
    which.replaceChildren(h("option", { value: "" }, "the org audit"), ...list.map((t) => h("option", { value: t.tenant_id }, `tenant ${t.name}`)));
    which.value = list.some((t) => t.tenant_id === chosen) ? chosen : "";
  };
  fill(tenants);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(go, status, async () => {
      const chosen = which.selectedOptions[0].textContent;
      const v = await get(`/v1/admin/audit/verify${which.value ? `?tenant=${seg(which.value)}` : ""}`);
      out.replaceChildren(verdict(v, which.value ? `${chosen}'s audit` : chosen));
    });
  });
  return {
    el: section("Audit verification", h("p", { class: "hint" }, "Checks the chain's hash links and its checkpoints, whose MAC only the key provider can make."), form, status.el, out),
    fill,
  };
}
