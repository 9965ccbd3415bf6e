// Bulk import: a folder with one sub-folder per person (the sub-folder's name is the external id), or a CSV
// of `external_id,path` rows with the photos it names, sent through POST /v1/persons/import a few photos per
// call. Every photo has a row that follows it (waiting, sending, enrolled, skipped, refused with the API's
// reason and, for several faces, their boxes). Running it again is safe: the server skips each photo already
// enrolled for its person (same external id, same bytes).
import { fileToBase64, post } from "../api.js";
import { busy, errorBox, field, h, section, statusArea } from "../ui.js";

const PHOTO = /\.(jpe?g|png|webp|bmp|tiff?|gif)$/i;
const BATCH_PHOTOS = 8; // small calls: each row moves soon after its photo is sent
const BATCH_BYTES = 6 * 1024 * 1024; // raw bytes per call; base64 adds a third, the server's body limit is 20 MiB
const MAX_TRIES = 5;

export function render(root) {
  const status = statusArea();
  const rows = h("tbody", { id: "import-rows" });
  const bar = h("progress", { id: "import-progress", max: 1, value: 0, "aria-label": "Photos imported" });
  const counts = h("p", { id: "import-counts", "aria-live": "polite" }, "Nothing chosen yet.");
  let photos = []; // {externalId, file, row}

  // ---- what to import ---------------------------------------------------------------------------------------
  const folder = h("input", { type: "file", id: "import-folder", webkitdirectory: true, multiple: true });
  const csv = h("input", { type: "file", id: "import-csv", accept: ".csv,text/csv" });
  const csvPhotos = h("input", { type: "file", id: "import-csv-photos", accept: "image/*", multiple: true, webkitdirectory: true });
  folder.addEventListener("change", () => choose(fromFolder([...folder.files])));
  const readCsv = async () => {
    if (!csv.files[0]) return;
    try {
      choose(fromCsv(await csv.files[0].text(), [...csvPhotos.files]));
    } catch (err) {
      status.error(err);
    }
  };
  csv.addEventListener("change", readCsv);
  csvPhotos.addEventListener("change", readCsv);

  function choose(chosen) {
    status.clear();
    photos = chosen.map((p) => ({ ...p, row: photoRow(p) }));
    rows.replaceChildren(...photos.map((p) => p.row.el));
    const sendable = photos.filter((p) => p.file);
    bar.max = Math.max(sendable.length, 1);
    bar.value = 0;
    counts.textContent = `${sendable.length} photo(s) of ${new Set(sendable.map((p) => p.externalId)).size} person(s) ready` +
      (sendable.length < photos.length ? `; ${photos.length - sendable.length} named in the CSV but not chosen.` : ".");
    start.disabled = !sendable.length;
  }

  // ---- sending --------------------------------------------------------------------------------------------
  const start = h("button", { type: "button", class: "primary", id: "start-import", disabled: true }, "Import");
  start.addEventListener("click", () =>
    busy(start, status, async () => {
      const tally = { enrolled: 0, skipped: 0, refused: 0 };
      const sendable = photos.filter((p) => p.file);
      sendable.forEach((p) => p.row.set("waiting", "Waiting"));
      bar.value = 0;
      for (const batch of batches(photos)) {
        batch.forEach((p) => p.row.set("sending", "Sending…"));
        const items = await Promise.all(batch.map(async (p) => ({ external_id: p.externalId, image: await fileToBase64(p.file) })));
        const answer = await withRetry(() => post("/v1/persons/import", { items }));
        for (const item of answer.items) {
          const p = batch[item.index];
          tally[item.status] += 1;
          p.row.done(item, p.file);
        }
        bar.value += batch.length;
        counts.textContent = `${bar.value} of ${sendable.length} photo(s): ${tally.enrolled} enrolled, ${tally.skipped} skipped (already enrolled), ${tally.refused} refused.`;
      }
      status.ok(`Import finished: ${tally.enrolled} enrolled, ${tally.skipped} skipped, ${tally.refused} refused. Running it again skips what is enrolled.`);
      start.textContent = "Import again";
    }),
  );

  root.append(
    section(
      "Photos to import",
      h("p", {}, "Either a folder holding one sub-folder per person (the sub-folder's name becomes the person's external id), or a CSV with the columns ",
        h("code", {}, "external_id,path"), " and the folder of the photos it names. A person who does not exist yet is created."),
      h("div", { class: "grid-form" },
        field("A folder, one sub-folder per person", folder),
        h("fieldset", {}, h("legend", {}, "Or a CSV"), field("CSV file (external_id,path)", csv), field("The folder its paths start from", csvPhotos))),
      h("div", { class: "row" }, start, bar),
      counts,
      status.el,
    ),
    section(
      "Each photo",
      h("div", { class: "table-wrap" },
        h("table", {}, h("caption", {}, "Each photo's outcome, as the API answered it"),
          h("thead", {}, h("tr", {}, ["Person", "Photo", "Outcome", "Details"].map((t) => h("th", { scope: "col" }, t)))), rows)),
    ),
  );
}

