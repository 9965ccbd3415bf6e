// Cameras and events: camera status, the live event wall (Server-Sent Events), unknowns → "promote to
// person", and the attendance table of a day with CSV download. A server without the streams feature
// answers 404 on /v1/streams: the page then says so and stops.
import { del, get, post, streamEvents } from "../api.js";
import { busy, field, fmt, h, poll, section, statusArea, table, when } from "../ui.js";

const WALL_SIZE = 100;
const BACKLOG_PAGES = 20; // the event log pages oldest first: the wall reads at most this many pages of 1000

export async function render(root, { cleanups }) {
  const status = statusArea();
  root.append(status.el);
  let streams;
  try {
    ({ streams } = await get("/v1/streams"));
  } catch (err) {
    if (err.status === 404) {
      root.append(
        h("div", { class: "card notice", id: "cameras-unavailable", role: "status" },
          h("h2", {}, "Cameras are not available on this server"),
          h("p", {}, "This SecureGate server has no camera streams (", h("code", {}, "/v1/streams"), " answered 404). Upgrade the server to register cameras and see their events here."),
        ),
      );
      return;
    }
    status.error(err);
    return;
  }
  const names = new Map(streams.map((s) => [s.stream_id, s.name])); // camera id → name, for events and attendance
  const cameraName = (id) => names.get(id) ?? id;
  const unknowns = unknownsSection(cleanups);
  root.append(
    camerasSection(streams, names, cleanups),
    wallSection(cameraName, cleanups, () => unknowns.refresh()),
    unknowns.el,
    attendanceSection(cameraName),
  );
}

// ---- cameras ---------------------------------------------------------------------------------------------
function camerasSection(initial, names, cleanups) {
  const status = statusArea();
  const body = h("div", { id: "camera-list" });
  const show = (streams) => {
    streams.forEach((s) => names.set(s.stream_id, s.name));
    body.replaceChildren(
      table(
        [
          { title: "Camera", key: "name", cell: (s) => s.name },
          { title: "Source", key: "source", cell: (s) => h("span", { title: s.url ?? "frames pushed to the API" }, s.source) },
          { title: "State", key: "state", cell: (s) => h("span", { class: s.status.last_error ? "state-bad" : "state-ok" }, s.enabled ? s.status.state : "disabled") },
          { title: "Frames read / processed / dropped", key: "frames", cell: (s) => `${s.status.frames_read ?? "—"} / ${s.status.frames_processed ?? "—"} / ${s.status.frames_dropped ?? "—"}` },
          { title: "Lag (s)", key: "lag", cell: (s) => fmt(s.status.lag_s, 2) },
          { title: "Tracks", key: "tracks", cell: (s) => fmt(s.status.tracks_active) },
          { title: "Last error", key: "error", cell: (s) => s.status.last_error ?? "" },
          { title: "", key: "remove", cell: (s) => removeButton(s) },
        ],
        streams,
        { caption: "Cameras (refreshed every 3 s)", empty: "No cameras yet." },
      ),
    );
  };
  const removeButton = (s) => {
    const b = h("button", { type: "button", class: "danger", "aria-label": `Remove camera ${s.name}` }, "Remove");
    b.addEventListener("click", () =>
      busy(b, status, async () => {
        await del(`/v1/streams/${encodeURIComponent(s.stream_id)}`);
        await refresh();
      }),
    );
    return b;
  };
  const refresh = async () => {
    try {
      show((await get("/v1/streams")).streams);
    } catch (err) {
      status.error(err);
    }
  };
  show(initial);
  poll(refresh, 3000, cleanups);

  const name = h("input", { type: "text", id: "camera-name", required: true, maxlength: 200, autocomplete: "off" });
  const url = h("input", { type: "text", id: "camera-url", autocomplete: "off", placeholder: "rtsp://… · http://…/mjpeg · a video file" });
  const fps = h("input", { type: "number", id: "camera-fps", min: 0.1, max: 30, step: 0.1, placeholder: "5" });
  const add = h("button", { type: "submit", class: "primary", id: "add-camera" }, "Add camera");
  const form = h(
    "form",
    { class: "grid-form" },
    field("Camera name", name),
    field("Stream URL", url, "Leave empty for a camera that pushes its frames to the API. Credentials in a URL are stored encrypted and never shown again."),
    field("Frames per second (optional)", fps),
    h("div", { class: "actions" }, add),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(add, status, async () => {
      const body = { name: name.value.trim() };
      if (url.value.trim()) body.url = url.value.trim();
      if (fps.value) body.fps = Number(fps.value);
      const created = await post("/v1/streams", body);
      name.value = url.value = fps.value = "";
      status.ok(`Camera ${created.name} added (id ${created.stream_id}).`);
      await refresh();
    });
  });
  return section("Cameras", body, form, status.el);
}

