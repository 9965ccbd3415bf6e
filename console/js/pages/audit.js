// Audit: the tenant's audit events, oldest first, a page at a time (the API pages by sequence number), and
// the chain's verification with its verdict explained.
import { get } from "../api.js";
import { verdict } from "../audit-verdict.js";
import { busy, field, fmt, h, section, statusArea, table, when } from "../ui.js";

export function render(root) {
  const status = statusArea();
  const list = h("div", { id: "audit-list" });
  const size = h("select", { id: "audit-size" }, [25, 50, 100, 500].map((n) => h("option", { value: String(n), selected: n === 50 }, String(n))));
  const first = h("button", { type: "button" }, "First page");
  const prev = h("button", { type: "button", disabled: true }, "Previous");
  const next = h("button", { type: "button", disabled: true, id: "audit-next" }, "Next");
  const where = h("span", { class: "hint", "aria-live": "polite" });
  let starts = [0]; // the `since` of each page seen, for Previous

  async function load(since, button) {
    await busy(button, status, async () => {
      const limit = Number(size.value);
      const page = await get(`/v1/audit?since=${since}&limit=${limit}`);
      list.replaceChildren(
        table(
          [
            { title: "#", key: "seq", cell: (e) => String(e.seq) },
            { title: "When", key: "at", cell: (e) => when(e.at) },
            { title: "Who", key: "actor", cell: (e) => h("code", {}, e.actor) },
            { title: "Action", key: "action", cell: (e) => e.action },
            { title: "Outcome", key: "outcome", cell: (e) => h("span", { class: e.outcome === "ok" ? "state-ok" : "state-bad" }, e.outcome) },
            { title: "Counts", key: "counts", cell: (e) => Object.entries(e.counts ?? {}).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") },
          ],
          page.events,
          { caption: "Audit events", empty: since ? "No more events." : "No events yet." },
        ),
      );
      where.textContent = page.events.length ? `events ${page.events[0].seq}–${page.events.at(-1).seq}` : "";
      prev.disabled = starts.length < 2;
      next.disabled = page.events.length < limit;
      next.dataset.since = String(page.next_since);
    });
  }

  first.addEventListener("click", () => {
    starts = [0];
    load(0, first);
  });
  next.addEventListener("click", () => {
    starts.push(Number(next.dataset.since));
    load(starts.at(-1), next);
  });
  prev.addEventListener("click", () => {
    starts.pop();
    load(starts.at(-1), prev);
  });
  size.addEventListener("change", () => first.click());

  const verify = h("button", { type: "button", id: "verify-audit" }, "Verify the chain");
  const verifyStatus = statusArea();
  const result = h("div", { id: "audit-verdict" });
  verify.addEventListener("click", () => busy(verify, verifyStatus, async () => result.replaceChildren(verdict(await get("/v1/audit/verify"), "this tenant's audit"))));
  root.append(
    section("Verification", h("p", { class: "hint" }, "Checks every entry's hash link and the checkpoints, whose MAC only the key provider can make."), verify, verifyStatus.el, result),
    section("Events", h("div", { class: "row" }, field("Events per page", size), first, prev, next, where), status.el, list),
  );
  load(0, first);
}
