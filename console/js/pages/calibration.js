// Calibration: the report `securegate eval --out DIR` wrote, opened from this computer (the server does not
// keep it): report.json's figures and DET curve, and det.png / histogram.png when picked with it.
import { fmt, h, section, statusArea, table } from "../ui.js";

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}, ...children) => {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  el.append(...children);
  return el;
};

export function render(root, { cleanups }) {
  const status = statusArea();
  const out = h("div", { id: "calibration-report" });
  const urls = [];
  cleanups.push(() => urls.forEach((u) => URL.revokeObjectURL(u)));
  const input = h("input", { type: "file", id: "report-files", multiple: true, accept: ".json,.png,application/json,image/png" });
  input.addEventListener("change", async () => {
    const files = [...input.files];
    const report = files.find((f) => f.name.endsWith(".json"));
    const pictures = files.filter((f) => f.type === "image/png" || f.name.endsWith(".png"));
    status.clear();
    out.replaceChildren();
    if (!report && !pictures.length) {
      status.error({ message: "pick report.json (and det.png, histogram.png) from the eval report folder" });
      return;
    }
    if (report) {
      try {
        out.append(...summary(JSON.parse(await report.text())));
      } catch (err) {
        status.error({ message: `${report.name} is not an eval report: ${err.message}` });
      }
    }
    for (const file of pictures) {
      const url = URL.createObjectURL(file);
      urls.push(url);
      out.append(h("figure", {}, h("img", { src: url, alt: `${file.name} from the eval report`, class: "report-image" }), h("figcaption", {}, file.name)));
    }
  });
  root.append(
    section(
      "Open a report",
      h("p", {}, "Run ", h("code", {}, "securegate eval PHOTOS_DIR --out eval-report"), ", then pick ", h("code", {}, "report.json"),
        ", ", h("code", {}, "det.png"), " and ", h("code", {}, "histogram.png"), " from that folder (select all three at once). Nothing is uploaded: the files are read in this browser."),
      h("div", { class: "field" }, h("label", { for: "report-files" }, "Report files"), input),
      status.el,
    ),
    out,
  );
}

function summary(r) {
  if (!r.counts || !Array.isArray(r.grid)) throw new Error("no counts or grid");
  const c = r.counts;
  const facts = [
    ["Model", r.model ? `${r.model.name ?? r.model.recognizer ?? "?"}${r.model.dim ? ` (${r.model.dim}-d)` : ""}` : "—"],
    ["Identities / images used", `${c.identities} / ${c.images_used ?? c.images}`],
    ["Genuine / impostor pairs", `${c.genuine_pairs} / ${c.impostor_pairs}`],
    ["EER", r.eer ? `${fmt(100 * r.eer.eer, 2)}% at threshold ${fmt(r.eer.threshold)}` : "—"],
    ["Chosen threshold", r.chosen ? `${fmt(r.chosen.threshold)} (${r.chosen.source}${r.chosen.why ? `: ${r.chosen.why}` : ""})` : "—"],
    ["Generated", r.generated_at ?? "—"],
  ];
  return [
    section(
      "Report",
      h("dl", { class: "facts", id: "report-facts" }, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
      table(
        [
          { title: "Target FAR", cell: (t) => String(t.target_far) },
          { title: "Measurable", cell: (t) => (t.supported ? "yes" : "no") },
          { title: "Threshold", cell: (t) => fmt(t.threshold) },
          { title: "FRR", cell: (t) => (t.frr === undefined ? "—" : fmt(t.frr)) },
          { title: "Note", cell: (t) => t.reason ?? "" },
        ],
        r.target_far ?? [],
        { caption: "Target false-accept rates" },
      ),
    ),
    section("DET curve (from report.json)", detCurve(r)),
  ];
}

// FAR against FRR on log axes, one point per grid threshold. Log axes cannot show 0: an error rate never
// observed is drawn on the floor line at 1/N ("< 1/N").
function detCurve(r) {
  const W = 420, H = 320, L = 60, B = 44, T = 12, R = 12;
  const floor = Math.min(1 / Math.max(r.counts.impostor_pairs, 1), 1 / Math.max(r.counts.genuine_pairs, 1)) / 2;
  const lo = Math.log10(floor);
  const x = (far) => L + ((Math.log10(Math.max(far, floor)) - lo) / -lo) * (W - L - R);
  const y = (frr) => H - B - ((Math.log10(Math.max(frr, floor)) - lo) / -lo) * (H - B - T);
  const ticks = [];
  for (let e = Math.ceil(lo); e <= 0; e++) {
    const v = 10 ** e;
    ticks.push(
      svg("line", { x1: x(v), x2: x(v), y1: T, y2: H - B, class: "grid" }),
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }),
      svg("text", { x: x(v), y: H - B + 16, "text-anchor": "middle" }, `1e${e}`),
      svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, `1e${e}`),
    );
  }
  const points = r.grid.map((g) => `${x(g.far).toFixed(1)},${y(g.frr).toFixed(1)}`).join(" ");
  const eer = r.eer ? svg("circle", { cx: x(r.eer.far), cy: y(r.eer.frr), r: 5, class: "eer" }, svg("title", {}, `EER threshold ${fmt(r.eer.threshold)}`)) : "";
  const chart = svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "det", role: "img", "aria-label": `DET curve over ${r.grid.length} thresholds; EER ${r.eer ? fmt(100 * r.eer.eer, 2) : "?"}%` },
    ...ticks,
    svg("polyline", { points, class: "curve" }),
    ...r.grid.map((g) => svg("circle", { cx: x(g.far), cy: y(g.frr), r: 2.5, class: "point" }, svg("title", {}, `threshold ${fmt(g.threshold, 2)}: FAR ${fmt(g.far)}, FRR ${fmt(g.frr)}`))),
    eer,
    svg("text", { x: (L + W - R) / 2, y: H - 8, "text-anchor": "middle" }, "false accept rate (FAR)"),
    svg("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, "false reject rate (FRR)"),
  );
  return h("figure", {}, chart, h("figcaption", {}, "Points at 0 are drawn at the bottom/left edge (below 1/N: not measurable on this many pairs). Hover a point for its threshold."));
}