// ---- events ---------------------------------------------------------------------------------------------
function wallSection(cameraName, cleanups, onUnknown) {
  const status = statusArea();
  const wall = h("ol", { class: "wall", id: "event-wall", "aria-label": "Latest events, newest first" });
  const live = h("span", { class: "hint", id: "wall-state" }, "connecting…");
  const empty = h("p", { class: "empty" }, "No events yet.");
  let since = 0;
  const add = (e) => {
    since = Math.max(since, e.seq);
    empty.remove();
    wall.prepend(eventCard(e, cameraName));
    while (wall.children.length > WALL_SIZE) wall.lastElementChild.remove();
  };
  const controller = new AbortController();
  cleanups.push(() => controller.abort());
  (async () => {
    try {
      // The log pages oldest first: read to its end, keep the newest for the wall.
      let backlog = [];
      for (let page = 0; page < BACKLOG_PAGES; page++) {
        const { events, next_since } = await get(`/v1/events?since=${since}&limit=1000`, { signal: controller.signal });
        backlog = backlog.concat(events).slice(-WALL_SIZE);
        since = next_since;
        if (events.length < 1000) break;
      }
      backlog.forEach(add);
    } catch (err) {
      if (err.name === "AbortError") return;
      status.error(err);
    }
    // Live from where the backlog ended; reconnect with backoff while the page is open.
    for (let delay = 1000; !controller.signal.aborted; delay = Math.min(delay * 2, 30000)) {
      try {
        live.textContent = "live";
        await streamEvents(`/v1/events/stream?since=${since}`, ({ event, data }) => {
          const e = JSON.parse(data);
          add(e);
          if (event === "unknown_seen") onUnknown();
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
  return section("Events", h("p", {}, "Feed: ", live), status.el, empty, wall);
}

function eventCard(e, cameraName) {
  const known = e.kind === "person_seen";
  const who = known ? e.external_id ?? `person ${e.person_id.slice(0, 8)}` : `unknown ${e.unknown_id ?? ""}`;
  return h(
    "li",
    { class: `event ${e.kind}`, dataset: { kind: e.kind, who: known ? e.external_id ?? e.person_id : e.unknown_id ?? "" } },
    h("strong", {}, who),
    ` at ${cameraName(e.camera)}`,
    h("span", { class: "hint" }, ` · ${when(e.last_seen)}`),
    e.best_similarity !== null && e.best_similarity !== undefined ? h("span", { class: "hint" }, ` · similarity ${fmt(e.best_similarity, 2)}`) : null,
    h("span", { class: "hint" }, ` · tracked over ${e.track_length} frames`),
  );
}

// ---- unknowns -------------------------------------------------------------------------------------------
function unknownsSection(cleanups) {
  const status = statusArea();
  const body = h("div", { id: "unknown-list" });
  const refresh = async () => {
    try {
      const { unknowns } = await get("/v1/unknowns");
      body.replaceChildren(
        table(
          [
            { title: "Anonymous id", key: "unknown_id", cell: (u) => h("code", {}, u.unknown_id) },
            { title: "First seen", key: "created", cell: (u) => when(u.created_at) },
            { title: "Last seen", key: "last_seen", cell: (u) => when(u.last_seen) },
            { title: "Face samples", key: "samples", cell: (u) => String(u.samples) },
            { title: "Promote to person", key: "promote", cell: (u) => promoteForm(u.unknown_id, status, refresh) },
          ],
          unknowns,
          { caption: "Faces seen by the cameras that match nobody", empty: "No unknown faces." },
        ),
      );
    } catch (err) {
      status.error(err);
    }
  };
  poll(refresh, 10000, cleanups);
  return { el: section("Unknowns", status.el, body), refresh };
}

function promoteForm(unknownId, status, done) {
  const externalId = h("input", { type: "text", required: true, maxlength: 256, autocomplete: "off", class: "promote-id" });
  const go = h("button", { type: "submit" }, "Promote");
  const form = h("form", { class: "row promote", dataset: { unknown: unknownId } }, field(`External id for ${unknownId}`, externalId), go);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(go, status, async () => {
      const p = await post(`/v1/unknowns/${encodeURIComponent(unknownId)}/promote`, { external_id: externalId.value.trim() });
      status.ok(`${p.external_id} is now a person with ${p.faces} face(s); ${p.events} event(s) renamed.`);
      await done();
    });
  });
  return form;
}

// ---- attendance ---------------------------------------------------------------------------------------
function attendanceSection(cameraName) {
  const status = statusArea();
  const date = h("input", { type: "date", id: "attendance-date", required: true, value: new Date().toISOString().slice(0, 10) });
  const load = h("button", { type: "submit", id: "show-attendance" }, "Show");
  const body = h("div", { id: "attendance" });
  const form = h("form", { class: "row" }, field("Day (UTC)", date), load);
  let link = null;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(load, status, async () => {
      const { date: day, persons } = await get(`/v1/attendance?date=${encodeURIComponent(date.value)}`);
      const rows = persons.map((p) => ({
        person: p.external_id ?? p.person_id,
        first_in: new Date(p.first_in * 1000).toISOString(),
        first_camera: cameraName(p.first_camera),
        last_out: new Date(p.last_out * 1000).toISOString(),
        last_camera: cameraName(p.last_camera),
        events: p.events,
      }));
      const columns = ["person", "first_in", "first_camera", "last_out", "last_camera", "events"];
      const csv = [columns, ...rows.map((r) => columns.map((c) => r[c]))].map((line) => line.map(csvCell).join(",")).join("\r\n") + "\r\n";
      if (link) URL.revokeObjectURL(link.href);
      link = h("a", { href: URL.createObjectURL(new Blob([csv], { type: "text/csv" })), download: `attendance-${day}.csv`, class: "button", id: "attendance-csv" }, `Download attendance-${day}.csv`);
      body.replaceChildren(
        table(
          [
            { title: "Person", key: "person", cell: (r) => r.person },
            { title: "First in", key: "first_in", cell: (r) => `${when(Date.parse(r.first_in) / 1000)} · ${r.first_camera}` },
            { title: "Last out", key: "last_out", cell: (r) => `${when(Date.parse(r.last_out) / 1000)} · ${r.last_camera}` },
            { title: "Events", key: "events", cell: (r) => String(r.events) },
          ],
          rows,
          { caption: `Attendance on ${day} (UTC)`, empty: "Nobody seen that day." },
        ),
        rows.length ? link : null,
      );
    });
  });
  return section("Attendance", form, status.el, body);
}

function csvCell(v) {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
