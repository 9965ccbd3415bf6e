// Corrections, where the mistake is seen (Identify, People, Cameras): "not this person", merge two persons,
// move a face, undo a rejection. Each asks first in a dialog that says what the API will do (docs/api.md,
// Corrections), then calls it; a refusal shows the API's own code and message (same_person, not_found...).
import { del, get, post } from "./api.js";
import { confirmDialog, h } from "./ui.js";

const seg = encodeURIComponent;

/** A person by external id (exact, through the API's blind index) or else by person id; ApiError not_found. */
export async function findPerson(text) {
  const wanted = text.trim();
  const { persons } = await get(`/v1/persons?external_id=${seg(wanted)}`);
  if (persons.length) return persons[0];
  return get(`/v1/persons/${seg(wanted)}`); // 404 not_found when it is neither
}

export const personName = (p) => p.external_id ?? p.person_id;

/** "Not this person": the face (of `image` + `face_index`, or an enrolled `face_id`, or an `unknown_id`)
 * becomes a sealed negative example of the person. Resolves to the API's answer, or null when cancelled. */
export async function rejectFor(person, source, { what }) {
  const name = personName(person);
  const ok = await confirmDialog({
    title: `Not ${name}?`,
    body: [
      h("p", {}, `${what} becomes a rejection of ${name}: a sealed negative example. A face closer to it than to ${name}'s own faces no longer matches ${name}.`),
      h("p", {}, `Undo it on the People page, under ${name}'s rejections.`),
    ],
    confirm: `Not ${name}`,
    danger: false,
  });
  if (!ok) return null;
  return post(`/v1/persons/${seg(person.person_id)}/rejections`, source);
}

/** Merge: `merged`'s faces, rejections and camera events move to `person`; `merged` is deleted. */
export async function mergeInto(person, merged) {
  const name = personName(person);
  const other = personName(merged);
  const faces = merged.faces?.length;
  const ok = await confirmDialog({
    title: `Merge ${other} into ${name}?`,
    body: [
      h("p", {}, `${other}'s ${faces === undefined ? "" : `${faces} `}face(s), rejections and camera events move to ${name} (`, h("code", {}, person.person_id), ")."),
      h("p", {}, `${other} (`, h("code", {}, merged.person_id), ") is deleted and answers 404 from then on. There is no undo."),
    ],
    confirm: `Merge into ${name}`,
  });
  if (!ok) return null;
  return post(`/v1/persons/${seg(person.person_id)}/merge`, { merged_person_id: merged.person_id });
}

/** Move a face enrolled to the wrong person to `to`. */
export async function moveFace(person, faceId, to) {
  const ok = await confirmDialog({
    title: `Move this face to ${personName(to)}?`,
    body: h("p", {}, `Face `, h("code", {}, faceId), ` is enrolled to ${personName(person)}; it becomes ${personName(to)}'s, and searches it matched name ${personName(to)} from now on.`),
    confirm: "Move face",
    danger: false,
  });
  if (!ok) return null;
  return post(`/v1/persons/${seg(person.person_id)}/faces/${seg(faceId)}/move`, { to_person_id: to.person_id });
}

/** Undo a rejection: the faces it vetoed can match the person again. */
export async function undoRejection(person, rejection) {
  const name = personName(person);
  const ok = await confirmDialog({
    title: `Undo this rejection of ${name}?`,
    body: h("p", {}, `Rejection `, h("code", {}, rejection.rejection_id), ` (from ${rejection.source}) is deleted: faces like it can match ${name} again.`),
    confirm: "Undo rejection",
    danger: false,
  });
  if (!ok) return false;
  await del(`/v1/persons/${seg(person.person_id)}/rejections/${seg(rejection.rejection_id)}`);
  return true;
}
