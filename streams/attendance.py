"""Attendance: first-in / last-out per person on a day, from the event log without opening it.

The day's person_seen events come from the store by time, unopened, each with its person tag (the blind
index, streams/event_index.py); they are grouped by tag, and one event per group is opened to say who it is.
During a content-key rotation a person has one tag per key version in use: groups naming the same person are
merged.
"""

from __future__ import annotations

from streams.event_index import EventKeys
from streams.store import StreamStore


def attendance(store: StreamStore, keys: EventKeys, day_start: float, day_end: float) -> list[dict]:
    """[{person_id, external_id, first_in, last_out, first_camera, last_camera, events}] by first_in; the
    external id is the one the person's first event of the day carries."""
    by_tag: dict[bytes, dict] = {}
    for seq, camera, first_seen, last_seen, tag in store.person_sightings(keys, day_start, day_end):
        group = by_tag.get(tag)
        if group is None:
            by_tag[tag] = {"seq": seq, "first_in": first_seen, "last_out": last_seen, "first_camera": camera,
                           "last_camera": camera, "events": 1}
        else:
            _widen(group, first_seen, camera, last_seen, camera, 1)
    persons: dict[str, dict] = {}
    for group in sorted(by_tag.values(), key=lambda g: g["seq"]):
        payload = store.payload(keys, group.pop("seq"))
        person = persons.get(payload["person_id"])
        if person is None:
            persons[payload["person_id"]] = {"person_id": payload["person_id"], "external_id": payload.get("external_id"), **group}
        else:
            _widen(person, group["first_in"], group["first_camera"], group["last_out"], group["last_camera"], group["events"])
    return sorted(persons.values(), key=lambda r: r["first_in"])


def _widen(row: dict, first_in: float, first_camera: str, last_out: float, last_camera: str, events: int) -> None:
    if first_in < row["first_in"]:
        row.update(first_in=first_in, first_camera=first_camera)
    if last_out > row["last_out"]:
        row.update(last_out=last_out, last_camera=last_camera)
    row["events"] += events
