"""What one socket has shown of each room, and what it still has to show (docs/realtime.md
"Order on one socket").

On one connection the versions of a room only ever increase (docs/spec.md §6): a welcome, a
reply or a push shows a version only when it is newer than the one recorded here, and the
record is made with the send that shows it (under the connection's send lock, or
synchronously). The queue holds at most one entry per room, the newest announced version, so
a slow reader's queue coalesces and its memory is bounded by the rooms it follows.

A rooms call holds back the pushes of the room it names (of every room for rooms.create and
rooms.list, whose rooms are known only from the result) until its reply is out.

Pure: no I/O, no clock. Tens of thousands live in one process (docs/spec.md §11: memory per
socket), hence the slots and the containers made only when first needed.
"""

from __future__ import annotations

import enum


class Show(enum.Enum):
    """What to do with a version of a room for one socket."""

    SKIP = "skip"  # shown already, or never shown and the player is not in the room
    FORGET = "forget"  # a reply showed the player out and the room changed since: drop it
    ROOM = "room"  # the player is in the room: show this version
    LAST = "last"  # the change that took the player out: show it, then nothing more


class Shown:
    __slots__ = ("_held_room", "_hold_every", "_out", "_versions", "pending")

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}  # roomId -> newest version shown
        self._out: set[str] | None = None  # rooms whose last shown view had the player out
        self.pending: dict[str, int] = {}  # roomId -> newest version announced, not yet shown
        self._held_room: str | None = None
        self._hold_every = False

    # ---- what was shown -------------------------------------------------------------------

    def version(self, room_id: str) -> int:
        """The newest version of the room this socket has shown; 0 for none."""
        return self._versions.get(room_id, 0)

    def rooms(self) -> list[str]:
        """The rooms this socket shows the player in (what a resync re-reads)."""
        out = self._out or ()
        return [room_id for room_id in self._versions if room_id not in out]

    def record(self, room_id: str, version: int, *, out: bool = False) -> None:
        """`version` of the room was shown; `out`: that view had the player out of the room
        (a reply to leave or decline, or a DELETED room): nothing newer is shown after it."""
        if version <= self._versions.get(room_id, 0):
            return
        self._versions[room_id] = version
        if out:
            if self._out is None:
                self._out = set()
            self._out.add(room_id)
        elif self._out is not None:
            self._out.discard(room_id)

    def forget(self, room_id: str) -> None:
        """Nothing more of this room is shown: a push showed the player out of it. Older
        versions still announced cannot reappear: the shared documents only move forward."""
        self._versions.pop(room_id, None)
        self.pending.pop(room_id, None)
        if self._out is not None:
            self._out.discard(room_id)

    def decide(self, room_id: str, version: int, in_room: bool) -> Show:
        """What to do with `version` of a room in which the player is (`in_room`) or is not."""
        shown = self._versions.get(room_id, 0)
        if version <= shown:
            return Show.SKIP
        if self._out is not None and room_id in self._out:
            return Show.FORGET
        if in_room:
            return Show.ROOM
        return Show.LAST if shown else Show.SKIP

    # ---- what is left to show ---------------------------------------------------------------

    def queue(self, room_id: str, version: int) -> bool:
        """Queue `version` of a room unless it is no news; True when the queue changed."""
        if version <= self._versions.get(room_id, 0) or version <= self.pending.get(room_id, 0):
            return False
        if self._out is not None and room_id in self._out:
            self.forget(room_id)  # the player is not told of this room any more
            return False
        self.pending[room_id] = version
        return True

    def next_pending(self) -> tuple[str, int] | None:
        """The oldest queued room that no call holds, taken off the queue."""
        if self._hold_every:
            return None
        for room_id in self.pending:
            if room_id != self._held_room:
                return room_id, self.pending.pop(room_id)
        return None

    # ---- holds -------------------------------------------------------------------------------

    def hold(self, room_id: str | None) -> None:
        """A rooms call on `room_id` (None: on rooms known only from its result) is running."""
        if room_id is None:
            self._hold_every = True
        else:
            self._held_room = room_id

    def release(self) -> None:
        self._held_room = None
        self._hold_every = False

    def holds(self, room_id: str) -> bool:
        return self._hold_every or self._held_room == room_id
