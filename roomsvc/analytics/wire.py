"""The analytics wire format (docs/spec.md §8, seed `AddEventBatch.txt`), as msgspec Structs.

The seed names fields in PascalCase (`Token`, `Timestamp`, `StatusCode`) with two exceptions
(`mediaInfo`, `eventData`), and its text spells some both ways (`token`/`Token`,
`mediaInfo`/`MediaInfo`): both spellings are accepted, the seed's example one wins.
Encoders and decoders are built once (docs/style.md: msgspec perf tips). Unknown fields are ignored.

Structs built per item are `gc=False` (they never form reference cycles): the cyclic GC then
has thousands fewer objects to track per batch (msgspec perf tips; docs/spec.md §11).

`eventData` is kept as `msgspec.Raw` on the first pass, so the token is checked before the
items are decoded, and an item's type error can name its index (analytics.py).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

MAX_TEXT = 256
# Data keys are 1..MAX_TEXT characters, checked by the decoder in C: cheaper than any Python
# loop over every key of every item (docs/spec.md §11).
DataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT)]
Scalar = str | int | float | bool | None
DataEntry = dict[DataKey, Scalar]


class AddEventsRequest(msgspec.Struct, gc=False):
    """The body of `AddEventBatch` and `AddEvent` (AddEvent may also carry one item's
    `Timestamp`, `Event`, `Data` at the top level: analytics.py reads those from the raw body)."""

    token: str | None = msgspec.field(default=None, name="Token")
    token_lower: str | None = msgspec.field(default=None, name="token")
    media_info: str | None = msgspec.field(default=None, name="mediaInfo")
    media_info_pascal: str | None = msgspec.field(default=None, name="MediaInfo")
    batch_id: str | None = msgspec.field(default=None, name="BatchId")
    event_data: msgspec.Raw = msgspec.field(default=msgspec.Raw(), name="eventData")
    event_data_pascal: msgspec.Raw = msgspec.field(default=msgspec.Raw(), name="EventData")

    def any_token(self) -> str | None:
        return self.token or self.token_lower or None

    def any_media_info(self) -> str | None:
        return self.media_info or self.media_info_pascal or None

    def any_event_data(self) -> bytes:
        return bytes(self.event_data) or bytes(self.event_data_pascal)


class EventItem(msgspec.Struct, gc=False):
    """One `AnalyticsEventItem`: `Data` is a list of key/value objects (one object is accepted
    as a list of one; missing or null is an empty list)."""

    Timestamp: int | float | str
    Event: str
    Data: list[DataEntry] | DataEntry | None = None


class StoredItem(msgspec.Struct, rename="pascal", gc=False):
    """One stream entry's `item` field and one `roomsvc analytics export` line (docs/analytics.md).

    `Timestamp` is the client's time in Unix milliseconds; `ReceivedAt` the server's.
    """

    application_id: str
    player_id: str | None
    session_id: str | None
    anonymous: bool
    batch_id: str | None
    index: int
    received_at: int
    timestamp: int
    event: str
    data: list[DataEntry]
    media_info: dict[str, Any] | None


class Envelope(msgspec.Struct, rename="pascal"):
    """The seed's answer: `{StatusCode, Severity, StatusMessage, Content}`."""

    status_code: int
    severity: int
    status_message: str
    content: Any


class AnonymousSessionRequest(msgspec.Struct):
    application_id: str | None = msgspec.field(default=None, name="ApplicationId")
    application_id_camel: str | None = msgspec.field(default=None, name="applicationId")

    def any_application_id(self) -> str | None:
        return self.application_id or self.application_id_camel or None


class AnonymousSession(msgspec.Struct, rename="pascal"):
    """`Content` of `AnonymousSession`: the token to send as `Token`, and when it ends."""

    token: str
    session_id: str
    application_id: str
    expires_in: int


request_decoder = msgspec.json.Decoder(AddEventsRequest, strict=False)
items_decoder = msgspec.json.Decoder(list[EventItem], strict=False)
item_decoder = msgspec.json.Decoder(EventItem, strict=False)
session_request_decoder = msgspec.json.Decoder(AnonymousSessionRequest, strict=False)
media_info_decoder = msgspec.json.Decoder(dict[str, Any])
encoder = msgspec.json.Encoder()