/** (external id, file) for every photo under a sub-folder of the chosen folder (its direct files are ignored). */
function fromFolder(files) {
  return files
    .map((file) => ({ file, parts: (file.webkitRelativePath || file.name).split("/") }))
    .filter(({ file, parts }) => parts.length >= 3 && PHOTO.test(file.name))
    .sort((a, b) => a.file.webkitRelativePath.localeCompare(b.file.webkitRelativePath))
    .map(({ file, parts }) => ({ externalId: parts[1], file, path: parts.slice(1).join("/") }));
}

/** CSV rows matched to the chosen photos by their path under the chosen folder (or, failing that, file name). */
function fromCsv(text, files) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim());
  const header = splitCsv(lines.shift() ?? "");
  const [idCol, pathCol] = [header.indexOf("external_id"), header.indexOf("path")];
  if (idCol < 0 || pathCol < 0) throw Object.assign(new Error("the CSV's header must name the columns external_id,path"), { code: "invalid_csv" });
  const byPath = new Map(files.map((f) => [f.webkitRelativePath.split("/").slice(1).join("/") || f.name, f]));
  const byName = new Map(files.map((f) => [f.name, f]));
  return lines.map((line) => {
    const cells = splitCsv(line);
    const path = cells[pathCol].replace(/^\.\//, "");
    const file = byPath.get(path) ?? byName.get(path.split("/").pop());
    return { externalId: cells[idCol], file, path };
  });
}

/** One CSV line's cells (RFC 4180 quoting). */
function splitCsv(line) {
  const cells = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted && c === '"' && line[i + 1] === '"') cell += line[++i];
    else if (c === '"') quoted = !quoted;
    else if (c === "," && !quoted) cells.push(cell), (cell = "");
    else cell += c;
  }
  cells.push(cell);
  return cells.map((c) => c.trim());
}

/** Up to BATCH_PHOTOS photos and about BATCH_BYTES per call; photos the CSV named but none was chosen stay out. */
function* batches(photos) {
  let batch = [];
  let used = 0;
  for (const p of photos) {
    if (!p.file) continue;
    if (batch.length && (batch.length >= BATCH_PHOTOS || used + p.file.size > BATCH_BYTES)) {
      yield batch;
      batch = [];
      used = 0;
    }
    batch.push(p);
    used += p.file.size;
  }
  if (batch.length) yield batch;
}

/** The call again after the server's Retry-After when it is at capacity or rate-limits the tenant. (No
 * library here: the console has no build step; the Python client uses tenacity for the same rule.) */
async function withRetry(call) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const again = (err.code === "overloaded" || err.code === "rate_limited") && attempt < MAX_TRIES;
      if (!again) throw err;
      await new Promise((r) => setTimeout(r, 1000 * (err.details?.retry_after_s ?? attempt)));
    }
  }
}

const OUTCOME = { enrolled: "Enrolled", skipped: "Skipped: already enrolled", refused: "Refused" };

function photoRow({ externalId, file, path }) {
  const outcome = h("td", { dataset: { col: "outcome" } });
  const details = h("td", { dataset: { col: "details" } });
  const el = h("tr", { dataset: { path } }, h("td", { dataset: { col: "person" } }, externalId), h("td", { dataset: { col: "photo" } }, path), outcome, details);
  const set = (state, text) => {
    el.dataset.state = state;
    outcome.textContent = text;
  };
  if (file) set("waiting", "Waiting");
  else {
    set("missing", "Not chosen");
    details.textContent = "the CSV names this photo, but it is not among the chosen files";
  }
  return {
    el,
    set,
    done(item, photo) {
      set(item.status, OUTCOME[item.status] ?? item.status);
      if (item.status === "refused") {
        const { code, message, ...more } = item.error; // the API's error body, shown as errorBox shows any refusal
        details.replaceChildren(...[errorBox({ code, message, details: more }), more.faces ? boxedPhoto(photo, more.faces) : null].filter(Boolean));
      }
      else details.replaceChildren(h("code", {}, item.face_id ?? ""), item.quality !== null && item.quality !== undefined ? ` quality ${item.quality.toFixed(2)}` : "");
    },
  };
}

/** The refused photo with the boxes of the faces found (multiple_faces), numbered largest first. */
function boxedPhoto(file, faces) {
  const img = h("img", { alt: `${file.name} with the ${faces.length} faces found boxed` });
  const url = URL.createObjectURL(file);
  img.src = url;
  const frame = h("div", { class: "frame small" }, img);
  img.addEventListener("load", () => {
    URL.revokeObjectURL(url);
    faces.forEach(([x1, y1, x2, y2], i) => {
      const box = h("div", { class: "box unknown" }, h("span", { class: "tag" }, String(i)));
      box.style.left = `${(100 * x1) / img.naturalWidth}%`;
      box.style.top = `${(100 * y1) / img.naturalHeight}%`;
      box.style.width = `${(100 * (x2 - x1)) / img.naturalWidth}%`;
      box.style.height = `${(100 * (y2 - y1)) / img.naturalHeight}%`;
      frame.append(box);
    });
  }, { once: true });
  return frame;
}
