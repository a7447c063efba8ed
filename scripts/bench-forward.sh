#!/usr/bin/env bash
# Forwarding committed events into NATS JetStream, and a central sluice
# reading them back (issue 15, docs/forward.md "How well"), in one run.
#
#   bash scripts/bench-forward.sh [SECONDS] [ROUNDS]    # default 10 s, 3 rounds
#
# Each edge run gets a fresh 3-server JetStream cluster on loopback and a
# fresh data dir; the edge forwards into an R3 stream (`replicas = 3`). The
# load is `sluice bench tcp --acked` (4 connections × 500 events × ~200 B)
# for SECONDS. Measured:
#
#  (a) ROUNDS interleaved rounds of: forwarding off, `ack = "local"`,
#      `ack = "replicated"`, unpaced. Per run the acked rate, p50/p99 ack,
#      the lag left when the load stops and how long it takes to drain, and
#      CPU per stored event from /proc/PID/stat (utime+stime, from before
#      the load until the daemon is idle: forward lag 0, then CPU still for a
#      second), of the edge and of the three NATS servers together. Then
#      the median ratio of the forwarding rates to the rate without.
#  (c) `ack = "local"` paced at R = half the median local rate of (a)
#      (`--rate R`), sampling `sluice_forward_lag_events` from /metrics every
#      50 ms during the load: p50/p99/max, in events and as time (events / R).
#  (d) `ack = "replicated"` paced at half its own median rate of (a). With
#      the full-load runs of (a) and run (c), that gives p50/p99 ack of
#      local and replicated at full and at half load.
#  (b) A backlog: an edge (`ack = "local"`) under full load for 2 × SECONDS,
#      until all is forwarded. The edge is stopped and its data removed,
#      then a central sluice with `[sources.nats]` starts on the stream, and
#      is timed from its launch until `sluice_relay_events_stored_total`
#      reaches the events the edge forwarded; its CPU per event likewise.
#
# The JetStream stores live in a temp dir under $SLUICE_NATS_STORE (default
# /dev/shm): a full-load run puts ~1 GB into each of the three replicas.
# The edge and central data dirs are under $TMPDIR (real disk, fsync as
# usual). nats-server is $SLUICE_NATS_SERVER or /usr/sbin/nats-server;
# SLUICE_NATS_MAX_PAYLOAD sets the servers' max_payload (default 1MB, the
# servers' own default; the forwarder fills messages up to it);
# SLUICE_BIN skips the build and runs that sluice binary. WARN and ERROR
# lines of every daemon log are printed after each run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
nats=${SLUICE_NATS_SERVER:-/usr/sbin/nats-server}
max_payload=${SLUICE_NATS_MAX_PAYLOAD:-1MB}
# bench-daemon.sh builds the release binary first; not when one is given.
if [ -n "${SLUICE_BIN:-}" ]; then cargo() { :; }; fi
# $bin, $work, port, cpu (of $pid), $ticks, start_daemon (sets $pid, $key).
source scripts/bench-daemon.sh
bin=${SLUICE_BIN:-$bin}
shm=$(mktemp -d -p "${SLUICE_NATS_STORE:-/dev/shm}")
natspids=() tailpids=()
cleanup() {
    kill $(jobs -p) 2> /dev/null || true
    wait 2> /dev/null || true
    rm -rf "$work" "$shm"
}
trap cleanup EXIT
# A full-load run's data dir takes ~1 GB (~120 B per event), the stream as much per replica.
free_mb() { df -m --output=avail "$1" | tail -1; }
[ "$(free_mb "$work")" -ge 2048 ] || { echo "needs 2 GB free at $work, has $(free_mb "$work") MB" >&2; exit 1; }
[ "$(free_mb "$shm")" -ge 4096 ] || { echo "needs 4 GB free at $shm, has $(free_mb "$shm") MB" >&2; exit 1; }
results=$work/results # a line per run: what mode rate p50 p99 stored edge_ticks nats_ticks lag_end drain_s msgs puback_ms

