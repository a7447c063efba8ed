#!/usr/bin/env bash
# Syslog over TLS, sluice against rsyslog, and TLS handshakes per second,
# in one run (issue 13).
#
#   bash scripts/bench-syslog-tls.sh [SECONDS] [ROUNDS] [CONNECTIONS]   # default 10 s, 3 rounds, 4
#
# Makes a CA, an ECDSA P-256 and an RSA 2048 server certificate for
# 127.0.0.1 with openssl and builds the release binary. Then per round:
#
#   sluice   `[sources.syslog_tls]` (ECDSA certificate), a fresh data dir
#   rsyslog  imtcp with the gtls driver (StreamDriver.Mode 1, anon), the
#            same certificate, writing a file (omfile, not fsynced)
#
# each under the same load: syslog-ng's loggen --use-ssl, RFC 5424
# octet-counted, 200-byte messages, CONNECTIONS connections, unpaced, for
# SECONDS (loggen is extracted as ../shared/tools/setup.sh does). Printed
# per run: messages loggen sent and in how long, messages stored (sluice:
# `export | wc -l`; rsyslog: lines in its file), stored per second of
# loggen's run, and the daemon's
# CPU per stored message (utime+stime from /proc, until it is idle).
#
# Then the handshakes: per certificate, two `openssl s_time -new` clients
# make full TLS 1.3 handshakes against `[sources.tcp.tls]` for SECONDS, and
# the daemon's CPU per handshake gives handshakes per second on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
rounds=${2:-3}
conns=${3:-4}
tools=$(cd ../shared/tools 2> /dev/null && pwd) || { echo "needs ../shared/tools (loggen setup)" >&2; exit 2; }
# shellcheck source=/dev/null
source "$tools/setup.sh"
ensure_apt_pkgs rsyslog rsyslog-gnutls openssl
ensure_loggen
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
work=$(mktemp -d)
trap 'kill $(jobs -p) 2> /dev/null || true; [ -s "$work/rsyslog/pid" ] && kill "$(cat "$work/rsyslog/pid")" 2> /dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$work/ca.key" -out "$work/ca.pem" -subj /CN=bench-ca -days 2 2> /dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext.cnf"
for kind in ecdsa rsa; do
    new=("${ec[@]}")
    [ $kind = rsa ] && new=(-newkey rsa:2048 -nodes)
    openssl req "${new[@]}" -keyout "$work/$kind.key" -out "$work/$kind.csr" -subj /CN=localhost 2> /dev/null
    openssl x509 -req -in "$work/$kind.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
        -out "$work/$kind.pem" -days 2 -extfile "$work/ext.cnf" 2> /dev/null
done
lscpu | grep -E "Model name|^CPU\(s\)"

# Waits until process $1's CPU stays put for a second (at most 60 s).
wait_idle() {
    local last now
    last=$(cpu "$1")
    for _ in $(seq 60); do
        sleep 1
        now=$(cpu "$1")
        [ "$now" = "$last" ] && return
        last=$now
    done
}

# loggen against 127.0.0.1:$1; prints how many messages it sent and for
# how many seconds (its last "average rate" line).
load() {
    "$LOGGEN" --use-ssl --syslog-proto --size 200 --rate 100000000 --interval "$secs" \
        --active-connections "$conns" 127.0.0.1 "$1" > "$work/loggen.log" 2>&1 || true
    grep 'average rate' "$work/loggen.log" | tail -1 | sed -E 's/.*count=([0-9]+), time=([0-9.]+).*/\1 \2/'
}

report() { # LABEL ROUND "SENT SECONDS" STORED CPU_TICKS
    python3 -c "import sys; l,r,load,stored,t,hz=sys.argv[1:]; sent,s=(load.split() + ['0', '1'])[:2]; sent,s,stored,t,hz=int(sent),float(s),int(stored),int(t),int(hz)
print('round %s %-7s sent %9d in %5.2f s, stored %9d (%s) %8.0f stored msg/s, daemon CPU %.3f us/msg' % (r, l, sent, s, stored, 'all' if stored == sent else 'LOST %d' % (sent - stored), stored / s, t / hz * 1e6 / max(stored, 1)))" \
        "$1" "$2" "$3" "$4" "$5" "$ticks"
}

