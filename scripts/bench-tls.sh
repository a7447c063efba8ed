#!/usr/bin/env bash
# Raw TCP acked over TLS against plaintext, in one run (issue 13).
#
#   bash scripts/bench-tls.sh [SECONDS] [ROUNDS]    # default 10 s, 3 rounds
#
# Makes a CA and an ECDSA P-256 server certificate for 127.0.0.1 with
# openssl, builds the release binary, then per round runs `sluice bench tcp
# --acked` (4 connections × 500 events × ~200 B) against a fresh daemon in
# clear and then against one with `[sources.tcp.tls]` (the bench client
# trusting the CA). Prints the CPU model, and per run the acked rate, p99 ack
# latency and the daemon's CPU per event (utime+stime until 2 s after the
# load).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -subj /CN=bench-ca -days 2 2> /dev/null
openssl req "${ec[@]}" -keyout "$work/server.key" -out "$work/server.csr" -subj /CN=localhost 2> /dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -out "$work/server.pem" -days 2 -extfile "$work/ext.cnf" 2> /dev/null
lscpu | grep -E "Model name|^CPU\(s\)"
ticks=$(getconf CLK_TCK)
for round in $(seq "$rounds"); do
    for mode in plain tls; do
        rm -rf "$work/data"
        addr=127.0.0.1:$(port)
        tls="" args=()
        if [ "$mode" = tls ]; then
            tls=$(printf '[sources.tcp.tls]\ncert = "%s"\nkey = "%s"' "$work/server.pem" "$work/server.key")
            args=(--ca-file "$work/ca.pem")
        fi
        printf 'data_dir = "%s"\n[sources.tcp]\naddress = "%s"\n%s\n' "$work/data" "$addr" "$tls" > "$work/sluice.toml"
        key=$("$bin" apikeys create --data-dir "$work/data" --name bench | grep -Eo '[0-9a-f]{32}' | head -1)
        "$bin" serve --config "$work/sluice.toml" 2> "$work/daemon.log" &
        pid=$!
        for _ in $(seq 100); do grep -qs "sluice is ready" "$work/daemon.log" && break; sleep 0.1; done
        c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        line=$("$bin" bench tcp --addr "$addr" --key "$key" --acked --connections 4 --batch-size 500 \
            --duration "$secs" "${args[@]}" 2> /dev/null)
        sleep 2
        c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
        kill -TERM "$pid"
        wait "$pid" || true
        python3 -c "import json,sys; d=json.loads(sys.argv[1]); print('round %s %-5s %9.0f acked events/s, p99 ack %5.1f ms, daemon CPU %.3f us/event' % (sys.argv[2], sys.argv[3], d['acked_events_per_sec'], d['p99_ack_ms'], (int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[6]) * 1e6 / d['events']))" \
            "$line" "$round" "$mode" "$c0" "$c1" "$ticks"
    done
done
