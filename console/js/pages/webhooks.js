// Webhooks: create one (its signing secret shown once), list them with their deliveries per state, see one
// webhook's deliveries and dead letters, retry a dead letter, delete a webhook.
import { del, get, post } from "../api.js";
import { busy, confirmDialog, field, h, poll, section, shownOnce, statusArea, table, when } from "../ui.js";

const KINDS = ["person_seen", "unknown_seen"];
const STATES = ["pending", "delivered", "dead", "dropped"];
const seg = encodeURIComponent;

export function render(root, { cleanups }) {
  const status = statusArea();
  const list = h("div", { id: "webhook-list" });
  const secretOnce = h("div", { id: "webhook-secret" });
  const detail = h("div", { id: "webhook-deliveries" });
  let stopDetail = () => {};
  cleanups.push(() => stopDetail());

  // ---- create -------------------------------------------------------------------------------------------
  const url = h("input", { type: "url", id: "webhook-url", required: true, maxlength: 4096, autocomplete: "off", placeholder: "https://example.com/securegate" });
  const kinds = KINDS.map((k) => h("input", { type: "checkbox", value: k, id: `webhook-kind-${k}` }));
  const attempts = h("input", { type: "number", id: "webhook-attempts", min: 1, max: 20, step: 1, placeholder: "server default" });
  const create = h("button", { type: "submit", class: "primary", id: "create-webhook" }, "Create webhook");
  const form = h(
    "form",
    { class: "grid-form" },
    field("Delivery URL (http:// or https://)", url),
    h("fieldset", {}, h("legend", {}, "Events (none ticked: all)"), ...kinds.map((k) => h("label", { for: k.id, class: "check" }, k, ` ${k.value}`))),
    field("Attempts before a delivery is dead-lettered", attempts),
    h("div", { class: "actions" }, create),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, status, async () => {
      const body = { url: url.value.trim(), kinds: kinds.filter((k) => k.checked).map((k) => k.value) };
      if (attempts.value) body.max_attempts = Number(attempts.value);
      const made = await post("/v1/webhooks", body);
      url.value = attempts.value = "";
      kinds.forEach((k) => (k.checked = false));
      shownOnce(secretOnce, {
        title: `Webhook ${made.webhook_id} created`,
        explain: "Its signing secret is shown once: the receiver checks each delivery's signature with it. Store it now.",
        label: `Signing secret of ${made.webhook_id}`,
        value: made.secret,
        id: "new-webhook-secret",
        dataset: { webhook: made.webhook_id },
      });
      await refresh();
    });
  });

  // ---- list ---------------------------------------------------------------------------------------------
  async function refresh() {
    try {
      const { webhooks } = await get("/v1/webhooks");
      list.replaceChildren(
        table(
          [
            { title: "Webhook", key: "webhook_id", cell: (w) => h("code", {}, w.webhook_id) },
            { title: "URL", key: "url", cell: (w) => w.url },
            { title: "Events", key: "kinds", cell: (w) => (w.kinds.length ? w.kinds.join(", ") : "all") },
            { title: "Attempts", key: "max_attempts", cell: (w) => String(w.max_attempts) },
            { title: "Deliveries", key: "deliveries", cell: (w) => STATES.filter((s) => w.deliveries[s]).map((s) => `${w.deliveries[s]} ${s}`).join(", ") || "none yet" },
            { title: "Created", key: "created", cell: (w) => when(w.created_at) },
            { title: "Actions", key: "actions", cell: (w) => actions(w) },
          ],
          webhooks,
          { caption: "Webhooks of this tenant", empty: "No webhooks yet." },
        ),
      );
    } catch (err) {
      status.error(err);
    }
  }

  function actions(w) {
    const show = h("button", { type: "button", "aria-label": `Deliveries of ${w.webhook_id}`, onclick: () => showDeliveries(w) }, "Deliveries");
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete ${w.webhook_id}` }, "Delete");
    remove.addEventListener("click", () =>
      busy(remove, status, async () => {
        const ok = await confirmDialog({
          title: `Delete webhook ${w.webhook_id}?`,
          body: h("p", {}, `Events stop going to ${w.url}; its deliveries, pending and dead, are deleted with it.`),
          confirm: "Delete webhook",
        });
        if (!ok) return;
        await del(`/v1/webhooks/${seg(w.webhook_id)}`);
        status.ok(`Webhook ${w.webhook_id} deleted.`);
        stopDetail();
        detail.replaceChildren();
        await refresh();
      }),
    );
    return h("div", { class: "row actions-cell" }, show, remove);
  }

  // ---- one webhook's deliveries ----------------------------------------------------------------------------
  function showDeliveries(w) {
    stopDetail();
    const local = statusArea();
    const state = h("select", { id: "delivery-state" }, h("option", { value: "" }, "all"), STATES.map((s) => h("option", { value: s }, s === "dead" ? "dead (dead letters)" : s)));
    const body = h("div", { id: "delivery-list" });
    const load = async () => {
      try {
        const { deliveries } = await get(`/v1/webhooks/${seg(w.webhook_id)}/deliveries?limit=1000${state.value ? `&state=${state.value}` : ""}`);
        body.replaceChildren(
          table(
            [
              { title: "Delivery", key: "delivery_id", cell: (d) => h("code", {}, d.delivery_id) },
              { title: "Event #", key: "seq", cell: (d) => String(d.seq) },
              { title: "State", key: "state", cell: (d) => h("span", { class: d.state === "delivered" ? "state-ok" : d.state === "dead" ? "state-bad" : "" }, d.state) },
              { title: "Attempts", key: "attempts", cell: (d) => String(d.attempts) },
              { title: "Last answer", key: "last", cell: (d) => [d.last_status ? `HTTP ${d.last_status}` : "", d.last_error && d.last_error !== `HTTP ${d.last_status}` ? ` ${d.last_error}` : ""].join("") || "—" },
              { title: "Next try", key: "next", cell: (d) => (d.state === "pending" ? when(d.next_attempt_at) : "—") },
              { title: "", key: "retry", cell: (d) => (d.state === "dead" ? retryButton(d) : "") },
            ],
            deliveries,
            { caption: `Deliveries of ${w.webhook_id}${state.value ? ` (${state.value})` : ""}, refreshed every 2 s`, empty: "No deliveries in this state." },
          ),
        );
      } catch (err) {
        local.error(err);
      }
    };
    const retryButton = (d) => {
      const b = h("button", { type: "button", class: "retry", "aria-label": `Retry ${d.delivery_id}` }, "Retry");
      b.addEventListener("click", () =>
        busy(b, local, async () => {
          const again = await post(`/v1/webhooks/${seg(w.webhook_id)}/deliveries/${seg(d.delivery_id)}/retry`);
          local.ok(`Delivery ${again.delivery_id} of event #${again.seq} queued again (${w.max_attempts} attempt(s) afresh).`);
          await load();
          await refresh();
        }),
      );
      return b;
    };
    state.addEventListener("change", load);
    const cleanup = [];
    poll(load, 2000, cleanup);
    stopDetail = () => cleanup.splice(0).forEach((fn) => fn());
    detail.replaceChildren(section(`Deliveries of ${w.webhook_id}`, h("p", { class: "hint" }, `To ${w.url}`), h("div", { class: "row" }, field("Show", state)), local.el, body));
    state.focus();
  }

  root.append(section("New webhook", form, secretOnce), section("Webhooks", status.el, list), detail);
  poll(refresh, 5000, cleanups);
}
