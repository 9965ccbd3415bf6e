"""The tenant's camera events as they happen: an iterator over `GET /v1/events/stream` (Server-Sent Events).

Parsed by httpx-sse, a maintained implementation of the SSE wire format (field rules, multi-line data,
comments), on the client's own httpx connection pool.
"""

from __future__ import annotations

import time

import httpx
from httpx_sse import EventSource, SSEError

from securegate.client_errors import SecureGateConnectionError, SecureGateError, error_from_stream_end
from securegate.client_http import ApiSession, validate
from securegate.stream_schemas import Event

PATH = "/v1/events/stream"
KEEP_ALIVE_S = 15.0  # the server sends a comment at least this often (deployments/routes/streams.py)
DROPS_BEFORE_GIVING_UP = 3  # connections in a row that broke before delivering an event


class EventStream:
    """Each event of the tenant's cameras as an `Event`, in `seq` order, as the server emits it.

    Iterate it in a `with` block (or call `close()`, from the iterating thread): leaving closes the connection.
    `last_event_id` is the `seq` of the last event yielded; a new stream given it (`stream_events(
    last_event_id=...)`) starts right after it, so a consumer that stores it misses nothing across restarts.
    With `reconnect` (the default) the stream does that itself when the server ends it (after `max_s`) or the
    connection breaks; `SecureGateConnectionError` when the server cannot be reached again. When the key is
    rotated away or its tenant deleted, the server ends the stream within seconds and iterating raises
    `AuthenticationError` / `NotFoundError`.
    """

    def __init__(self, session: ApiSession, api_key: str | None, *, since: int = 0, last_event_id: int | None = None,
                 max_s: float | None = None, reconnect: bool = True, read_timeout_s: float = 4 * KEEP_ALIVE_S) -> None:
        self._session, self._api_key = session, api_key
        self.since, self.last_event_id, self.max_s, self.reconnect = since, last_event_id, max_s, reconnect
        self._timeout = httpx.Timeout(session.http.timeout.connect or read_timeout_s, read=read_timeout_s)
        self.connections = 0  # opened so far: 1 + reconnections
        self._events = self._follow()

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Event:
        return next(self._events)

    def close(self) -> None:
        self._events.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _follow(self):
        drops = 0
        while True:
            try:
                for event in self._connection():
                    drops = 0
                    yield event
            except SSEError as exc:  # an answer that is not an event stream: not SecureGate, or not this version
                raise SecureGateError(200, "invalid_response", f"GET {PATH}: {exc}") from exc
            except httpx.TransportError as exc:  # the connection broke mid-stream
                drops += 1
                if not self.reconnect or drops >= DROPS_BEFORE_GIVING_UP:
                    raise SecureGateConnectionError(None, "connection_error", f"GET {PATH}: {exc!r}") from exc
                time.sleep(min(2.0 ** (drops - 1), KEEP_ALIVE_S))
                continue
            if not self.reconnect:  # the server ended the stream (max_s)
                return

    def _connection(self):
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.last_event_id is not None:  # the server resumes after it (and ignores `since`)
            headers["Last-Event-ID"] = str(self.last_event_id)
        params = {"since": self.since, **({"max_s": self.max_s} if self.max_s is not None else {})}
        with self._session.stream("GET", PATH, auth=self._api_key, params=params, headers=headers,
                                  timeout=self._timeout) as response:
            self.connections += 1
            for message in EventSource(response).iter_sse():
                if message.event == "error":  # the server ended the stream: its key no longer holds; not retried
                    raise error_from_stream_end(message.data)
                if not message.data:
                    continue
                event = validate(Event, message.data, response.status_code, f"GET {PATH}")
                self.last_event_id = event.seq
                yield event