lscpu | grep 'Model name'
echo "CPUs: $(nproc), $("$nats" --version), $("$bin" --version) ($bin, built $(date -r "$bin" '+%F %T'))"
changed=$(git diff --stat -- src 2> /dev/null | tail -n 1 | sed 's/^ *//')
echo "source tree: $(git describe --always --dirty 2> /dev/null || echo '?'), ${changed:-src/ clean}${SLUICE_BIN:+ (not what runs: SLUICE_BIN)}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: a test suite may be running)"
echo "edge/central data: $(df -h --output=avail "$work" | tail -1 | tr -d ' ') free at $work;" \
    "NATS stores: $(df -h --output=avail "$shm" | tail -1 | tr -d ' ') free at $shm"
busy() { # processes using more than 10% of a CPU over a second
    top -b -n 2 -d 1 -w 200 | awk '/^top -/ {n++; h = 0} /^ *PID / {h = 1; next} n == 2 && h && $9 > 10 {printf "    %5s%% %s\n", $9, $12}'
}
echo "processes busy now (not this script's):"
busy
echo "load: sluice bench tcp --acked --connections 4 --batch-size 500 --duration $secs, $rounds rounds"
echo

metric() { curl -s "http://$admin/metrics" | awk -v m="$1" '$1 == m {print $2}' || true; }
now() { date +%s.%N; }
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
nats_cpu() { # utime+stime of the three NATS servers, in ticks
    local pid sum=0
    for pid in "${natspids[@]}"; do sum=$((sum + $(cpu))); done
    echo "$sum"
}

