"""SecureGateClient's camera methods against the running application, on the real photos of ../shared/faces:
streams, pushed frames, events followed over Server-Sent Events (received live, resumed with Last-Event-ID,
reconnected after the server ends a connection), stored events, attendance, unknowns and webhooks."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from securegate import client as sgc
from securegate.client import SecureGateClient
from tests import hostile
from tests.streams.test_cameras import WebhookReceiver, wait_until


@pytest.fixture(scope="module")
def admin(app, data_dir, http):
    assert http.get("/v1/readyz").status_code == 200  # the TenantSupervisor has started and written the token
    with SecureGateClient(app[1], admin_token=(data_dir / "admin_token").read_text().strip()) as client:
        yield client


@pytest.fixture(scope="module")
def site(admin, identity_photos):
    """A tenant of its own with obama and biden enrolled (photos that are not pushed below): (client, person ids)."""
    created = admin.create_tenant("client-cameras")
    with SecureGateClient(admin.base_url, api_key=created.api_key) as sg:
        persons = {}
        for who in ("obama", "biden"):
            persons[who] = sg.create_person(external_id=who).person_id
            sg.enrol_face(persons[who], identity_photos[who][0])
        yield sg, persons


def push_face(sg: SecureGateClient, stream_id: str, photo, frames: int = 6) -> None:
    """The photo as a 5 fps camera would send it, each frame handled (processed or dropped) before the next."""
    origin = time.time()
    for i in range(frames):
        accepted = sg.push_frame(stream_id, photo, ts=origin + i * 0.2)
        assert isinstance(accepted, sgc.FrameAccepted) and accepted.queued
        wait_until(lambda: (s := sg.get_stream(stream_id).status).frames_processed + s.frames_dropped
                   >= s.frames_read, 30, "the frame to be handled")


def no_active_track(sg: SecureGateClient, stream_id: str) -> None:
    wait_until(lambda: sg.get_stream(stream_id).status.tracks_active == 0, 30, "the track to end")


def test_streams_and_pushed_frames(site, tmp_path):
    sg, _ = site
    stream = sg.create_stream("door (pushed)", cooldown_s=5)
    assert isinstance(stream, sgc.StreamView) and stream.source == "push" and stream.url is None
    assert stream.cooldown_s == 5 and stream.fps == 5.0 and stream.enabled  # unset settings: the server's defaults
    assert stream.stream_id in [s.stream_id for s in sg.list_streams().streams]

    # A picture without a face: whether a face pushed here became an event would depend on how far the camera got
    # before the PATCH below restarts it, and the next test counts this tenant's events from the first.
    photo = tmp_path / "no-face.jpg"
    photo.write_bytes(hostile.faceless_photo())
    assert sg.push_frame(stream.stream_id, photo).queued  # a path
    assert sg.push_frame(stream.stream_id, photo.read_bytes(), ts=time.time()).queued  # bytes, capture time
    wait_until(lambda: sg.get_stream(stream.stream_id).status.frames_read >= 2, 30, "frames read")
    with pytest.raises(sgc.InvalidImageError) as err:
        sg.push_frame(stream.stream_id, b"not a jpeg")
    assert (err.value.status, err.value.code) == (400, "invalid_image")

    updated = sg.update_stream(stream.stream_id, fps=4, name="door (pushed, 4 fps)")
    assert (updated.fps, updated.name, updated.cooldown_s) == (4, "door (pushed, 4 fps)", 5)
    assert sg.push_frame(stream.stream_id, photo).queued  # the restarted worker takes frames at once
    with pytest.raises(sgc.InvalidRequestError) as err:
        sg.update_stream(stream.stream_id, fps=0)
    assert (err.value.status, err.value.code) == (400, "invalid_request")

    sg.delete_stream(stream.stream_id)
    for call in (lambda: sg.get_stream(stream.stream_id), lambda: sg.delete_stream(stream.stream_id),
                 lambda: sg.push_frame(stream.stream_id, photo)):
        with pytest.raises(sgc.NotFoundError) as err:
            call()
        assert (err.value.status, err.value.code) == (404, "not_found")


def test_event_stream_live_resumed_and_reconnected_then_events_attendance_unknowns_webhooks(site, identity_photos):
    sg, persons = site
    receiver = WebhookReceiver(fail_first=0)
    hook = sg.create_webhook(receiver.url, kinds=["person_seen", "unknown_seen"])
    assert isinstance(hook, sgc.WebhookCreated) and hook.secret and hook.kinds == ["person_seen", "unknown_seen"]
    stream = sg.create_stream("hall (pushed)", cooldown_s=60)

    # Live: the stream is open before the face is pushed; the event arrives on it.
    received: list[sgc.Event] = []
    events = sg.stream_events(max_s=60, reconnect=False)

    def consume(source, until: int) -> None:
        for event in source:
            received.append(event)
            if len(received) >= until:
                return

    listener = threading.Thread(target=consume, args=(events, 1), daemon=True)
    listener.start()
    push_face(sg, stream.stream_id, identity_photos["obama"][1])
    listener.join(60)
    assert not listener.is_alive(), "no event over SSE"
    (first,) = received
    assert isinstance(first, sgc.Event) and (first.kind, first.person_id, first.camera) == \
        ("person_seen", persons["obama"], stream.stream_id)
    assert events.last_event_id == first.seq and events.connections == 1
    events.close()  # closes the connection; the iterator is done, the client goes on
    with pytest.raises(StopIteration):
        next(events)

    # Resumed: an event that happened while no stream was open arrives first, after the one already seen.
    no_active_track(sg, stream.stream_id)
    push_face(sg, stream.stream_id, identity_photos["biden"][1])
    wait_until(lambda: sg.events(since=first.seq).events, 30, "biden's event to be stored")
    with sg.stream_events(last_event_id=first.seq, max_s=30, reconnect=False) as resumed:
        second = next(resumed)
    assert (second.kind, second.person_id) == ("person_seen", persons["biden"]) and second.seq > first.seq

    # Reconnected: the server ends each connection after max_s; the stream reconnects from its last event.
    received.clear()
    with sg.stream_events(last_event_id=second.seq, max_s=1) as following:
        listener = threading.Thread(target=consume, args=(following, 1), daemon=True)
        listener.start()
        time.sleep(3)
        no_active_track(sg, stream.stream_id)
        push_face(sg, stream.stream_id, identity_photos["kit_harington"][0])  # enrolled nowhere: unknown
        listener.join(60)
        assert not listener.is_alive(), "no event after a reconnection"
        assert following.connections >= 2
    (third,) = received
    assert third.kind == "unknown_seen" and third.unknown_id and third.seq > second.seq

    # Stored events: the same three, by page and filtered.
    page = sg.events(limit=1000)
    assert isinstance(page, sgc.EventPage) and [e.seq for e in page.events] == [first.seq, second.seq, third.seq]
    assert [e.seq for e in sg.iter_events(page_size=1)] == [first.seq, second.seq, third.seq]
    assert [e.seq for e in sg.events(kind="unknown_seen").events] == [third.seq]
    assert [e.seq for e in sg.events(person="obama", camera=stream.stream_id).events] == [first.seq]

    # Attendance of today (UTC): obama and biden, first in and last out from their events.
    today = datetime.datetime.now(datetime.timezone.utc).date()
    day = sg.attendance(today)
    assert isinstance(day, sgc.Attendance) and day.date == today.isoformat()
    assert sorted(r.external_id for r in day.persons) == ["biden", "obama"]
    assert all(r.first_in <= r.last_out and r.first_camera == stream.stream_id for r in day.persons)
    assert sg.attendance(today.isoformat()) == day
    with pytest.raises(sgc.InvalidRequestError):
        sg.attendance("yesterday")

    # The unknown becomes a person, with its event.
    (unknown,) = sg.list_unknowns().unknowns
    assert unknown.unknown_id == third.unknown_id and unknown.samples >= 1
    promoted = sg.promote_unknown(unknown.unknown_id, external_id="visitor-1", metadata={"note": "lobby"})
    assert isinstance(promoted, sgc.Promoted) and promoted.events == 1 and promoted.faces >= 1
    assert sg.list_unknowns().unknowns == [] and sg.get_person(promoted.person_id).external_id == "visitor-1"

    # Webhook deliveries: each event delivered to the receiver.
    delivered = wait_until(lambda: len(d := sg.webhook_deliveries(hook.webhook_id, state="delivered").deliveries) == 3 and d,
                           30, "webhook deliveries")
    assert sorted(d.seq for d in delivered) == [first.seq, second.seq, third.seq] and len(receiver.received) == 3
    (listed,) = sg.list_webhooks().webhooks
    assert listed.webhook_id == hook.webhook_id and listed.deliveries.get("delivered") == 3
    sg.delete_webhook(hook.webhook_id)
    assert sg.list_webhooks().webhooks == []
    with pytest.raises(sgc.NotFoundError):
        sg.webhook_deliveries(hook.webhook_id)
    sg.delete_stream(stream.stream_id)


def test_event_stream_errors_are_typed(app, site):
    sg, _ = site
    with SecureGateClient(app[1], api_key="sg_nope_nope") as stranger:
        events = stranger.stream_events()
        with pytest.raises(sgc.AuthenticationError) as err:
            next(events)
    assert (err.value.status, err.value.code) == (401, "unauthenticated")
    with pytest.raises(sgc.InvalidRequestError) as err:
        next(sg.stream_events(max_s=0))
    assert (err.value.status, err.value.code) == (400, "invalid_request")
