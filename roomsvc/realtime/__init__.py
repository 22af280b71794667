"""The realtime channel (docs/spec.md §6): `GET /games/v1/realtime`, JSON-RPC 2.0 over WebSocket.

Modules, one concept each:

    protocol.py    pure JSON-RPC 2.0: parse a frame, encode replies, notifications, errors
    methods.py     JSON-RPC dispatch, built from the features' method tables (docs/api.md)
    connection.py  one socket: sends with a deadline, the send lock, close, its request rate
    shown.py       what one socket has shown of each room, its push queue and holds, pure
    pushes.py      the push path: pub/sub message -> decision -> frame (docs/realtime.md)
    views.py       the room documents and rendered frames shared by a process's connections
    bridge.py      the process's one Redis pub/sub link: reconnect, resubscribe, health checks
    hub.py         the process's connections, the welcome snapshot, the resync
    presence.py    presence deadlines in Redis and the sweeper that releases seats
    heartbeat.py   the process's beat: moves its players' deadlines, sending only changes
    endpoint.py    the WebSocket handshake and the receive loop
    drain.py       SIGTERM: finish in-flight calls, then close every socket with 1012
    messaging.py   in-room message calls; feeds.py, inbox.py: their delivery (docs/messages.md)
"""
