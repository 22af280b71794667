"""Report: latency quantiles, rates, games, errors and CPU as JSON, and the same as a table."""

from __future__ import annotations

from typing import Any

from loadgen.run import Run
from loadgen.stats import KINDS, OPS

CALL_OPS = ("create", "join", "reportStatus", "send", "record", "leave")  # request -> reply


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def results(run: Run, server: dict[str, Any]) -> dict[str, Any]:
    stats, elapsed = run.stats, max(run.ended - run.started, 1e-9)
    lat = {**stats.lat, "push": stats.push_latencies()}
    counted = sorted((-v, k[4:]) for k, v in run.cpu.items() if k.startswith("cmd:") and v)
    commands = {name: int(-v) for v, name in counted}
    ops = {op: {"count": len(lat[op]), "per_second": round(len(lat[op]) / elapsed, 1),
                **{f"p{int(q * 100)}_ms": round(quantile(lat[op], q) * 1000, 2)
                   for q in (0.5, 0.95, 0.99)},
                "max_ms": round(max(lat[op], default=0.0) * 1000, 2)}
           for op in OPS}  # fmt: skip
    calls = [v for op in CALL_OPS for v in lat[op]]
    shed_calls = sum(n for op, n in stats.shed.items() if op != "connect")
    shed_sockets = stats.shed.get("connect", 0)
    shedding = {
        "shed": dict(stats.shed),
        "unknown_outcomes": dict(stats.unknown),
        "calls_shed": shed_calls,
        "calls_shed_share": round(shed_calls / max(shed_calls + len(calls), 1), 4),
        "sockets_shed": shed_sockets,
        "sockets_shed_share": round(shed_sockets / max(shed_sockets + len(lat["connect"]), 1), 4),
        "accepted_calls": len(calls),
        "accepted_calls_p99_ms": round(quantile(calls, 0.99) * 1000, 2),
    }
    return {
        **shedding,
        "players": run.args.players, "duration_s": run.args.duration,
        "elapsed_s": round(elapsed, 2), "mix": dict(run.args.mix), "server": server,
        "requests": stats.requests, "requests_per_second": round(stats.requests / elapsed, 1),
        "ops": ops, "pushes_received": stats.pushes,
        "pushes_per_second": round(stats.pushes / elapsed, 1),
        "games_completed": dict(stats.games), "games_total": sum(stats.games.values()),
        "tickets_withdrawn_at_end": stats.withdrawn,
        "errors": dict(stats.errors), "errors_total": sum(stats.errors.values()),
        "error_samples": stats.samples,
        "cpu_seconds": {k: round(v, 2) for k, v in run.cpu.items() if ":" not in k},
        "store_commands": commands,
    }  # fmt: skip


def table(r: dict[str, Any]) -> str:
    lines = [f"{r['players']} players, {r['elapsed_s']} s of games (mix "
             + ", ".join(f"{k}={v:g}" for k, v in r["mix"].items()) + ")",
             f"{'operation':<13}{'count':>9}{'per s':>10}{'p50 ms':>10}{'p95 ms':>10}"
             f"{'p99 ms':>10}{'max ms':>10}"]  # fmt: skip
    for op, o in r["ops"].items():
        lines.append(f"{op:<13}{o['count']:>9}{o['per_second']:>10.1f}{o['p50_ms']:>10.2f}"
                     f"{o['p95_ms']:>10.2f}{o['p99_ms']:>10.2f}{o['max_ms']:>10.2f}")  # fmt: skip
    games = ", ".join(f"{k} {r['games_completed'].get(k, 0)}" for k in KINDS)
    lines += [f"requests: {r['requests']} ({r['requests_per_second']:.0f}/s)",
              f"pushes received: {r['pushes_received']} ({r['pushes_per_second']:.0f}/s)",
              f"games completed: {r['games_total']} ({games}); tickets withdrawn at the end: "
              f"{r['tickets_withdrawn_at_end']}",
              f"errors: {r['errors_total']} {r['errors'] or ''}".rstrip(),
              f"shed (refused at once, retried after Retry-After): calls {r['calls_shed']} "
              f"({100 * r['calls_shed_share']:.1f}% of call attempts), sockets "
              f"{r['sockets_shed']} ({100 * r['sockets_shed_share']:.1f}% of connects)",
              f"outcome unknown (503 past the store deadline; read back or sent again): "
              f"{sum(r['unknown_outcomes'].values())} {r['unknown_outcomes'] or ''}".rstrip(),
              f"accepted calls: {r['accepted_calls']}, p99 {r['accepted_calls_p99_ms']:.1f} ms "
              f"(target at twice a process's capacity: <= 200 ms)"]  # fmt: skip
    if h := r.get("server_push_histogram"):
        lines.append(f"server's push histogram (commit -> frame written, since it started): "
                     f"{h['count']:.0f} pushes, p50 <= {h['p50_le_ms']:g} ms, "
                     f"p99 <= {h['p99_le_ms']:g} ms")  # fmt: skip
    if cpu := r["cpu_seconds"]:
        work = r["requests"] + r["pushes_received"]
        lines.append(f"CPU over the games: server {cpu['server']:.1f} s "
                     f"({100 * cpu['server'] / r['elapsed_s']:.0f}% of a core, "
                     f"{1e6 * cpu['server'] / max(work, 1):.0f} us per request or push), "
                     f"store {cpu['store']:.1f} s, this client {cpu['client']:.1f} s")  # fmt: skip
        per = max(r["requests"], 1)
        lines.append("store commands per request: " + ", ".join(
            f"{k} {v / per:.2f}" for k, v in list(r["store_commands"].items())[:8]))  # fmt: skip
    lines += [f"  {s}" for s in r["error_samples"][:10]]
    return "\n".join(lines)


def server_push_histogram(base: str) -> dict[str, float]:
    """The server's own commit -> frame written histogram (`/metrics`, cumulative since it
    started): upper bounds of the buckets holding p50 and p99, and the count."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    buckets = [(float(sample.labels["le"]), sample.value)
               for family in text_string_to_metric_families(text)
               if family.name == "roomsvc_push_seconds"
               for sample in family.samples if sample.name.endswith("_bucket")]  # fmt: skip
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return {}
    at = {q: next(b for b, c in buckets if c >= q * total) for q in (0.5, 0.99)}
    return {"count": total, "p50_le_ms": at[0.5] * 1000, "p99_le_ms": at[0.99] * 1000}
