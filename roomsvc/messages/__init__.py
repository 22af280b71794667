"""In-room messages (docs/messages.md): the data plane between the players of a room.

- `rules`: who may send to whom, the size limits, the per-connection rate (pure);
- `frames`: the binary WebSocket frame format for game traffic (pure);
- `ice`: STUN/TURN servers and TURN REST-API credentials for a peer-to-peer mesh (pure);
- `wire`: the JSON shapes of `rooms.sendMessage`, `rooms.signal`, `rooms.resumeMessages`,
  `rtc.iceServers` and the `message`/`signal` notifications;
- `store`: one script per message on the room's own slot (membership check, sequence number,
  capped backlog, one sharded publish per room), and the backlog read for resume.

The realtime channel carries them (roomsvc/realtime/messaging.py).
"""
