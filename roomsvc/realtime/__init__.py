"""The realtime channel (docs/spec.md §6): `GET /games/v1/realtime`, JSON-RPC 2.0 over WebSocket.

Modules, one concept each:

    protocol.py    pure JSON-RPC 2.0: parse a frame, encode replies, notifications, errors
    methods.py     method name -> the same service function REST calls
    connection.py  one socket: coalescing push queue, monotonic versions, send with a deadline
    views.py       the room documents and rendered frames shared by a process's connections
    bridge.py      the process's one Redis pub/sub link: reconnect, resubscribe, health checks
    hub.py         the process's connections: fan-out, welcome snapshot, resync
    presence.py    presence deadlines in Redis and the sweeper that releases seats
    heartbeat.py   the process's beat: moves its players' deadlines, sending only changes
    endpoint.py    the WebSocket handshake and the receive loop
    drain.py       SIGTERM: finish in-flight calls, then close every socket with 1012
"""
