// Cameras and events: camera status, the live event wall (SSE), unknowns → "promote to person", and the
// attendance table of a day with CSV download. A server without the streams feature answers 404 on
// /v1/streams: the page then says so and stops.
import { del, get, post, streamEvents } from "../api.js";
import { busy, field, fmt, h, poll, section, statusArea, table, when } from "../ui.js";

const WALL_SIZE = 100;

const list = (body, ...keys) => (Array.isArray(body) ? body : keys.map((k) => body?.[k]).find(Array.isArray) ?? []);
const ts = (v) => (typeof v === "number" ? when(v) : v ?? "—");

export async function render(root, { cleanups }) {
  const status = statusArea();
  root.append(status.el);
  let streams;
  try {
    streams = list(await get("/v1/streams"), "streams", "cameras");
  } catch (err) {
    if (err.status === 404) {
      root.append(
        h("div", { class: "card notice", id: "cameras-unavailable", role: "status" },
          h("h2", {}, "Cameras are not available on this server"),
          h("p", {}, "This SecureGate server has no camera streams feature (", h("code", {}, "/v1/streams"), " answered 404). Upgrade the server to register cameras and see their events here."),
        ),
      );
      return;
    }
    status.error(err);
    return;
  }
  const cams = camerasSection(streams, cleanups);
  const wall = wallSection(cleanups);
  root.append(cams, wall, attendanceSection());
}

// ---- cameras ---------------------------------------------------------------------------------------------
function camerasSection(initial, cleanups) {
  const status = statusArea();
  const body = h("div", { id: "camera-list" });
  const show = (streams) =>
    body.replaceChildren(
      table(
        [
          { title: "Camera", key: "name", cell: (s) => s.name ?? s.stream_id ?? s.id },
          { title: "State", key: "state", cell: (s) => h("span", { class: s.connected === false || s.last_error ? "state-bad" : "state-ok" }, String(s.status?.state ?? s.state ?? s.status ?? (s.connected ? "connected" : "—"))) },
          { title: "Frames read / processed / dropped", key: "frames", cell: (s) => { const st = s.status ?? s; return `${st.frames_read ?? "—"} / ${st.frames_processed ?? "—"} / ${st.frames_dropped ?? "—"}`; } },
          { title: "Lag (s)", key: "lag", cell: (s) => fmt((s.status ?? s).lag_s ?? (s.status ?? s).lag, 2) },
          { title: "Last error", key: "error", cell: (s) => String((s.status ?? s).last_error ?? "") },
          { title: "", key: "remove", cell: (s) => removeButton(s) },
        ],
        streams,
        { caption: "Cameras", empty: "No cameras yet." },
      ),
    );
  const id = (s) => s.stream_id ?? s.id;
  const removeButton = (s) => {
    const b = h("button", { type: "button", class: "danger", "aria-label": `Remove camera ${s.name ?? id(s)}` }, "Remove");
    b.addEventListener("click", () =>
      busy(b, status, async () => {
        await del(`/v1/streams/${encodeURIComponent(id(s))}`);
        await refresh();
      }),
    );
    return b;
  };
  const refresh = async () => {
    try {
      show(list(await get("/v1/streams"), "streams", "cameras"));
    } catch (err) {
      status.error(err);
    }
  };
  show(initial);
  poll(refresh, 3000, cleanups);

  const name = h("input", { type: "text", id: "camera-name", required: true, autocomplete: "off" });
  const url = h("input", { type: "text", id: "camera-url", required: true, autocomplete: "off", placeholder: "rtsp://… or http://…/mjpeg" });
  const fps = h("input", { type: "number", id: "camera-fps", min: 0.1, step: 0.1, placeholder: "5" });
  const add = h("button", { type: "submit", class: "primary" }, "Add camera");
  const form = h("form", { class: "grid-form" }, field("Camera name", name), field("Stream URL", url, "Credentials in the URL are stored encrypted and never shown again."), field("Frames per second (optional)", fps), h("div", { class: "actions" }, add));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(add, status, async () => {
      const body = { name: name.value.trim(), url: url.value.trim() };
      if (fps.value) body.fps = Number(fps.value);
      await post("/v1/streams", body);
      name.value = url.value = fps.value = "";
      await refresh();
    });
  });
  return section("Cameras", body, form, status.el);
}