# A fresh 3-server JetStream cluster on free loopback ports with its stores
# under $shm; waits until every server is healthy and knows a meta leader.
# Sets $servers (the TOML list of client URLs) and $natspids.
nats_up() {
    local p i routes=() conf
    rm -rf "${shm:?}"/*
    read -ra p <<< "$(python3 -c 'import socket
ss = [socket.socket() for _ in range(9)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')"
    for i in 0 1 2; do routes+=("nats-route://127.0.0.1:${p[3 * i + 2]}"); done
    servers="" natspids=()
    for i in 0 1 2; do
        conf=$shm/n$((i + 1)).conf
        cat > "$conf" << CONF
server_name: n$((i + 1))
max_payload: $max_payload
listen: 127.0.0.1:${p[3 * i]}
http: 127.0.0.1:${p[3 * i + 1]}
jetstream { store_dir: "$shm/n$((i + 1))", max_memory_store: 64MB, max_file_store: 8GB }
cluster {
  name: bench
  listen: 127.0.0.1:${p[3 * i + 2]}
  routes: [ $(IFS=,; echo "${routes[*]}") ]
}
CONF
        "$nats" -c "$conf" > "$work/nats$((i + 1)).log" 2>&1 &
        natspids+=($!)
        servers+="${servers:+, }\"nats://127.0.0.1:${p[3 * i]}\""
    done
    for i in 0 1 2; do
        local ok=""
        for _ in $(seq 300); do
            if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${p[3 * i + 1]}/healthz?js-enabled-only=true")" = 200 ] &&
                curl -s "http://127.0.0.1:${p[3 * i + 1]}/jsz" | python3 -c 'import json,sys; sys.exit(not json.load(sys.stdin).get("meta_cluster", {}).get("leader"))'; then
                ok=1
                break
            fi
            sleep 0.1
        done
        [ -n "$ok" ] || { echo "nats server n$((i + 1)) not ready in 30 s:" >&2; tail -n 20 "$work/nats$((i + 1)).log" >&2; exit 1; }
    done
    for i in 1 2 3; do # what they log from now on is shown after the run
        tail -n +$(($(wc -l < "$work/nats$i.log") + 1)) -f "$work/nats$i.log" > "$work/nats$i.run.log" &
        tailpids+=($!)
    done
}
nats_down() {
    kill "${natspids[@]}" "${tailpids[@]}" 2> /dev/null || true
    wait "${natspids[@]}" "${tailpids[@]}" 2> /dev/null || true
    natspids=() tailpids=()
}

# Prints a log's WARN and ERROR lines (sluice) or [WRN]/[ERR] lines (NATS,
# logged once the cluster was ready), less the one every fresh data dir
# logs (no admin user yet).
log_problems() { # label file...
    local label=$1
    shift
    grep -hE ' (WARN|ERROR) |\[(WRN|ERR)\]' "$@" | grep -v 'no user yet' | sed "s/^/  $label log: /" | head -n 20 || true
}

# Until the daemon $pid has forwarded everything (when forwarding) and its
# CPU stayed put for a second. Sets $drain (seconds until lag 0). A lag that
# does not reach 0 within 300 s, or a dead daemon, ends the run with the
# forwarding metrics and the log's tail.
wait_idle() { # forwarding: yes|no
    local t0 lag last c
    t0=$(now)
    drain=0
    if [ "$1" = yes ]; then
        while :; do
            kill -0 "$pid" 2> /dev/null || { echo "sluice died:" >&2; tail -n 30 "$work/daemon.log" >&2; exit 1; }
            lag=$(metric sluice_forward_lag_events)
            [ "$lag" = 0 ] && break
            if python3 -c 'import sys; sys.exit(float(sys.argv[2]) - float(sys.argv[1]) < 300)' "$t0" "$(now)"; then
                echo "forward lag still $lag events 300 s after the load:" >&2
                curl -s "http://$admin/metrics" | grep -E '^sluice_forward_[a-z_]+ ' >&2
                tail -n 30 "$work/daemon.log" >&2
                exit 1
            fi
            sleep 0.05
        done
        drain=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$t0" "$(now)")
    fi
    last=$(cpu)
    for _ in $(seq 60); do
        sleep 1
        c=$(cpu)
        [ "$c" = "$last" ] && break
        last=$c
    done
}

# Samples sluice_forward_lag_events every 50 ms for $1 seconds, one per line.
sample_lag() {
    python3 -c 'import sys, time, urllib.request
url, secs = sys.argv[1], float(sys.argv[2])
t0, n = time.monotonic(), 0
while n * 0.05 <= secs:
    time.sleep(max(0.0, t0 + n * 0.05 - time.monotonic()))
    for line in urllib.request.urlopen(url, timeout=1).read().decode().splitlines():
        if line.startswith("sluice_forward_lag_events "):
            print(line.split()[1], flush=True)
    n = int((time.monotonic() - t0) / 0.05) + 1' "http://$admin/metrics" "$1"
}

# After start_daemon (which waits 10 s): up to 20 s more for "sluice is
# ready", else the run ends with what is known about the daemon.
ready() { # label
    for _ in $(seq 200); do
        grep -qs "sluice is ready" "$work/daemon.log" && return 0
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    echo "$1: sluice did not start (pid $pid $(kill -0 "$pid" 2> /dev/null && echo running || echo exited)," \
        "log $(wc -c < "$work/daemon.log") bytes):" >&2
    tail -n 20 "$work/daemon.log" >&2
    exit 1
}
stop_daemon() {
    kill -TERM "$pid"
    wait "$pid" || true
}

# One edge run: fresh NATS cluster and data dir, forwarding off or with the
# given ack, `bench tcp --acked` for $secs or $dur (more bench args, e.g.
# --rate, after the mode), until idle. Appends a line to $results and prints it.
edge_run() { # what mode(off|local|replicated) [bench args...]
    local what=$1 mode=$2 fwd="" c0 n0 c1 n1 line lag_end stored
    shift 2
    nats_up
    rm -rf "$work/data"
    tcp=127.0.0.1:$(port) admin=127.0.0.1:$(port)
    if [ "$mode" != off ]; then
        fwd=$(printf '[forward.nats]\nservers = [%s]\nstream = "SLUICE"\nreplicas = 3\nnode_id = "edge-1"\nack = "%s"' "$servers" "$mode")
    fi
    start_daemon "$(printf '[sources.tcp]\naddress = "%s"\n[admin]\naddress = "%s"\n%s' "$tcp" "$admin" "$fwd")" > /dev/null
    ready "$what $mode"
    if [ "$mode" != off ]; then # the stream exists and the forwarder runs
        for _ in $(seq 300); do grep -qs "forwarding committed events" "$work/daemon.log" && break; sleep 0.1; done
        grep -qs "forwarding committed events" "$work/daemon.log" ||
            { echo "the forwarder did not start in 30 s:" >&2; tail -n 20 "$work/daemon.log" >&2; exit 1; }
    fi
    c0=$(cpu) n0=$(nats_cpu)
    [ -n "${sample:-}" ] && sample_lag "$secs" > "$work/lag.txt" &
    line=$("$bin" bench tcp --addr "$tcp" --key "$key" --acked --connections 4 --batch-size 500 \
        --duration "${dur:-$secs}" "$@" 2> "$work/bench.err") ||
        { echo "bench failed:" >&2; cat "$work/bench.err" >&2; tail -n 20 "$work/daemon.log" >&2; exit 1; }
    lag_end=$([ "$mode" = off ] && echo - || metric sluice_forward_lag_events)
    wait $! 2> /dev/null || true # the sampler
    wait_idle "$([ "$mode" = off ] && echo no || echo yes)"
    c1=$(cpu) n1=$(nats_cpu)
    stored=$(metric sluice_events_stored_total)
    local msgs=- puback=-
    if [ "$mode" != off ]; then
        forwarded=$(metric sluice_forward_events_total)
        msgs=$(metric sluice_forward_messages_total)
        puback=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) * 1e3 / max(1, int(sys.argv[2]))))' \
            "$(metric sluice_forward_puback_duration_seconds_sum)" "$(metric sluice_forward_puback_duration_seconds_count)")
    fi
    echo "$what $mode $(field "$line" acked_events_per_sec) $(field "$line" p50_ack_ms) $(field "$line" p99_ack_ms)" \
        "$stored $((c1 - c0)) $((n1 - n0)) $lag_end $drain $msgs $puback" >> "$results"
    python3 -c 'import sys; w, m, r, p50, p99, n, ce, cn, lag, dr, msgs, pa = sys.argv[1:13]; hz = int(sys.argv[13])
print("%-10s %-10s %9.0f acked ev/s  ack p50 %6.1f ms p99 %6.1f ms  edge CPU %.2f us/ev  NATS CPU %.2f us/ev"
      % (w, m, float(r), float(p50), float(p99), int(ce) / hz * 1e6 / int(n), int(cn) / hz * 1e6 / int(n)))
if lag != "-":
    print("%-21s lag at end of load %d, drained in %s s%s; %s messages of %.0f events, PubAck mean %s ms"
          % ("", int(lag), dr, " (%.0f ev/s)" % (int(lag) / float(dr)) if int(lag) > 0 else "", msgs, int(n) / int(msgs), pa))' \
        $(tail -n 1 "$results") "$ticks"
    log_problems "$what $mode sluice" "$work/daemon.log"
    log_problems "$what $mode nats" "$work"/nats?.run.log
}

echo "(a) full load, forwarding off / ack = local / ack = replicated, interleaved"
for round in $(seq "$rounds"); do
    for mode in off local replicated; do
        edge_run "round$round" "$mode"
        stop_daemon
        nats_down
    done
done
median() { # mode: the median acked rate of (a)
    awk -v m="$1" '$1 ~ /^round/ && $2 == m {print $3}' "$results" | sort -g |
        awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'
}
half_local=$(median local | awk '{printf "%d", $1 / 2}')
half_repl=$(median replicated | awk '{printf "%d", $1 / 2}')

echo
echo "(c) ack = local at half the median local rate: --rate $half_local, forward lag sampled every 50 ms"
sample=1 edge_run half local --rate "$half_local"
lag=$(python3 -c 'import sys; r = float(sys.argv[2]); v = sorted(int(x) for x in open(sys.argv[1]))
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print("forward lag at --rate %d, %d samples: p50 %d events (%.1f ms), p99 %d events (%.1f ms), max %d events (%.1f ms)"
      % (r, len(v), q(0.5), q(0.5) / r * 1e3, q(0.99), q(0.99) / r * 1e3, v[-1], v[-1] / r * 1e3))' "$work/lag.txt" "$half_local")
echo "  $lag"
stop_daemon
nats_down

echo
echo "(d) ack = replicated at half its median rate: --rate $half_repl"
edge_run half replicated --rate "$half_repl"
stop_daemon
nats_down

echo
echo "(b) a backlog: ack = local, full load for $((2 * secs)) s, until forwarded; then the edge stops and its data goes"
dur=$((2 * secs)) edge_run backlog local
backlog=$forwarded
stop_daemon
rm -rf "$work/data"
echo "    central sluice with [sources.nats] on the stream's $backlog events"
admin=127.0.0.1:$(port)
t0=$(now)
start_daemon "$(printf '[admin]\naddress = "%s"\n[sources.nats]\nservers = [%s]\nstream = "SLUICE"' "$admin" "$servers")" > /dev/null
ready central
last=0 still=0 tfirst=""
while :; do
    n=$(metric sluice_relay_events_stored_total)
    n=${n:-0}
    [ -z "$tfirst" ] && [ "$n" -gt 0 ] && tfirst=$(now)
    [ "$n" -ge "$backlog" ] && break
    kill -0 "$pid" 2> /dev/null || { echo "central sluice died:" >&2; tail -n 30 "$work/daemon.log" >&2; exit 1; }
    if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0 last=$n; fi
    [ "$still" -lt 600 ] || {
        echo "central stuck at $n of $backlog events for 60 s:" >&2
        curl -s "http://$admin/metrics" | grep -E '^sluice_relay_[a-z_]+ ' >&2
        tail -n 30 "$work/daemon.log" >&2
        exit 1
    }
    sleep 0.1
done
t1=$(now)
c_done=$(cpu)
wait_idle no
central=$(python3 -c 'import sys; n, t0, tf, t1 = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
cd, ci, hz = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
print("central: %d events stored in %.2f s from launch = %.0f events/s (%.0f/s from the first stored); CPU %.2f us/event until stored, %.2f until idle"
      % (n, t1 - t0, n / (t1 - t0), n / (t1 - tf), cd / hz * 1e6 / n, ci / hz * 1e6 / n))' \
    "$backlog" "$t0" "$tfirst" "$t1" "$c_done" "$(cpu)" "$ticks")
echo "  $central"
curl -s "http://$admin/metrics" | grep -E '^sluice_relay_[a-z_]+ ' | sed 's/^/  /'
log_problems "central sluice" "$work/daemon.log"
log_problems "central nats" "$work"/nats?.run.log
stop_daemon
nats_down

echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); processes busy now:"
busy
echo
echo "Summary (medians over $rounds rounds; CPU per stored event)"
python3 - "$results" "$ticks" << 'PY'
import statistics as st, sys
hz = int(sys.argv[2])
runs = [l.split() for l in open(sys.argv[1])]
def rows(what, mode): return [r for r in runs if r[0].startswith(what) and r[1] == mode]
def med(rs, i): return st.median(float(r[i]) for r in rs)
def cpu(rs, i): return st.median(int(r[i]) / hz * 1e6 / int(r[5]) for r in rs)
print("%-28s %10s %8s %8s %10s %10s %11s %8s %10s" % ("run", "acked ev/s", "p50 ms", "p99 ms", "edge us/ev", "NATS us/ev", "lag at end", "drain s", "PubAck ms"))
for what, label in (("round", "full"), ("half", "half")):
    for mode in ("off", "local", "replicated"):
        rs = rows(what, mode)
        if rs:
            lag = "%11.0f %8.2f %10.2f" % (med(rs, 8), med(rs, 9), med(rs, 11)) if mode != "off" else "%11s %8s %10s" % ("-", "-", "-")
            print("%-28s %10.0f %8.1f %8.1f %10.2f %10.2f %s" % ("%s load, %s" % (label, mode if mode == "off" else "ack = " + mode),
                  med(rs, 2), med(rs, 3), med(rs, 4), cpu(rs, 6), cpu(rs, 7), lag))
off = {r[0]: float(r[2]) for r in rows("round", "off")}
for mode in ("local", "replicated"):
    ratios = [float(r[2]) / off[r[0]] for r in rows("round", mode)]
    print("forwarding %-10s / off, per round: %s  median %.1f%% (goal >= 70%%)"
          % (mode, " ".join("%.1f%%" % (x * 100) for x in ratios), st.median(ratios) * 100))
PY
echo "$lag"
echo "$central"
