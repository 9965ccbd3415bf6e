// Identify: every face in a photo boxed on the image with its match's name and similarity, or "unknown";
// moving the threshold re-runs the search. "Not <name>" on a match makes that face a rejection of the person
// (../corrections.js) and searches again, so the boxes show what the gallery answers now.
import { fileToBase64, post } from "../api.js";
import { rejectFor } from "../corrections.js";
import { photoPicker } from "../photos.js";
import { busy, field, fmt, h, section, statusArea } from "../ui.js";

export function render(root, { cleanups }) {
  const status = statusArea();
  const stage = h("div", { class: "stage", id: "identify-stage" });
  const results = h("ol", { class: "results", id: "identify-results", "aria-label": "Faces found" });
  const slider = h("input", { type: "range", id: "threshold", min: 0, max: 1, step: 0.01, value: "0.4", disabled: true });
  const shown = h("output", { for: "threshold", id: "threshold-value" }, "server default");
  let image = null; // {file, b64, url}
  let threshold = null; // null until the user moves the slider: the tenant's / model's default applies
  let seq = 0;
  let timer = null;
  let lastFound = null;
  const describe = (found) =>
    `${found.faces.length} face(s), ${found.faces.filter((f) => f.matches.length).length} recognised at threshold ${found.threshold.toFixed(2)}`;

  async function run() {
    if (!image) return;
    const mine = ++seq;
    status.info(`Searching ${image.file.name}…`);
    try {
      const body = { image: image.b64, top_k: 1 };
      if (threshold !== null) body.threshold = threshold;
      const found = await post("/v1/search", body);
      if (mine !== seq) return; // a newer search (the slider moved again) owns the display
      slider.disabled = false;
      slider.value = String(found.threshold);
      shown.textContent = found.threshold.toFixed(2);
      lastFound = found;
      draw(found);
      status.ok(`${describe(found)}.`);
    } catch (err) {
      if (mine !== seq) return;
      stage.replaceChildren();
      results.replaceChildren();
      status.error(err);
    }
  }

  function draw(found) {
    const img = h("img", { src: image.url, alt: `${image.file.name}, with ${found.faces.length} face(s) boxed`, id: "identify-image" });
    const boxes = found.faces.map((face, i) => box(face, i));
    const place = () => {
      const w = img.naturalWidth;
      const hgt = img.naturalHeight;
      boxes.forEach(({ el, face }) => {
        const [x1, y1, x2, y2] = face.bbox;
        // Percentages of the picture's own pixels, so boxes stay on the faces at any displayed size.
        el.style.left = `${(100 * x1) / w}%`;
        el.style.top = `${(100 * y1) / hgt}%`;
        el.style.width = `${(100 * (x2 - x1)) / w}%`;
        el.style.height = `${(100 * (y2 - y1)) / hgt}%`;
        el.hidden = false;
      });
    };
    if (img.complete && img.naturalWidth) queueMicrotask(place);
    else img.addEventListener("load", place, { once: true });
    stage.replaceChildren(h("div", { class: "frame" }, img, boxes.map((b) => b.el)));
    results.replaceChildren(
      ...found.faces.map((face, i) => {
        const m = face.matches[0];
        if (!m) return h("li", { dataset: { face: String(i) } }, "unknown — no one in the gallery reaches the threshold");
        return h("li", { dataset: { face: String(i), name: name(m) } }, `${name(m)} — similarity ${fmt(m.similarity, 3)} `, notThisPerson(m, i));
      }),
    );
  }

  function notThisPerson(match, i) {
    const b = h("button", { type: "button", class: "not-them", "aria-label": `Not ${name(match)} (face ${i + 1})` }, `Not ${name(match)}`);
    b.addEventListener("click", () =>
      busy(b, status, async () => {
        // Faces come largest first in both the search answer and the rejection's face_index.
        const added = await rejectFor(match, { image: image.b64, face_index: i }, { what: `Face ${i + 1} of ${image.file.name}` });
        if (!added) return;
        await run();
        status.ok(`Face ${i + 1} is now a rejection of ${name(match)}; searched again: ${describe(lastFound)}.`);
        document.querySelector(`#identify-results li[data-face="${i}"]`)?.setAttribute("tabindex", "-1");
        document.querySelector(`#identify-results li[data-face="${i}"]`)?.focus(); // the keyboard stays where the answer is
      }),
    );
    return b;
  }

  function box(face, i) {
    const m = face.matches[0];
    const text = m ? `${name(m)} ${fmt(m.similarity, 2)}` : "unknown";
    const el = h(
      "div",
      { class: m ? "box known" : "box unknown", hidden: true, dataset: { face: String(i), name: m ? name(m) : "unknown", similarity: m ? String(m.similarity) : "" } },
      h("span", { class: "tag" }, text),
    );
    return { el, face };
  }

  const picker = photoPicker({
    label: "Photo to identify",
    camera: true,
    cleanups,
    name: "identify-photo",
    onFile: async (file) => {
      if (image) URL.revokeObjectURL(image.url);
      image = { file, b64: await fileToBase64(file), url: URL.createObjectURL(file) };
      threshold = null;
      await run();
    },
  });
  cleanups.push(() => image && URL.revokeObjectURL(image.url));

  slider.addEventListener("input", () => {
    threshold = Number(slider.value);
    shown.textContent = threshold.toFixed(2);
    clearTimeout(timer);
    timer = setTimeout(run, 250);
  });
  cleanups.push(() => clearTimeout(timer));

  root.append(
    section(
      "Photo",
      picker,
      h("div", { class: "row threshold" }, field("Threshold (cosine similarity)", slider, "Moving it searches again; the first search uses the tenant's default."), shown),
      status.el,
    ),
    section("Faces", h("div", { class: "faces" }, stage, results)),
  );
}

function name(match) {
  return match.external_id ?? `person ${match.person_id.slice(0, 8)}`;
}