// ---- events ---------------------------------------------------------------------------------------------
function wallSection(cleanups) {
  const status = statusArea();
  const wall = h("ol", { class: "wall", id: "event-wall", "aria-live": "polite", "aria-label": "Latest events, newest first" });
  const live = h("span", { class: "hint", id: "wall-state" }, "connecting…");
  const add = (e) => {
    wall.prepend(eventCard(e, status));
    while (wall.children.length > WALL_SIZE) wall.lastElementChild.remove();
  };
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  (async () => {
    try {
      const recent = list(await get("/v1/events?limit=50", { signal: controller.signal }), "events");
      recent.forEach(add);
    } catch (err) {
      if (err.name !== "AbortError") status.error(err);
    }
    // Reconnect with backoff while the page is open.
    for (let delay = 1000; !controller.signal.aborted; delay = Math.min(delay * 2, 30000)) {
      try {
        live.textContent = "live";
        await streamEvents("/v1/events/stream", ({ data }) => {
          try {
            add(JSON.parse(data));
          } catch {
            /* keep-alive or a non-JSON comment */
          }
        }, controller.signal);
        delay = 1000;
      } catch (err) {
        if (err.name === "AbortError") return;
        status.error(err);
      }
      live.textContent = "reconnecting…";
      await new Promise((r) => setTimeout(r, delay));
    }
  })();
  return section("Events", h("p", {}, "Live: ", live), status.el, wall);
}

function eventCard(e, status) {
  const kind = e.kind ?? e.type ?? "event";
  const unknownId = e.unknown_id ?? (kind === "unknown_seen" ? e.person_id ?? e.id : null);
  const who = kind === "unknown_seen" ? `unknown ${String(unknownId ?? "").slice(0, 8)}` : e.external_id ?? e.person?.external_id ?? e.person_id ?? "—";
  const camera = e.camera_name ?? e.camera ?? e.stream_name ?? e.stream_id ?? "—";
  const parts = [
    h("strong", {}, who),
    ` at ${camera}`,
    h("span", { class: "hint" }, ` ${ts(e.last_seen ?? e.at ?? e.first_seen)}`),
    e.best_similarity !== undefined ? h("span", { class: "hint" }, ` · similarity ${fmt(e.best_similarity, 2)}`) : null,
  ];
  if (unknownId) parts.push(promoteForm(unknownId, status));
  return h("li", { class: `event ${kind}`, dataset: { kind } }, ...parts);
}

function promoteForm(unknownId, status) {
  const externalId = h("input", { type: "text", required: true, autocomplete: "off" });
  const go = h("button", { type: "submit" }, "Promote to person");
  const form = h("form", { class: "row promote" }, field(`External id for unknown ${String(unknownId).slice(0, 8)}`, externalId), go);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(go, status, async () => {
      await post(`/v1/unknowns/${encodeURIComponent(unknownId)}/promote`, { external_id: externalId.value.trim() });
      form.replaceChildren(h("span", { class: "ok" }, `Promoted to ${externalId.value.trim()}.`));
    });
  });
  return form;
}

// ---- attendance ---------------------------------------------------------------------------------------
function attendanceSection() {
  const status = statusArea();
  const date = h("input", { type: "date", id: "attendance-date", required: true, value: new Date().toISOString().slice(0, 10) });
  const load = h("button", { type: "submit" }, "Show");
  const body = h("div", { id: "attendance" });
  const form = h("form", { class: "row" }, field("Day", date), load);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(load, status, async () => {
      const rows = list(await get(`/v1/attendance?date=${encodeURIComponent(date.value)}`), "attendance", "rows", "persons");
      const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
      const csv = [columns, ...rows.map((r) => columns.map((c) => r[c]))].map((line) => line.map(csvCell).join(",")).join("\r\n");
      const link = h("a", { href: URL.createObjectURL(new Blob([csv + "\r\n"], { type: "text/csv" })), download: `attendance-${date.value}.csv`, class: "button" }, "Download CSV");
      body.replaceChildren(
        table(columns.map((c) => ({ title: c, cell: (r) => (/(_in|_out|_seen|^at)$/.test(c) ? ts(r[c]) : String(r[c] ?? "")) })), rows, { caption: `Attendance on ${date.value}`, empty: "Nobody seen that day." }),
        rows.length ? link : null,
      );
    });
  });
  return section("Attendance", form, status.el, body);
}

function csvCell(v) {
  const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