sluice_run() {
    local dir=$work/sluice addr
    rm -rf "$dir"
    mkdir -p "$dir"
    addr=$(port)
    printf 'data_dir = "%s"\n[sources.syslog_tls]\naddress = "127.0.0.1:%s"\nworkspace = 1\ntls = { cert = "%s", key = "%s" }\n' \
        "$dir/data" "$addr" "$work/ecdsa.pem" "$work/ecdsa.key" > "$dir/sluice.toml"
    "$bin" serve --config "$dir/sluice.toml" 2> "$dir/daemon.log" &
    local pid=$!
    for _ in $(seq 100); do grep -qs "sluice is ready" "$dir/daemon.log" && break; sleep 0.1; done
    local c0 sent
    c0=$(cpu $pid)
    sent=$(load "$addr")
    wait_idle $pid
    local c1
    c1=$(cpu $pid)
    kill -TERM $pid
    wait $pid || true
    report sluice "$1" "$sent" "$("$bin" export --data-dir "$dir/data" 2> /dev/null | wc -l)" $((c1 - c0))
}

rsyslog_run() {
    local dir=$work/rsyslog addr
    rm -rf "$dir"
    mkdir -p "$dir/work"
    addr=$(port)
    cat > "$dir/rsyslog.conf" << CONF
global(workDirectory="$dir/work" DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="$work/ca.pem" DefaultNetstreamDriverCertFile="$work/ecdsa.pem"
       DefaultNetstreamDriverKeyFile="$work/ecdsa.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
ruleset(name="bench") { action(type="omfile" file="$dir/out.log") }
input(type="imtcp" address="127.0.0.1" port="$addr" ruleset="bench")
CONF
    rsyslogd -f "$dir/rsyslog.conf" -i "$dir/pid"
    for _ in $(seq 50); do [ -s "$dir/pid" ] && break; sleep 0.1; done
    local pid c0 sent c1
    pid=$(cat "$dir/pid")
    c0=$(cpu "$pid")
    sent=$(load "$addr")
    wait_idle "$pid"
    c1=$(cpu "$pid")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    report rsyslog "$1" "$sent" "$(wc -l < "$dir/out.log")" $((c1 - c0))
}

handshakes() { # KIND
    local dir=$work/hs addr
    rm -rf "$dir"
    mkdir -p "$dir"
    addr=127.0.0.1:$(port)
    printf 'data_dir = "%s"\n[sources.tcp]\naddress = "%s"\ntls = { cert = "%s", key = "%s" }\n' \
        "$dir/data" "$addr" "$work/$1.pem" "$work/$1.key" > "$dir/sluice.toml"
    "$bin" serve --config "$dir/sluice.toml" 2> "$dir/daemon.log" &
    local pid=$!
    for _ in $(seq 100); do grep -qs "sluice is ready" "$dir/daemon.log" && break; sleep 0.1; done
    local c0 c1 n
    c0=$(cpu $pid)
    for i in 1 2; do
        openssl s_time -connect "$addr" -new -time "$secs" -CAfile "$work/ca.pem" > "$dir/s_time.$i" 2>&1 &
    done
    wait %2 %3 2> /dev/null || true
    wait_idle $pid
    c1=$(cpu $pid)
    kill -TERM $pid
    wait $pid || true
    n=$(grep -h -E '^[0-9]+ connections in [0-9.]+ real seconds' "$dir"/s_time.* | awk '{s += $1} END {print s + 0}')
    python3 -c "import sys; k,n,t,hz,s=sys.argv[1:]; n,t,hz,s=int(n),int(t),int(hz),float(s)
print('handshakes %-5s %7d in %.0f s, daemon CPU %.1f us/handshake = %.0f handshakes/s on one core' % (k, n, s, t / hz * 1e6 / max(n, 1), n / max(t / hz, 1e-9)))" \
        "$1" "$n" $((c1 - c0)) "$ticks" "$secs"
}

for round in $(seq "$rounds"); do
    sluice_run "$round"
    rsyslog_run "$round"
done
for kind in ecdsa rsa; do handshakes $kind; done
