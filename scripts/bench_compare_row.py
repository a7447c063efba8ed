"""Formats the rows of scripts/bench-compare.sh: one row per run from stdin,
or with --summary the medians per binary and workload and new/base ratios."""
import json
import statistics
import sys


def parse(fields):
    rnd, label, load, line, cpu, wrote, hwm, redb, b0, b1, stored, ticks = fields
    d = json.loads(line)
    events = d.get("events", d.get("messages"))
    rate = d.get("acked_events_per_sec", d.get("messages_per_sec"))
    busy0, idle0 = map(int, b0.split())
    busy1, idle1 = map(int, b1.split())
    total = (busy1 - busy0) + (idle1 - idle0)
    r = {
        "round": int(rnd), "bin": label, "load": load, "events": events, "rate": rate,
        "p50_ms": d.get("p50_ack_ms"), "p99_ms": d.get("p99_ack_ms", d.get("p99_ms")),
        "cpu_us": int(cpu) / int(ticks) * 1e6 / max(events, 1),
        "wrote_b": int(wrote) / max(events, 1),
        "rss_mib": int(hwm) / 1024, "redb_mb": int(redb) / 1e6,
        "busy_pct": 100.0 * (busy1 - busy0) / max(total, 1),
    }
    if "mb_per_sec" in d and rate:
        r["wire_b"] = d["mb_per_sec"] * 1e6 / rate
        r["wrote_ratio"] = r["wrote_b"] / r["wire_b"]
    if stored:
        r["stored"] = int(stored)
    return r


def show(r):
    parts = [f"round {r['round']} {r['bin']:4} {r['load']:8}", f"{r['rate']:>9,.0f} ev/s"]
    if r["p99_ms"] is not None:
        p50 = f"{r['p50_ms']:.1f}/" if r["p50_ms"] is not None else ""
        parts.append(f"ack p50/p99 {p50}{r['p99_ms']:.1f} ms")
    parts.append(f"CPU {r['cpu_us']:.2f} us/ev")
    parts.append(f"wrote {r['wrote_b']:.0f} B/ev")
    if "wrote_ratio" in r:
        parts.append(f"= {r['wrote_ratio']:.3f} of {r['wire_b']:.0f} B wire")
    parts.append(f"RSS {r['rss_mib']:.0f} MiB, events.redb {r['redb_mb']:.0f} MB, machine {r['busy_pct']:.0f}% busy")
    if "stored" in r:
        parts.append(f"stored {r['stored']:,} of {r['events']:,}")
    return ", ".join(parts)


rows = [parse(l.rstrip("\n").split("\t")) for l in sys.stdin if l.strip()]
if "--summary" not in sys.argv:
    for r in rows:
        print(show(r), flush=True)
    sys.exit()
keys = ["rate", "p50_ms", "p99_ms", "cpu_us", "wrote_b", "wrote_ratio", "rss_mib", "redb_mb", "busy_pct"]
print("\nmedians of %d round(s)" % max(r["round"] for r in rows))
print("%-9s %-5s " % ("load", "bin") + " ".join("%12s" % k for k in keys))
med = {}
for load in dict.fromkeys(r["load"] for r in rows):
    for b in ["base", "new"]:
        sel = [r for r in rows if r["load"] == load and r["bin"] == b]
        m = {}
        for k in keys:
            vals = [r[k] for r in sel if r.get(k) is not None]
            m[k] = statistics.median(vals) if vals else None
        med[(load, b)] = m
        print("%-9s %-5s " % (load, b) + " ".join("%12s" % ("-" if m[k] is None else f"{m[k]:.3g}") for k in keys))
    nb, nn = med[(load, "base")], med[(load, "new")]
    print("%-9s %-5s " % (load, "new/base") + " ".join(
        "%12s" % (f"{nn[k] / nb[k]:.2f}x" if nn[k] and nb[k] else "-") for k in keys))
lost = [r for r in rows if "stored" in r and r["stored"] != r["events"]]
for r in lost:
    print(f"syslog round {r['round']} {r['bin']}: stored {r['stored']} of {r['events']} sent")
