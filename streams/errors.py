"""The camera service's domain errors; deployments/streams.py translates them to API errors."""

from __future__ import annotations

from securegate import errors


class StreamNotFound(LookupError):
    """No such stream (or webhook, unknown) for this tenant."""


class InvalidStream(ValueError):
    """A stream configuration that cannot work (bad URL, push-only operation on a pulled stream...)."""


class TooManyStreams(ValueError):
    """The tenant has `max_streams_per_tenant` streams already."""


class DeliveryNotDead(Exception):
    """Only a dead-lettered webhook delivery can be retried."""

    api_error = errors.Conflict
