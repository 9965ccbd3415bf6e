// People: find persons by external id, create them, enrol photos (file, drop, camera), delete faces and persons.
import { del, fileToBase64, get, post } from "../api.js";
import { photoPicker, previewImage } from "../photos.js";
import { busy, confirmDialog, field, fmt, h, section, statusArea, table, when } from "../ui.js";

const PAGE = 100;
const SEARCH_PAGES = 50; // the API pages by cursor only; a search reads at most this many pages

export function render(root, { cleanups }) {
  const detail = h("div", { id: "person-detail" });
  const listStatus = statusArea();
  const listEl = h("div", { id: "person-list" });
  const more = h("button", { type: "button", hidden: true, id: "more-persons" }, "Load more");
  let cursor = null;
  let shown = [];

  // ---- list and search ---------------------------------------------------------------------------------
  const query = h("input", { type: "search", id: "person-query", autocomplete: "off" });
  const find = h("button", { type: "submit" }, "Search");
  const searchForm = h("form", { class: "row search", role: "search" }, field("Find by external id", query), find);
  searchForm.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(find, listStatus, () => (query.value.trim() ? search(query.value.trim()) : loadFirst()));
  });

  function showList(persons, caption) {
    shown = persons;
    listEl.replaceChildren(
      table(
        [
          { title: "External id", key: "external_id", cell: (p) => p.external_id ?? "—" },
          { title: "Person id", key: "person_id", cell: (p) => h("code", {}, p.person_id) },
          { title: "Created", key: "created", cell: (p) => when(p.created_at) },
          { title: "", key: "open", cell: (p) => h("button", { type: "button", "aria-label": `Open ${p.external_id ?? p.person_id}`, onclick: () => open(p.person_id) }, "Open") },
        ],
        persons,
        { caption, empty: "No persons found." },
      ),
    );
  }

  async function loadFirst() {
    const page = await get(`/v1/persons?limit=${PAGE}`);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    showList(page.persons, "Persons");
  }

  more.addEventListener("click", () =>
    busy(more, listStatus, async () => {
      const page = await get(`/v1/persons?limit=${PAGE}&cursor=${encodeURIComponent(cursor)}`);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      showList([...shown, ...page.persons], "Persons");
    }),
  );

  async function search(text) {
    const needle = text.toLowerCase();
    const found = [];
    let next = null;
    let pages = 0;
    do {
      const page = await get(`/v1/persons?limit=1000${next ? `&cursor=${encodeURIComponent(next)}` : ""}`);
      found.push(...page.persons.filter((p) => (p.external_id ?? "").toLowerCase().includes(needle)));
      next = page.next_cursor;
    } while (next && ++pages < SEARCH_PAGES);
    more.hidden = true;
    showList(found, `Persons whose external id contains “${text}”${next ? " (first pages only)" : ""}`);
  }

  // ---- create --------------------------------------------------------------------------------------------
  const externalId = h("input", { type: "text", id: "new-external-id", maxlength: 256, autocomplete: "off" });
  const metadata = h("textarea", { id: "new-metadata", rows: 2, spellcheck: false, placeholder: '{"team": "blue"}' });
  const create = h("button", { type: "submit", class: "primary", id: "create-person" }, "Create person");
  const createStatus = statusArea();
  const createForm = h(
    "form",
    { class: "grid-form" },
    field("External id", externalId, "Your own identifier for the person (shown on Identify)"),
    field("Metadata (JSON, optional)", metadata),
    h("div", { class: "actions" }, create),
    createStatus.el,
  );
  createForm.addEventListener("submit", (e) => {
    e.preventDefault();
    busy(create, createStatus, async () => {
      const body = { external_id: externalId.value.trim() || null, metadata: {} };
      if (metadata.value.trim()) {
        try {
          body.metadata = JSON.parse(metadata.value);
        } catch (err) {
          throw Object.assign(new Error(`metadata is not valid JSON: ${err.message}`), { code: "invalid_json" });
        }
      }
      const { person_id } = await post("/v1/persons", body);
      externalId.value = "";
      metadata.value = "";
      createStatus.ok(`Created ${body.external_id ?? person_id}.`);
      await loadFirst();
      await open(person_id);
    });
  });

  // ---- one person ------------------------------------------------------------------------------------------
  async function open(personId) {
    const status = statusArea();
    detail.replaceChildren(section("Person", status.el));
    try {
      showPerson(await get(`/v1/persons/${encodeURIComponent(personId)}`));
    } catch (err) {
      status.error(err);
    }
  }

  let stopCamera = () => {};
  cleanups.push(() => stopCamera());

  function showPerson(person) {
    stopCamera(); // a re-render drops the old camera preview: turn its camera off first
    const cameraCleanups = [];
    stopCamera = () => cameraCleanups.splice(0).forEach((fn) => fn());
    const label = person.external_id ?? person.person_id;
    const status = statusArea();
    const faceIndex = h("input", { type: "number", min: 0, step: 1, id: "face-index", inputmode: "numeric", class: "narrow" });
    const lastPhoto = h("div", { class: "last-photo" });
    const enrol = async (file) => {
      lastPhoto.replaceChildren(previewImage(file, `Photo being enrolled for ${label}`));
      status.info(`Enrolling ${file.name}…`);
      try {
        const body = { image: await fileToBase64(file) };
        if (faceIndex.value !== "") body.face_index = Number(faceIndex.value);
        const face = await post(`/v1/persons/${encodeURIComponent(person.person_id)}/faces`, body);
        const fresh = await get(`/v1/persons/${encodeURIComponent(person.person_id)}`);
        showPerson(fresh);
        document.getElementById("enrol-status")?.replaceChildren(h("p", { class: "ok" }, `Enrolled ${file.name} (quality ${fmt(face.quality, 2)}).`));
      } catch (err) {
        status.error(err);
      }
    };
    status.el.id = "enrol-status";
    const faces = table(
      [
        { title: "Face id", key: "face_id", cell: (f) => h("code", {}, f.face_id) },
        { title: "Quality", key: "quality", cell: (f) => fmt(f.quality, 2) },
        { title: "Enrolled", key: "created", cell: (f) => when(f.created_at) },
        {
          title: "",
          key: "delete",
          cell: (f) => {
            const b = h("button", { type: "button", class: "danger", "aria-label": `Delete face ${f.face_id}` }, "Delete face");
            b.addEventListener("click", () =>
              busy(b, status, async () => {
                const ok = await confirmDialog({
                  title: "Delete this face?",
                  body: h("p", {}, `Face ${f.face_id} of ${label} is erased from the tenant's store; the person stays.`),
                  confirm: "Delete face",
                });
                if (!ok) return;
                await del(`/v1/persons/${encodeURIComponent(person.person_id)}/faces/${encodeURIComponent(f.face_id)}`);
                showPerson(await get(`/v1/persons/${encodeURIComponent(person.person_id)}`));
              }),
            );
            return b;
          },
        },
      ],
      person.faces ?? [],
      { caption: "Enrolled faces", empty: "No faces enrolled yet: add a photo below." },
    );
    const remove = h("button", { type: "button", class: "danger", id: "delete-person" }, `Delete ${label}`);
    remove.addEventListener("click", () =>
      busy(remove, status, async () => {
        const n = person.faces?.length ?? 0;
        const ok = await confirmDialog({
          title: `Delete ${label}?`,
          body: h("p", {}, `Person ${label} (${person.person_id}) and their ${n} enrolled face(s) are erased for good.`),
          confirm: `Delete ${label}`,
        });
        if (!ok) return;
        await del(`/v1/persons/${encodeURIComponent(person.person_id)}`);
        detail.replaceChildren(h("p", { class: "ok", role: "status" }, `${label} deleted.`));
        await loadFirst();
      }),
    );
    detail.replaceChildren(
      section(
        label,
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Person id"), h("dd", {}, h("code", { id: "person-id" }, person.person_id)),
          h("dt", {}, "Metadata"), h("dd", {}, JSON.stringify(person.metadata ?? {})),
        ),
        faces,
        h("h3", {}, "Enrol a photo"),
        h("p", { class: "hint" }, "One face per photo, facing the camera, sharp and large enough; refused photos say which check failed."),
        h(
          "div",
          { class: "enrol" },
          photoPicker({ label: `Photo of ${label}`, onFile: enrol, camera: true, multiple: true, cleanups: cameraCleanups, name: "enrol-photo" }),
          lastPhoto,
        ),
        field("Which face, when a photo holds several (0 = largest)", faceIndex),
        status.el,
        h("div", { class: "actions" }, remove),
      ),
    );
  }

  root.append(
    section("Find", searchForm, listStatus.el, listEl, more),
    section("New person", createForm),
    detail,
  );
  busy(find, listStatus, loadFirst);
}
