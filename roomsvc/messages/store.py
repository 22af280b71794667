"""In-room messages in the store (docs/messages.md): one script per message, a capped backlog.

`publish` runs `message_send.lua` on the room's slot: the membership the sender's process
checked is proven current by the room version, the message is numbered and kept (reliable) and
published once for the whole room, all in one atomic step. The script dedupes on the sending
connection's token, so redis-py's retry of a call whose reply was lost never sends twice
(docs/store.md "Retries never double-apply"). `backlog` reads what a reconnecting client or a
process that missed a publication needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from roomsvc.store import keys
from roomsvc.store.batching import CommandBatcher
from roomsvc.store.scripts import script

SENT, ALREADY_SENT, ROOM_CHANGED = 1, 2, 0
_SEND = script("message_send")


@dataclasses.dataclass(frozen=True, slots=True)
class Published:
    outcome: int  # SENT, ALREADY_SENT or ROOM_CHANGED
    seq: int  # the room's message number (0: not reliable, or not sent)
    doc: bytes | None = None  # ROOM_CHANGED: the current document, to route again from


@dataclasses.dataclass(frozen=True, slots=True)
class Backlog:
    entries: list[tuple[int, bytes]]  # (seq, envelope), ascending
    last_seq: int  # the room's newest message number
    complete: bool  # False: the backlog no longer reaches back to the asked-for seq


class MessageStore:
    def __init__(self, commands: CommandBatcher, backlog: int) -> None:
        self.commands = commands
        self.cap = backlog

    async def publish(self, app: str, room_id: str, *, version: int, reliable: bool,
                      envelope: bytes, conn_id: str, token: int) -> Published:  # fmt: skip
        reply = await self.commands.call(
            _SEND,
            keys=[keys.room(app, room_id), keys.room_messages(app, room_id)],
            args=[version, "1" if reliable else "0", self.cap,
                  keys.room_message_channel(app, room_id), envelope, conn_id, token],
        )  # fmt: skip
        outcome = int(reply[0])
        if outcome == ROOM_CHANGED:
            return Published(outcome, 0, reply[2] if len(reply) > 2 else None)
        return Published(outcome, int(reply[1]))

    async def last_seqs(self, rooms: Sequence[tuple[str, str]]) -> list[int]:
        """The newest message number of each (app, roomId), 0 when none was sent."""
        raws = [self.commands.execute("HGET", keys.room(app, room_id), "m")
                for app, room_id in rooms]  # fmt: skip
        return [int(await raw or 0) for raw in raws]

    async def backlog(self, app: str, room_id: str, after_seq: int) -> Backlog:
        """Every kept message numbered above `after_seq`, and whether that is all of them.

        The newest number is read before the range (in that order, in one pipeline), so a
        message sent in between shows in the range and never makes it look incomplete."""
        last_f = self.commands.execute("HGET", keys.room(app, room_id), "m")
        stream = keys.room_messages(app, room_id)
        entries_f = self.commands.execute("XRANGE", stream, f"0-{after_seq + 1}", "+")
        last, raw_entries = int(await last_f or 0), await entries_f
        entries = [(int(entry_id.split(b"-")[1]), fields[1]) for entry_id, fields in raw_entries]
        first = entries[0][0] if entries else last + 1
        return Backlog(entries, last, first <= after_seq + 1 or last <= after_seq)
