// An audit chain's verification (GET /v1/audit/verify, /v1/admin/audit/verify) in words: the verdict, what
// it proves, and what it cannot (tenancy/chain.py).
import { fmt, h } from "./ui.js";

const REASONS = {
  edited: "an entry's bytes, or its link to the entry before, changed after it was written",
  deleted: "a sequence number is missing: an entry was deleted",
  reordered: "entries come out of sequence order, or one repeats",
  truncated: "a checkpoint names entries that are gone: the newest entries were cut off",
  rewritten: "the hash links agree with each other but not with a checkpoint: entries were rewritten and re-linked",
  checkpoint_forged: "a checkpoint's MAC does not verify: it was not made with the key provider's key",
};

/** A block stating the verdict of `v` (AuditVerification) for `what` ("tenant X's audit", "the org audit"). */
export function verdict(v, what) {
  const facts = h(
    "dl",
    { class: "facts" },
    h("dt", {}, "Entries"), h("dd", {}, fmt(v.entries)),
    h("dt", {}, "Checkpoints verified"), h("dd", {}, `${fmt(v.checkpoints)}${v.last_checkpoint_seq ? ` (the newest covers entries up to #${v.last_checkpoint_seq})` : ""}`),
    h("dt", {}, "Not yet checkpointed"), h("dd", {}, `${fmt(v.unsealed_tail)} newest entr${v.unsealed_tail === 1 ? "y" : "ies"}`),
  );
  if (v.intact) {
    return h(
      "div",
      { class: "verdict-box intact", role: "status", dataset: { intact: "true" } },
      h("p", { class: "verdict" }, `Intact: ${what} has not been edited, deleted, reordered or cut.`),
      h("p", {}, `Every one of the ${fmt(v.entries)} entries links to the one before by its hash, and the links agree with ${fmt(v.checkpoints)} checkpoint(s) whose MAC the key provider verified.`),
      v.unsealed_tail
        ? h("p", { class: "hint" }, `The ${fmt(v.unsealed_tail)} entries after the newest checkpoint are only hash-linked: they are sealed by the next checkpoint (made every so often and at shutdown).`)
        : null,
      facts,
    );
  }
  return h(
    "div",
    { class: "verdict-box broken", role: "alert", dataset: { intact: "false", reason: v.reason ?? "" } },
    h("p", { class: "verdict no" }, `Tampered with: ${what} fails at entry #${v.first_bad_seq} (${v.reason}).`),
    h("p", {}, `${REASONS[v.reason] ?? v.reason}. Entries from #${v.first_bad_seq} on cannot be trusted; those before it can.`),
    h("p", { class: "hint" }, v.detail),
    facts,
  );
}
