// Verify: two photos side by side; the similarity of their largest faces on a bar with the threshold marked.
import { fileToBase64, post } from "../api.js";
import { photoPicker, previewImage } from "../photos.js";
import { busy, field, fmt, h, section, statusArea } from "../ui.js";

export function render(root, { cleanups }) {
  const status = statusArea();
  const chosen = { a: null, b: null };
  const result = h("div", { id: "verify-result" });
  const threshold = h("input", { type: "number", id: "verify-threshold", min: -1, max: 1, step: 0.01, placeholder: "default", class: "narrow" });
  const compare = h("button", { type: "button", class: "primary", id: "compare", disabled: true }, "Compare");

  const side = (key, label) => {
    const preview = h("div", { class: "side-preview", id: `verify-preview-${key}` });
    const picker = photoPicker({
      label,
      cleanups,
      name: `verify-${key}`,
      onFile: (file) => {
        chosen[key] = file;
        preview.replaceChildren(previewImage(file, `${label}: ${file.name}`));
        compare.disabled = !(chosen.a && chosen.b);
        if (chosen.a && chosen.b) compare.click();
      },
    });
    return h("div", { class: "side" }, picker, preview);
  };

  compare.addEventListener("click", () =>
    busy(compare, status, async () => {
      result.replaceChildren();
      const body = { image_a: await fileToBase64(chosen.a), image_b: await fileToBase64(chosen.b) };
      if (threshold.value !== "") body.threshold = Number(threshold.value);
      const r = await post("/v1/verify", body);
      result.replaceChildren(scoreBar(r));
    }),
  );

  root.append(
    section(
      "Two photos",
      h("div", { class: "pair" }, side("a", "First photo"), side("b", "Second photo")),
      h("div", { class: "row" }, field("Threshold (optional)", threshold, "Empty: the model pack's default."), compare),
      status.el,
    ),
    section("Result", result),
  );
}

// The bar spans similarity 0..1 (negative scores sit at 0; the number is always shown as it came).
function scoreBar(r) {
  const pct = (v) => `${Math.max(0, Math.min(1, v)) * 100}%`;
  const fill = h("div", { class: r.match ? "fill match" : "fill" });
  const mark = h("div", { class: "mark", title: `threshold ${fmt(r.threshold, 2)}`, dataset: { label: `threshold ${r.threshold.toFixed(2)}` } });
  fill.style.width = pct(r.similarity);
  mark.style.left = pct(r.threshold);
  const verdict = r.match ? "Same person" : "Not the same person";
  const sentence = `${verdict}: similarity ${fmt(r.similarity, 3)} ${r.match ? "≥" : "<"} threshold ${fmt(r.threshold, 2)}`;
  return h(
    "div",
    { class: "score", dataset: { match: String(r.match), similarity: String(r.similarity) } },
    h("p", { class: r.match ? "verdict ok" : "verdict no", id: "verdict" }, sentence),
    h("div", { class: "bar", role: "img", "aria-label": sentence }, fill, mark),
    h("div", { class: "scale", "aria-hidden": "true" }, h("span", {}, "0"), h("span", {}, "0.5"), h("span", {}, "1")),
  );
}
