// The console's shell: sign-in, the page list for the signed-in credential, and hash routing (#/people).
// The credential is never part of the URL: the hash holds only the page name.
import { get } from "./api.js";
import { credential, forget, remember } from "./session.js";
import { busy, field, h, statusArea } from "./ui.js";
import * as admin from "./pages/admin.js";
import * as audit from "./pages/audit.js";
import * as calibration from "./pages/calibration.js";
import * as cameras from "./pages/cameras.js";
import * as identify from "./pages/identify.js";
import * as importPage from "./pages/import.js";
import * as people from "./pages/people.js";
import * as verify from "./pages/verify.js";
import * as webhooks from "./pages/webhooks.js";

const PAGES = [
  { id: "admin", title: "Admin", kinds: ["admin"], page: admin },
  { id: "people", title: "People", kinds: ["tenant"], page: people },
  { id: "identify", title: "Identify", kinds: ["tenant"], page: identify },
  { id: "verify", title: "Verify", kinds: ["tenant", "admin"], page: verify },
  { id: "import", title: "Import", kinds: ["tenant"], page: importPage },
  { id: "cameras", title: "Cameras", kinds: ["tenant"], page: cameras },
  { id: "webhooks", title: "Webhooks", kinds: ["tenant"], page: webhooks },
  { id: "audit", title: "Audit", kinds: ["tenant"], page: audit },
  { id: "calibration", title: "Calibration", kinds: ["tenant", "admin"], page: calibration },
];

const main = document.getElementById("page");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
/** What a page must undo when it is left (timers, camera, event feed). A page that finishes setting up
 * after it was left (an await that resolved late) has its cleanups run at once. */
class Cleanups {
  #fns = [];
  #closed = false;

  push(fn) {
    if (this.#closed) run(fn);
    else this.#fns.push(fn);
  }

  close() {
    this.#closed = true;
    this.#fns.splice(0).forEach(run);
  }
}

function run(fn) {
  try {
    fn();
  } catch (err) {
    console.error(err);
  }
}

let cleanups = new Cleanups();

function leavePage() {
  cleanups.close();
  cleanups = new Cleanups();
}

function pagesFor(kind) {
  return PAGES.filter((p) => p.kinds.includes(kind));
}

function render() {
  leavePage();
  const cred = credential();
  if (!cred) {
    nav.replaceChildren();
    who.replaceChildren();
    if (location.hash) history.replaceState(null, "", location.pathname);
    main.replaceChildren(signInPage());
    return;
  }
  const pages = pagesFor(cred.kind);
  const wanted = location.hash.replace(/^#\/?/, "");
  const current = pages.find((p) => p.id === wanted) ?? pages[0];
  nav.replaceChildren(
    h("ul", {}, pages.map((p) => h("li", {}, h("a", { href: `#/${p.id}`, "aria-current": p === current ? "page" : false, id: `nav-${p.id}` }, p.title)))),
  );
  const keyId = cred.kind === "tenant" ? cred.token.split("_").slice(0, 2).join("_") : null;
  who.replaceChildren(
    h("span", { id: "signed-in-as" }, cred.kind === "admin" ? adminLabel(cred.token) : `Tenant key ${keyId}`),
    h("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"),
  );
  document.title = `${current.title} · SecureGate`;
  const root = h("div", { class: "page", id: `page-${current.id}` }, h("h1", {}, current.title));
  main.replaceChildren(root);
  current.page.render(root, { cleanups, kind: cred.kind });
}

/** A named admin key (sgadmin_<name>_<secret>) by its name; the first-start token as "bootstrap". */
function adminLabel(token) {
  const parts = token.split("_");
  return `Admin key ${parts.length === 3 && parts[0] === "sgadmin" ? parts[1] : "bootstrap"}`;
}

function navigate() {
  render();
  main.focus(); // keyboard and screen-reader users start at the new page, not on a vanished link
}

function signOut() {
  forget();
  leavePage();
  history.replaceState(null, "", location.pathname);
  render();
  document.getElementById("credential")?.focus();
}

function signInPage() {
  const tenant = h("input", { type: "radio", name: "kind", value: "tenant", id: "kind-tenant", checked: true });
  const adminKind = h("input", { type: "radio", name: "kind", value: "admin", id: "kind-admin" });
  const secret = h("input", { type: "password", id: "credential", name: "credential", required: true, autocomplete: "off", spellcheck: false });
  const submit = h("button", { type: "submit", class: "primary", id: "sign-in" }, "Sign in");
  const status = statusArea();
  const form = h(
    "form",
    { class: "card signin", id: "sign-in-form" },
    h("h1", {}, "Sign in"),
    h(
      "fieldset",
      {},
      h("legend", {}, "Sign in with"),
      h("div", { class: "row" }, h("label", { for: "kind-tenant" }, tenant, " a tenant API key"), h("label", { for: "kind-admin" }, adminKind, " an admin key")),
    ),
    field(
      "Key or token",
      secret,
      "The first admin key is printed by `securegate serve` on first start (and kept in its data dir, admin_token); " +
        "named ones come from `securegate admin-keys create`. " +
        "Kept in this tab only (sessionStorage) and sent as the bearer header; signing out forgets it.",
    ),
    h("div", { class: "actions" }, submit),
    status.el,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const kind = adminKind.checked ? "admin" : "tenant";
    const token = secret.value.trim();
    busy(submit, status, async () => {
      // A cheap call that only this kind of credential may make proves it before it is kept.
      await get(kind === "admin" ? "/v1/tenants" : "/v1/persons?limit=1", { token });
      remember(kind, token);
      secret.value = "";
      history.replaceState(null, "", `#/${pagesFor(kind)[0].id}`);
      render();
    });
  });
  queueMicrotask(() => secret.focus());
  return form;
}

window.addEventListener("hashchange", navigate);
render();
