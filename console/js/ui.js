// Small DOM helpers. Text always goes in as text nodes (never innerHTML), so names from the API cannot
// inject markup.

let nextId = 0;
export const uid = (prefix) => `${prefix}-${++nextId}`;

/** h("button", {class: "primary", onclick}, "Save") → element. Props starting with "on" are listeners. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** A labelled control: <label for=id>text</label> + the control (which gets the id). */
export function field(text, control, hint) {
  control.id ||= uid("f");
  const parts = [h("label", { for: control.id }, text), control];
  if (hint) {
    const hintEl = h("small", { class: "hint", id: uid("hint") }, hint);
    control.setAttribute("aria-describedby", hintEl.id);
    parts.push(hintEl);
  }
  return h("div", { class: "field" }, ...parts);
}

export function section(title, ...children) {
  const id = uid("s");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

// The enrolment quality gates (tenancy/quality.py) in words; the gate's own name and numbers follow.
const REASON_TEXT = {
  face_size: "face too small",
  blur: "too blurry",
  pose: "head turned too far",
  det_score: "face not clear enough",
  exposure: "face too dark",
};

function detailLines(err) {
  const d = err.details ?? {};
  const lines = [];
  for (const r of d.reasons ?? []) {
    const what = REASON_TEXT[r.gate] ?? r.gate;
    lines.push(`${what} (${r.gate}: ${fmt(r.value, 1)}, limit ${fmt(r.limit, 1)})`);
  }
  for (const p of d.problems ?? []) lines.push(`${p.field || "body"}: ${p.problem}`);
  if (Array.isArray(d.faces)) lines.push(`${d.faces.length} faces found`);
  if (d.retry_after_s !== undefined) lines.push(`retry after ${d.retry_after_s} s`);
  return lines;
}

/** The API's error as it came: its code and its message, plus the details it gave (gates, fields). */
export function errorBox(err) {
  if (err?.code === undefined) {
    return h("div", { class: "error", role: "alert" }, h("strong", { class: "code" }, "error"), " ", String(err?.message ?? err));
  }
  const lines = detailLines(err);
  return h(
    "div",
    { class: "error", role: "alert", dataset: { code: err.code } },
    h("strong", { class: "code" }, err.code),
    " ",
    h("span", { class: "message" }, err.message),
    lines.length ? h("ul", { class: "reasons" }, lines.map((l) => h("li", {}, l))) : null,
  );
}

/** A secret the API shows once (an API key, an admin key, a webhook's signing secret), selected for copying,
 * with a Copy button and one that hides it; `into` is the container it replaces the content of. */
export function shownOnce(into, { title, explain, label, value, id, dataset }) {
  const input = h("input", { type: "text", id, readOnly: true, value, class: "secret", spellcheck: false });
  const copy = h("button", {
    type: "button",
    onclick: async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(value);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Select and copy it";
      }
    },
  }, "Copy");
  into.replaceChildren(
    h("div", { class: "shown-once", role: "status", dataset }, h("h3", {}, title), h("p", {}, explain), field(label, input),
      h("div", { class: "actions" }, copy, h("button", { type: "button", onclick: () => into.replaceChildren() }, "I have stored it, hide it"))),
  );
  input.focus();
  input.select();
}

/** A live region that shows either nothing, a status line or an error box. */
export function statusArea() {
  const el = h("div", { class: "status", "aria-live": "polite" });
  return {
    el,
    clear: () => el.replaceChildren(),
    info: (text) => el.replaceChildren(h("p", { class: "info" }, text)),
    ok: (text) => el.replaceChildren(h("p", { class: "ok" }, text)),
    error: (err) => el.replaceChildren(errorBox(err)),
    clearError: () => el.querySelector(".error") && el.replaceChildren(),
  };
}

/** Runs `work` with the button (if any) disabled and marked busy; errors go to `status`. */
export async function busy(button, status, work) {
  button?.setAttribute("aria-busy", "true");
  if (button) button.disabled = true;
  status?.clear();
  try {
    return await work();
  } catch (err) {
    if (err?.name === "AbortError") return undefined;
    if (status) status.error(err);
    else throw err;
    return undefined;
  } finally {
    if (button) button.disabled = false;
    button?.removeAttribute("aria-busy");
  }
}

export function fmt(value, digits = 3) {
  if (typeof value !== "number") return String(value ?? "—");
  return Number.isInteger(value) ? String(value) : value.toFixed(digits);
}

export function when(seconds) {
  if (typeof seconds !== "number") return "—";
  return new Date(seconds * 1000).toLocaleString();
}

export function table(columns, rows, { caption, empty = "Nothing yet." } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.title)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { dataset: { col: c.key ?? c.title } }, c.cell(row)))))),
    ),
  );
}

/** A modal confirmation (<dialog>): resolves true only when the user presses the confirm button. */
export function confirmDialog({ title, body, confirm = "Confirm", danger = true }) {
  return new Promise((resolve) => {
    const titleId = uid("dlg");
    const ok = h("button", { type: "button", class: danger ? "danger" : "primary", value: "ok" }, confirm);
    const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      ...(Array.isArray(body) ? body : [body]),
      h("div", { class: "actions" }, cancel, ok),
    );
    const finish = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    ok.addEventListener("click", () => finish(true));
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** setInterval that also runs once now, stops on the page's cleanup, and never overlaps itself. */
export function poll(fn, ms, cleanups) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await fn();
    } finally {
      running = false;
    }
  };
  tick();
  const timer = setInterval(tick, ms);
  cleanups.push(() => clearInterval(timer));
}
