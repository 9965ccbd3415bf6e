// People: find a person by external id (the API's blind index), create persons, enrol photos (file, drop,
// camera), delete faces and persons, and correct mistakes: move a face, merge two persons, "not this person"
// and undoing a rejection (../corrections.js).
import { del, fileToBase64, get, post } from "../api.js";
import { findPerson, mergeInto, moveFace, personName, rejectFor, undoRejection } from "../corrections.js";
import { photoPicker, previewImage } from "../photos.js";
import { busy, confirmDialog, field, fmt, h, section, statusArea, table, when } from "../ui.js";

const PAGE = 100;

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
  const searchForm = h("form", { class: "row search", role: "search" }, field("Find by external id", query, "The exact id, as it was given; empty lists everyone"), find);
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
    // One call through the API's blind index: the server never reads every person to find one.
    const { persons } = await get(`/v1/persons?external_id=${encodeURIComponent(text)}`);
    more.hidden = true;
    showList(persons, `Persons whose external id is “${text}”`);
    if (persons.length === 1) await open(persons[0].person_id);
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
        { title: "Move to", key: "move", cell: (f) => moveForm(f) },
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
    // A face enrolled to the wrong person: moved to the person named by external id (or person id).
    function moveForm(f) {
      const to = h("input", { type: "text", autocomplete: "off", class: "move-to", required: true });
      const go = h("button", { type: "submit" }, "Move");
      const form = h("form", { class: "row move", dataset: { face: f.face_id } }, field(`Move face ${f.face_id} to (external id or person id)`, to), go);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        busy(go, status, async () => {
          const target = await findPerson(to.value);
          const moved = await moveFace(person, f.face_id, target);
          if (!moved) return;
          await reopen(`Face ${moved.face_id} moved to ${personName(target)}.`);
        });
      });
      return form;
    }

    /** The person as the API has it now (and the list), with a status line kept across the re-render. */
    async function reopen(message) {
      showPerson(await get(`/v1/persons/${encodeURIComponent(person.person_id)}`));
      document.getElementById("correction-status")?.replaceChildren(h("p", { class: "ok" }, message));
      await loadFirst();
    }

    // ---- corrections: rejections ("not this person"), undo, merge ----------------------------------------
    const corrections = statusArea();
    corrections.el.id = "correction-status";
    const rejections = h("div", { id: "rejection-list" }, h("p", { class: "info" }, "Loading rejections…"));
    (async () => {
      try {
        const { rejections: found } = await get(`/v1/persons/${encodeURIComponent(person.person_id)}/rejections`);
        rejections.replaceChildren(
          table(
            [
              { title: "Rejection id", key: "rejection_id", cell: (r) => h("code", {}, r.rejection_id) },
              { title: "From", key: "source", cell: (r) => r.source },
              { title: "Added", key: "created", cell: (r) => when(r.created_at) },
              {
                title: "",
                key: "undo",
                cell: (r) => {
                  const b = h("button", { type: "button", "aria-label": `Undo rejection ${r.rejection_id}` }, "Undo");
                  b.addEventListener("click", () =>
                    busy(b, corrections, async () => {
                      if (await undoRejection(person, r)) await reopen(`Rejection ${r.rejection_id} undone: faces like it can match ${label} again.`);
                    }),
                  );
                  return b;
                },
              },
            ],
            found,
            { caption: `Rejections: faces that are not ${label}`, empty: `No rejections: nothing is marked as not ${label}.` },
          ),
        );
      } catch (err) {
        corrections.error(err);
      }
    })();
    const notThem = photoPicker({
      label: `A photo of someone who is not ${label}`,
      name: "reject-photo",
      onFile: (file) =>
        busy(null, corrections, async () => {
          const body = { image: await fileToBase64(file) };
          if (faceIndex.value !== "") body.face_index = Number(faceIndex.value);
          const added = await rejectFor(person, body, { what: `The face in ${file.name}` });
          if (added) await reopen(`${added.rejection_ids.length} rejection(s) added to ${label}.`);
        }),
    });
    const mergeId = h("input", { type: "text", id: "merge-id", autocomplete: "off", required: true });
    const merge = h("button", { type: "submit", id: "merge-person" }, "Merge");
    const mergeForm = h("form", { class: "row" }, field(`Merge another person into ${label} (their external id or person id)`, mergeId), merge);
    mergeForm.addEventListener("submit", (e) => {
      e.preventDefault();
      busy(merge, corrections, async () => {
        const other = await findPerson(mergeId.value);
        const merged = await mergeInto(person, await get(`/v1/persons/${encodeURIComponent(other.person_id)}`));
        if (!merged) return;
        await reopen(`Merged ${personName(other)} into ${label}: ${merged.faces_moved} face(s) and ${merged.rejections_moved} rejection(s) moved, ` +
          `${merged.events_relinked} camera event(s) relinked; ${merged.merged_person_id} no longer exists.`);
      });
    });

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
        h("h3", {}, "Corrections"),
        rejections,
        h("div", { class: "enrol" }, notThem, h("p", { class: "hint" }, `"Not this person": the photo's face becomes a negative example of ${label}; the face-index field above picks one of several.`)),
        mergeForm,
        corrections.el,
        h("div", { class: "actions" }, remove),
      ),
    );
  }

  root.append(
    section("Find", searchForm, listStatus.el, listEl, more),
    section("New person", createForm),
    detail,
  );
  // The first page loads without holding the Search button: a search typed meanwhile is not lost.
  busy(null, listStatus, loadFirst);
}
