// Cameras and events: camera state, lag and drops, the live event wall (Server-Sent Events, resumed with
// Last-Event-ID) with "not this person" on its events, unknowns → "promote to person", and the attendance
// table of a day with CSV download. A server without the streams feature
// answers 404 on /v1/streams: the page then says so and stops.
import { del, fileToBase64, get, post, streamEvents } from "../api.js";
import { findPerson, personName, rejectFor } from "../corrections.js";
import { busy, field, fmt, h, poll, section, statusArea, table, when } from "../ui.js";

const WALL_SIZE = 100;
const BACKLOG_PAGES = 20; // the event log pages oldest first: the wall reads at most this many pages of 1000
// How long one connection of the live feed lasts before the console renews it (the stream's max_s): the
// console's own URL may set it (`/console/?feed_max_s=300`); without it the server's default (1 h) holds.
const FEED_MAX_S = new URLSearchParams(location.search).get("feed_max_s");

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
  let wall = null;
  const unknowns = unknownsSection(cleanups, () => wall.reload());
  wall = wallSection(cameraName, cleanups, () => unknowns.refresh());
  root.append(camerasSection(streams, names, cleanups), wall.el, unknowns.el, attendanceSection(cameraName));
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
      status.clearError(); // a refresh that failed (server restarting, network) is over
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
// The wall holds the events as the API has them now: a correction that renames events (a promotion, a merge)
// re-reads them, so no card keeps a name the server has replaced. The live feed is Server-Sent Events; when
// it drops (server restart, network, the stream's max_s) it reconnects with Last-Event-ID and misses nothing.
function wallSection(cameraName, cleanups, onUnknown) {
  const status = statusArea();
  const wall = h("ol", { class: "wall", id: "event-wall", "aria-label": "Latest events, newest first" });
  const live = h("span", { id: "wall-state", dataset: { connections: "0" } }, "connecting…");
  const empty = h("p", { class: "empty" }, "No events yet.");
  const shown = new Map(); // seq → event, the newest WALL_SIZE
  let lastId = null; // the newest seq seen on the feed (its SSE id)

  const cards = new Map(); // seq → {json, who, card}: a card changes only when its event did
  const render = () => {
    const newest = [...shown.values()].sort((a, b) => b.seq - a.seq).slice(0, WALL_SIZE);
    shown.clear();
    newest.forEach((e) => shown.set(e.seq, e));
    if (newest.length) empty.remove();
    const els = newest.map((e) => {
      const json = JSON.stringify(e);
      const who = `${e.person_id ?? ""}|${e.unknown_id ?? ""}`;
      const known = cards.get(e.seq);
      if (known?.json === json) return known.card.el;
      // A track still open updates its event (last seen, frames): the text follows, while a correction form
      // the user opened on it stays as it is. A renamed event gets a new card.
      if (known?.who === who) known.card.update(e);
      else cards.set(e.seq, { json, who, card: eventCard(e, cameraName, corrected) });
      cards.get(e.seq).json = json;
      return cards.get(e.seq).card.el;
    });
    for (const seq of cards.keys()) if (!shown.has(seq)) cards.delete(seq);
    // Cards that stay are not moved (a form open in one keeps its focus): new ones are inserted around them.
    els.forEach((el, i) => {
      if (wall.children[i] !== el) wall.insertBefore(el, wall.children[i] ?? null);
    });
    while (wall.children.length > els.length) wall.lastElementChild.remove();
  };
  const add = (e) => {
    shown.set(e.seq, e);
    render();
  };
  const controller = new AbortController();
  cleanups.push(() => controller.abort());

  /** The newest events from the log (it pages oldest first: read to its end, keep the newest). */
  async function reload() {
    let since = 0;
    let backlog = [];
    for (let page = 0; page < BACKLOG_PAGES; page++) {
      const { events, next_since } = await get(`/v1/events?since=${since}&limit=1000`, { signal: controller.signal });
      backlog = backlog.concat(events).slice(-WALL_SIZE);
      since = next_since;
      if (events.length < 1000) break;
    }
    shown.clear();
    backlog.forEach((e) => shown.set(e.seq, e));
    render();
    return since;
  }
  async function corrected(message) {
    status.ok(message);
    await reload();
    await onUnknown();
  }

  (async () => {
    let since = 0;
    try {
      since = await reload();
    } catch (err) {
      if (err.name === "AbortError") return;
      status.error(err);
    }
    lastId = since;
    let connections = 0;
    for (let delay = 1000; !controller.signal.aborted; delay = Math.min(delay * 2, 30000)) {
      try {
        const opened = streamEvents(`/v1/events/stream?since=${since}${FEED_MAX_S ? `&max_s=${encodeURIComponent(FEED_MAX_S)}` : ""}`, ({ event, data, id }) => {
          if (event === "error") throw Object.assign(new Error(JSON.parse(data).error.message), JSON.parse(data).error);
          add(JSON.parse(data));
          if (id !== null) lastId = Number(id);
          if (event === "unknown_seen") onUnknown();
        }, controller.signal, connections ? lastId : null, () => {
          live.dataset.connections = String(++connections);
          live.dataset.lastEventId = String(lastId); // the Last-Event-ID this connection resumed from
          live.textContent = connections > 1 ? `live (reconnected from event ${lastId})` : "live";
          status.clearError();
        });
        await opened;
        delay = 1000;
      } catch (err) {
        if (err.name === "AbortError") return;
        status.error(err);
      }
      live.textContent = `reconnecting… (last event ${lastId})`;
      await new Promise((r) => setTimeout(r, delay));
    }
  })();
  return { el: section("Events", h("p", {}, "Feed: ", live), status.el, empty, wall), reload };
}

