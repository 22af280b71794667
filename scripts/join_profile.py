"""Where an auto-matched join's server CPU goes (docs/performance.md "Where a join's server CPU
goes"), for `bench_join.py --profile`: the server run under a profiler, and the reports.

    python scripts/join_profile.py MODE OUT -- serve ARGS...

runs `roomsvc serve ARGS`, profiled between SIGUSR1 and SIGUSR2 (which writes OUT); `report_samples`
and `report_calls` read what it wrote.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

SAMPLE_S = 0.001  # CPU seconds between profile samples


def profiled_serve(mode: str, out: str, argv: list[str]) -> int:
    """`roomsvc serve`, profiled between SIGUSR1 and SIGUSR2 (which writes `out`).

    `calls`: cProfile, for exact call counts (its own cost per call distorts time shares).
    `cpu`: the stack is sampled on SIGPROF, every SAMPLE_S of the process's CPU time
    (ITIMER_PROF), so time idle in the loop draws no samples and no function pays per call as
    under cProfile; a sample taken inside a C call lands on the Python frame that made it."""
    from roomsvc import cli

    if mode == "calls":
        import cProfile

        profiler = cProfile.Profile()
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())

        def dump(*_: Any) -> None:
            profiler.disable()
            profiler.dump_stats(out)

        signal.signal(signal.SIGUSR2, dump)
        return cli.main(argv)
    stacks: dict[tuple[str, ...], int] = {}

    def on_tick(_: int, frame: Any) -> None:
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_filename}:{code.co_name}")
            frame = frame.f_back
        key = tuple(names)
        stacks[key] = stacks.get(key, 0) + 1

    def start(*_: Any) -> None:
        signal.signal(signal.SIGPROF, on_tick)
        signal.setitimer(signal.ITIMER_PROF, SAMPLE_S, SAMPLE_S)

    def dump_samples(*_: Any) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        Path(out).write_text(json.dumps([[list(k), v] for k, v in stacks.items()]))

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, dump_samples)
    return cli.main(argv)


# (label, path fragment, function) of the stages whose inclusive time is reported per join.
STAGES = [
    ("http/websocket.py: the handshake", "http/websocket.py", "_handshake"),
    ("http/websocket.py: read frames -> ASGI receive", "http/websocket.py", "data_received"),
    ("http/websocket.py: ASGI send", "http/websocket.py", "send"),
    ("http/websocket.py: frames written directly", "http/websocket.py", "write_frame"),
    ("uvicorn: HTTP parsing (httptools protocol)", "httptools_impl.py", "data_received"),
    ("realtime/endpoint.py:RealtimeEndpoint.__call__", "realtime/endpoint.py", "__call__"),
    ("auth/tokens.py:TokenVerifier.verify (token)", "roomsvc/auth/tokens.py", "verify"),
    ("realtime/hub.py:Hub.register (subscribe, presence)", "realtime/hub.py", "register"),
    ("realtime/bridge.py:Bridge.subscribe", "realtime/bridge.py", "subscribe"),
    ("realtime/presence.py:Presence.touch", "realtime/presence.py", "touch"),
    ("realtime/hub.py:Hub.welcome (snapshot)", "realtime/hub.py", "welcome"),
    ("rooms/service.py:list_invitations", "roomsvc/rooms/service.py", "list_invitations"),
    ("realtime/endpoint.py:_receive_loop", "realtime/endpoint.py", "_receive_loop"),
    ("realtime/endpoint.py:_serve (rooms.create)", "realtime/endpoint.py", "_serve"),
    ("rooms/service.py:RoomsService.create", "roomsvc/rooms/service.py", "create"),
    ("realtime/protocol.py:result (reply encoding)", "realtime/protocol.py", "result"),
    ("matching/loop.py:run_forever (matcher)", "matching/loop.py", "run_forever"),
    ("matching/rounds.py:Matcher._claim (read, group, claim)", "matching/rounds.py", "_claim"),
    ("matching/rounds.py:Matcher.apply (the round's writes)", "matching/rounds.py", "apply"),
    ("rooms/store.py:RoomStore.write_many", "rooms/store.py", "write_many"),
    ("realtime/bridge.py:Bridge._relay (pub/sub read)", "realtime/bridge.py", "_relay"),
    ("realtime/bridge.py:Bridge._read", "realtime/bridge.py", "_read"),
    ("realtime/pushes.py:Pushes.on_message (push fan-in)", "realtime/pushes.py", "on_message"),
    ("realtime/pushes.py:Pushes._load_then_deliver", "realtime/pushes.py", "_load_then_deliver"),
    ("realtime/pushes.py:Pushes.deliver", "realtime/pushes.py", "deliver"),
    ("realtime/pushes.py:Pushes._drain (queued pushes)", "realtime/pushes.py", "_drain"),
    ("realtime/views.py:Views.doc (room read)", "realtime/views.py", "doc"),
    ("realtime/views.py:Views.frame (render + encode)", "realtime/views.py", "frame"),
    ("rooms/view.py:render_room", "roomsvc/rooms/view.py", "render_room"),
    ("realtime/connection.py:PeerTransport.write_frame", "realtime/connection.py", "write_frame"),
    ("realtime/feeds.py:Feeds.observe (message feeds)", "realtime/feeds.py", "observe"),
    ("realtime/feeds.py:Feeds._subscribe", "realtime/feeds.py", "_subscribe"),
    ("realtime/feeds.py:Feeds._catch_up", "realtime/feeds.py", "_catch_up"),
    ("realtime/hub.py:Hub.unregister", "realtime/hub.py", "unregister"),
    ("store/batching.py (all)", "store/batching.py", "*"),
    ("rooms/store.py (all, inclusive of create)", "rooms/store.py", "*"),
    ("metrics: prometheus_client", "prometheus_client/", "*"),
]

# (component, path fragments or builtin names) for the exclusive time: first match wins.
COMPONENTS = [
    ("msgspec encode/decode", ("msgspec",)),
    ("JWT / crypto (token)", ("jwt/", "cryptography", "roomsvc/auth/", "hmac", "_hashlib")),
    (
        "the HTTP and WebSocket server (uvicorn, roomsvc/http/websocket.py, frames.py)",
        (
            "uvicorn/",
            "websockets/",
            "httptools",
            "roomsvc/http/websocket.py",
            "roomsvc/http/frames.py",
        ),
    ),
    ("starlette", ("starlette/",)),
    ("redis-py + hiredis (store client, pub/sub)", ("redis/", "hiredis")),
    ("roomsvc/realtime/*", ("roomsvc/realtime/",)),
    (
        "roomsvc/store/* and rooms/store.py (batching, claims, the CAS writer)",
        ("roomsvc/store/", "roomsvc/rooms/store.py"),
    ),
    (
        "roomsvc rules + views (rooms/rules, status, view, wire; matching/policy, steps)",
        (
            "roomsvc/rooms/rules.py",
            "roomsvc/rooms/status.py",
            "roomsvc/rooms/view.py",
            "roomsvc/rooms/wire.py",
            "roomsvc/rooms/doc.py",
            "roomsvc/matching/policy.py",
            "roomsvc/matching/steps.py",
        ),
    ),
    ("roomsvc/matching/* (pools, rounds)", ("roomsvc/matching/",)),
    ("roomsvc services + plumbing (rooms_service, call_guard, logs, i18n)", ("roomsvc/",)),
    ("metrics (prometheus_client)", ("prometheus_client",)),
    ("asyncio + event loop", ("asyncio/", "uvloop", "method 'run' of", "_asyncio", "selectors")),
    ("socket / OS calls", ("socket", "method 'send'", "method 'write'", "posix")),
]


def _component(key: tuple[str, int, str]) -> str:
    text = f"{key[0]}:{key[2]}"
    for label, needles in COMPONENTS:
        if any(n in text for n in needles):
            return label
    return "other (stdlib, builtins)"


def _matches(frame: str, fragment: str, name: str) -> bool:
    file, _, func = frame.rpartition(":")
    return fragment in file and (name == "*" or func == name)


def report_samples(
    path: str, joins: int, cpu_ms: float, unit: str = "join", basis: str = "measured unprofiled"
) -> None:
    """Where the main thread's CPU went (the `cpu` sampler), per `unit` (`joins` of them),
    scaled to `cpu_ms` (how it was measured: `basis`)."""
    loaded = [(tuple(stack), n) for stack, n in json.loads(Path(path).read_text())]
    samples = [(s, n) for s, n in loaded if s]
    idle = sum(n for _, n in loaded) - sum(n for _, n in samples)
    total = sum(n for _, n in samples) or 1

    def us(ns: float) -> float:
        return ns / total * cpu_ms * 1000

    print(f"\nCPU profile ({path}): {total:,} samples ({total * SAMPLE_S / joins * 1000:.3f} ms "
          f"of CPU per {unit} sampled; {idle} without a Python frame left out), "
          f"{len(samples):,} distinct stacks; shares scaled to "
          f"{cpu_ms:.3f} ms per {unit} ({basis})")  # fmt: skip
    by: dict[str, float] = {}
    for stack, ns in samples:
        top = stack[0] if stack else "(no Python frame)"
        file, _, func = top.rpartition(":")
        label = _component((file, 0, func)) if stack else "(no Python frame)"
        by[label] = by.get(label, 0.0) + ns
    print(f"  exclusive (innermost frame) by component (share, us per {unit}):")
    for label, ns in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"    {ns / total:6.1%}  {us(ns):6.0f} us  {label}")
    print(f"  inclusive by stage (share, us per {unit}):")
    for label, fragment, name in STAGES:
        ns = sum(n for stack, n in samples if any(_matches(f, fragment, name) for f in stack))
        if ns:
            print(f"    {ns / total:6.1%}  {us(ns):6.0f} us  {label}")
    own: dict[str, float] = {}
    for stack, ns in samples:
        if stack:
            own[stack[0]] = own.get(stack[0], 0.0) + ns
    print(f"  top 25 functions by exclusive CPU (share, us per {unit}):")
    for frame, ns in sorted(own.items(), key=lambda kv: -kv[1])[:25]:
        file, _, func = frame.rpartition(":")
        print(f"    {ns / total:6.1%}  {us(ns):5.0f} us  {'/'.join(file.split('/')[-2:])}:{func}")


def report_calls(path: str, joins: int) -> None:
    """Calls per join (cProfile: exact counts; its times are not used)."""
    import pstats

    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    print(f"\ncalls per join ({path}, cProfile):")
    for label, fragment, name in STAGES:
        count = sum(v[1] for k, v in stats.items() if fragment in k[0] and
                    (name == "*" or k[2] == name))  # fmt: skip
        if count and name != "*":
            print(f"    {count / joins:7.2f}  {label}")
    for fragment, name in (("redis/asyncio/connection.py", "send_packed_command"),
                           ("redis/asyncio/connection.py", "read_response"),
                           ("redis/asyncio/client.py", "execute_command"),
                           ("redis/asyncio/client.py", "execute"),
                           ("store/pipelined.py", "send_packed"),
                           ("asyncio/streams.py", "writelines"),
                           ("realtime/connection.py", "write_frame"),
                           ("roomsvc/room_view.py", "render_room"),
                           ("msgspec", "encode"),
                           ("jwt/api_jws.py", "_verify_signature")):  # fmt: skip
        count = sum(v[1] for k, v in stats.items() if fragment in k[0] and k[2] == name)
        if not count and fragment == "msgspec":
            count = sum(v[1] for k, v in stats.items() if "msgspec.json.Encoder" in k[2]
                        and "encode" in k[2])  # fmt: skip
        if count:
            print(f"    {count / joins:7.2f}  {fragment.split('/')[-1]}:{name}")


if __name__ == "__main__":  # MODE OUT -- serve ARGS
    mode, out, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
    sys.exit(profiled_serve(mode, out, rest[1:] if rest[:1] == ["--"] else rest))
