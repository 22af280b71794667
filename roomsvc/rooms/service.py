"""The rooms methods (docs/spec.md §3, §4), one function each, shared by REST and the realtime
channel: they take the caller, decoded wire requests and a `ViewContext`, and return wire
resources. No HTTP or JSON here."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Callable, Iterator

import msgspec

from roomsvc.auth.tokens import Principal
from roomsvc.common.clock import now_ms
from roomsvc.common.errors import N_, InvalidArgument, NotFound
from roomsvc.common.metrics import P2P_FAILURES, P2P_ROUNDTRIP, P2P_SETUP
from roomsvc.common.paging import page_size
from roomsvc.matching.pools import PoolStore
from roomsvc.rooms import rules as rooms
from roomsvc.rooms import wire
from roomsvc.rooms.rules import Criteria, Limits, PStatus, RoomDoc
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import ViewContext, render_room, render_status

LIST_MAX_RESULTS, LIST_DEFAULT_RESULTS = 500, 100  # rooms.list (docs/spec.md §3)


def new_room_id() -> str:
    return secrets.token_urlsafe(12).replace("-", "x").replace("_", "y")


def _participant_ids() -> Iterator[str]:
    while True:
        yield "p_" + secrets.token_hex(6)


def _criteria(body: wire.RoomCreateRequest) -> Criteria | None:
    c = body.auto_matching_criteria
    if c is None:
        return None
    low = c.min_auto_matching_players
    high = c.max_auto_matching_players
    if low is None and high is None:
        raise InvalidArgument(
            N_("{field} is required with autoMatchingCriteria."),
            field="autoMatchingCriteria.minAutoMatchingPlayers",
        )
    low = high if low is None else low
    high = low if high is None else high
    bitmask = c.exclusive_bitmask or 0
    if not 0 <= bitmask < 1 << 63:
        raise InvalidArgument(
            N_("{field} must be a non-negative int64."),
            field="autoMatchingCriteria.exclusiveBitmask",
        )
    return Criteria(min_players=int(low or 0), max_players=int(high or 0), bitmask=bitmask)


def _xmpp(address: wire.ClientAddressIn | None) -> str | None:
    return address.xmpp_address if address is not None else None


P2P_ERRORS = frozenset(wire.P2P_ERRORS)


def observe_diagnostics(updates: list[wire.RoomP2PStatusIn]) -> None:
    """reportStatus diagnostics as metrics (docs/messages.md "Diagnostics"): how long peers
    take to connect, their round trip, and how often peer-to-peer fails, so the operator sees
    how much of the game the relay carries."""
    for update in updates:
        if update.connection_setup_latency_millis is not None:
            P2P_SETUP.observe(max(0, update.connection_setup_latency_millis))
        if update.unreliable_roundtrip_latency_millis is not None:
            P2P_ROUNDTRIP.observe(max(0, update.unreliable_roundtrip_latency_millis))
        if update.error is not None:
            P2P_FAILURES.labels(update.error).inc()


class RoomsService:
    def __init__(self, store: RoomStore, limits: Limits, pool: PoolStore) -> None:
        self.store = store
        self.limits = limits
        self.pool = pool  # auto-match tickets (docs/spec.md §5)

    async def _visible(self, principal: Principal, room_id: str) -> RoomDoc:
        doc = await self.store.load(principal.app_id, room_id, fresh=True)
        if doc is None or doc.of_player(principal.player_id) is None:
            raise NotFound(N_("Room {room_id} not found."), room_id=room_id)
        return doc

    async def create(
        self, principal: Principal, body: wire.RoomCreateRequest, ctx: ViewContext
    ) -> wire.Room:
        now = now_ms()
        criteria = _criteria(body)
        rooms.validate_create(principal.player_id, body.invited_player_ids, criteria, self.limits)
        room_id = new_room_id()
        request_id = f"create:{uuid.uuid4().hex}"
        if body.request_id is not None:
            request_id = f"create:{principal.player_id}:{body.request_id}"
            existing = await self.store.claim_create_request(
                principal.app_id, principal.player_id, str(body.request_id), room_id
            )
            if existing is not None:
                room_id = existing
                doc = await self.store.load(principal.app_id, room_id, fresh=True)
                if doc is not None:
                    return render_room(doc, principal.player_id, ctx)
        doc = rooms.create(
            room_id=room_id,
            app_id=principal.app_id,
            player_id=principal.player_id,
            name=principal.name,
            avatar=principal.picture,
            invited=body.invited_player_ids,
            criteria=criteria,
            variant=body.variant,
            capabilities=body.capabilities,
            xmpp_address=_xmpp(body.client_address),
            ids=_participant_ids(),
            now_ms=now,
            limits=self.limits,
        )
        # The ticket before the room: a matcher that finds no room yet waits for it
        # (matching/pools.py; docs/design.md "Rooms: one slot each, indexes as hints"). On a
        # plain server both go in one round trip, the ticket ahead (docs/store.md).
        ticket = self.pool.ticket_commands(doc, on=self.store.commands)
        applied = await self.store.create(doc, request_id, first=ticket)
        return render_room(applied.room, principal.player_id, ctx)

    async def get(self, principal: Principal, room_id: str, ctx: ViewContext) -> wire.Room:
        return render_room(await self._visible(principal, room_id), principal.player_id, ctx)

    async def _mutate(
        self, principal: Principal, room_id: str, change: Callable[[RoomDoc], RoomDoc]
    ) -> RoomDoc:
        def guarded(doc: RoomDoc) -> RoomDoc | None:
            if doc.of_player(principal.player_id) is None:
                raise NotFound(N_("Room {room_id} not found."), room_id=room_id)
            return change(doc)

        applied = await self.store.mutate(
            principal.app_id, room_id, guarded, request_id=os.urandom(16).hex()
        )
        return applied.room

    async def join(
        self, principal: Principal, room_id: str, body: wire.RoomJoinRequest, ctx: ViewContext
    ) -> wire.Room:
        doc = await self._mutate(
            principal,
            room_id,
            lambda d: rooms.join(
                d,
                principal.player_id,
                capabilities=body.capabilities,
                xmpp_address=_xmpp(body.client_address),
                now_ms=now_ms(),
                limits=self.limits,
            ),
        )
        return render_room(doc, principal.player_id, ctx)

    async def decline(self, principal: Principal, room_id: str, ctx: ViewContext) -> wire.Room:
        doc = await self._mutate(
            principal,
            room_id,
            lambda d: rooms.decline(d, principal.player_id, now_ms=now_ms(), limits=self.limits),
        )
        return render_room(doc, principal.player_id, ctx)

    async def leave(
        self, principal: Principal, room_id: str, body: wire.RoomLeaveRequest, ctx: ViewContext
    ) -> wire.Room:
        doc = await self._mutate(
            principal,
            room_id,
            lambda d: rooms.leave(
                d, principal.player_id, reason=body.reason, now_ms=now_ms(), limits=self.limits
            ),
        )
        if doc.criteria is not None and not doc.ticket_open:
            await self.pool.withdraw(doc)  # a leave withdraws the ticket (docs/spec.md §4)
        return render_room(doc, principal.player_id, ctx)

    async def report_status(
        self, principal: Principal, room_id: str, body: wire.RoomP2PStatuses, ctx: ViewContext
    ) -> wire.RoomStatus:
        updates = []
        for index, update in enumerate(body.updates):
            if not update.participant_id:
                raise InvalidArgument(
                    N_("{field} is required."), field=f"updates[{index}].participantId"
                )
            if update.error is not None and update.error not in P2P_ERRORS:
                raise InvalidArgument(N_("{field} must be one of {allowed}."),
                                      field=f"updates[{index}].error",
                                      allowed=", ".join(sorted(P2P_ERRORS)))  # fmt: skip
            updates.append((update.participant_id, update.status or ""))
        doc = await self._mutate(
            principal,
            room_id,
            lambda d: rooms.report_status(
                d, principal.player_id, updates, now_ms=now_ms(), limits=self.limits
            ),
        )
        observe_diagnostics(body.updates)
        return render_status(doc, principal.player_id, ctx)

    async def dismiss(self, principal: Principal, room_id: str) -> None:
        """Hide an invitation from the caller's rooms.list only (docs/spec.md §4)."""
        doc = await self._visible(principal, room_id)
        participant = doc.of_player(principal.player_id)
        if participant is None or participant.via is not rooms.Via.INVITED:
            raise NotFound(N_("No invitation to room {room_id}."), room_id=room_id)
        await self.store.indexes.drop_invitations(principal.app_id, principal.player_id, [room_id])

    async def list_invitations(
        self,
        principal: Principal,
        max_results: int | str | None,
        page_token: str | None,
        ctx: ViewContext,
    ) -> wire.RoomList:
        """The caller's pending invitations, oldest first, verified against each room;
        `maxResults` 1..500 (default 100) whatever the transport sent (docs/spec.md §3)."""
        max_results = page_size(max_results, high=LIST_MAX_RESULTS, default=LIST_DEFAULT_RESULTS)
        cursor = decode_page_token(page_token)
        items: list[wire.Room] = []
        stale: list[str] = []
        now = now_ms()
        next_token: str | None = None
        items_cursor: tuple[int, str] = (0, "")
        while next_token is None and len(items) <= max_results:
            low = cursor[0] if cursor else "-inf"
            batch = await self.store.indexes.invitations_from(
                principal.app_id, principal.player_id, low, max_results + 32
            )
            if cursor:
                batch = [(m, s) for m, s in batch if (s, m) > (cursor[0], cursor[1])]
            if not batch:
                break
            docs = await self.store.load_many(principal.app_id, [m for m, _ in batch])
            for (room_id, score), doc in zip(batch, docs, strict=True):
                cursor = (score, room_id)
                if doc is None or not _pending_for(doc, principal.player_id, now, self.limits):
                    stale.append(room_id)
                    continue
                if len(items) == max_results:
                    next_token = encode_page_token(items_cursor)
                    break
                items.append(render_room(doc, principal.player_id, ctx))
                items_cursor = (score, room_id)
        await self.store.indexes.drop_invitations(principal.app_id, principal.player_id, stale)
        return wire.RoomList(items=items, next_page_token=next_token)


def _pending_for(doc: RoomDoc, player_id: str, now: int, limits: Limits) -> bool:
    current = rooms.expire(doc, now, limits) or doc
    p = current.of_player(player_id)
    return (
        p is not None
        and p.status is PStatus.INVITED
        and rooms.room_status(current) is not rooms.RoomState.DELETED
    )


class _Cursor(msgspec.Struct, array_like=True):
    score: int
    room_id: str


def encode_page_token(cursor: tuple[int, str]) -> str:
    raw = msgspec.msgpack.encode(_Cursor(*cursor))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str | None) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = msgspec.msgpack.decode(raw, type=_Cursor)
    except (ValueError, msgspec.DecodeError):
        raise InvalidArgument(N_("Invalid {field}."), field="pageToken") from None
    return cursor.score, cursor.room_id