function eventCard(e, cameraName, corrected) {
  // A promoted unknown's events name the person and keep the anonymous id they had.
  const named = Boolean(e.person_id);
  const who = named ? e.external_id ?? `person ${e.person_id.slice(0, 8)}` : `unknown ${e.unknown_id ?? ""}`;
  const summary = h("span", { class: "summary" });
  const update = (ev) =>
    summary.replaceChildren(...[
      h("strong", {}, who),
      named && ev.unknown_id ? h("span", { class: "hint" }, ` (was unknown ${ev.unknown_id})`) : null,
      ` at ${cameraName(ev.camera)}`,
      h("span", { class: "hint" }, ` · ${when(ev.last_seen)}`),
      ev.best_similarity !== null && ev.best_similarity !== undefined ? h("span", { class: "hint" }, ` · similarity ${fmt(ev.best_similarity, 2)}`) : null,
      h("span", { class: "hint" }, ` · tracked over ${ev.track_length} frames`),
    ].filter(Boolean));
  update(e);
  const el = h(
    "li",
    { class: `event ${e.kind}`, dataset: { kind: e.kind, seq: String(e.seq), who: named ? e.external_id ?? e.person_id : e.unknown_id ?? "" } },
    summary,
    " ",
    named ? notThisPersonButton(e, who, corrected) : notAnyoneForm(e, corrected),
  );
  return { el, update };
}

/** "Not <name>" on a person's event. The event keeps no face (only who and how similar), so the API takes a
 * photo of the face instead: the button asks for one. */
function notThisPersonButton(e, who, corrected) {
  const status = statusArea();
  const input = h("input", { type: "file", accept: "image/*", class: "file-inline", "aria-label": `A photo of the face that is not ${who}` });
  const open = h("button", { type: "button", class: "not-them", dataset: { seq: String(e.seq) } }, `Not ${who}…`);
  const ask = h("div", { class: "inline-ask", hidden: true },
    h("p", { class: "hint" }, `A camera event keeps no face, only who and how similar: choose a photo of the face that was taken for ${who}.`),
    input, status.el);
  open.addEventListener("click", () => {
    ask.hidden = !ask.hidden;
    if (!ask.hidden) input.focus();
  });
  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file) return;
    busy(open, status, async () => {
      const added = await rejectFor({ person_id: e.person_id, external_id: e.external_id }, { image: await fileToBase64(file) }, { what: `The face in ${file.name}` });
      input.value = "";
      if (added) await corrected(`${added.rejection_ids.length} rejection(s) added to ${who}.`);
    });
  });
  return h("span", { class: "correct" }, open, ask);
}

/** On an unknown's event: its camera samples become rejections of a person it must never match. */
function notAnyoneForm(e, corrected) {
  if (!e.unknown_id) return null;
  const status = statusArea();
  const target = h("input", { type: "text", autocomplete: "off", required: true, class: "not-id" });
  const go = h("button", { type: "submit" }, "Never match");
  const form = h("form", { class: "row not-them-form", dataset: { unknown: e.unknown_id } },
    field(`Unknown ${e.unknown_id} is not (external id or person id)`, target), go, status.el);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    busy(go, status, async () => {
      const person = await findPerson(target.value);
      const added = await rejectFor(person, { unknown_id: e.unknown_id }, { what: `Unknown ${e.unknown_id}'s camera samples` });
      if (added) await corrected(`${added.rejection_ids.length} rejection(s) of ${personName(person)} from unknown ${e.unknown_id}.`);
    });
  });
  return h("details", { class: "correct" }, h("summary", {}, "Not someone…"), form);
}

// ---- unknowns -------------------------------------------------------------------------------------------
function unknownsSection(cleanups, onPromoted) {
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
            { title: "Promote to person", key: "promote", cell: (u) => promoteForm(u.unknown_id, status, async () => {
              await refresh();
              await onPromoted();
            }) },
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
      await done(); // the wall re-reads its events: the renamed ones name the person now
      status.ok(`${p.external_id} is now a person with ${p.faces} face(s); ${p.events} event(s) renamed.`);
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
