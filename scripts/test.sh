#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one.
#
# Installs the system tools the tests drive as real clients when they are
# missing (rsyslog with RELP and GnuTLS, openssl, util-linux logger, systemd-analyze
# and man (the units' man: links are checked), D-Bus with gnome-keyring and
# secret-tool (the login token in a real Secret Service), iproute2 (IPv6
# clients in a network namespace), curl,
# Debian's Chromium, Node.js with the pinned npm packages of tests/browser:
# playwright-core and @tell-rs/browser; promtool from Debian's prometheus
# package, tmux for `sluice top`, Debian's nats-server for the JetStream
# tests and nats-py, pinned by hash in tests/nats/requirements.txt, in a
# throwaway venv target/nats-py-venv; for the OTLP source, the OpenTelemetry
# Python SDK with its OTLP/HTTP protobuf exporter, pinned by hash with every
# dependency in tests/otlp/requirements.txt, in a throwaway venv
# target/otlp-py-venv, and the OpenTelemetry JS logs SDK with its OTLP/HTTP
# JSON exporter, pinned in tests/otlp/package-lock.json), then runs
# every test target: unit, integration (real daemon, Tell SDK, logger,
# rsyslog, OpenTelemetry), fuzz-corpus replay, and each criterion bench once
# in test mode.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
command -v rsyslogd >/dev/null 2>&1 || need+=(rsyslog)
dpkg -s rsyslog-relp >/dev/null 2>&1 || need+=(rsyslog-relp)
dpkg -s rsyslog-gnutls >/dev/null 2>&1 || need+=(rsyslog-gnutls)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v logger >/dev/null 2>&1 || need+=(bsdutils)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v dbus-run-session >/dev/null 2>&1 || need+=(dbus)
command -v gnome-keyring-daemon >/dev/null 2>&1 || need+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || need+=(libsecret-tools)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing test dependencies: ${need[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# promtool only: without the recommended exporters and their services.
if ! command -v promtool >/dev/null 2>&1; then
    echo "installing promtool (Debian's prometheus package)" >&2
    [ ${#need[@]} -gt 0 ] || $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# A throwaway venv of hash-pinned wheels (`python_clients VENV REQUIREMENTS`),
# rebuilt only when the pins change.
python_clients() {
    local venv=$1 pins=$2
    cmp -s "$pins" "$venv/requirements.txt" && return 0
    echo "creating $venv (from $pins)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        --require-hashes --only-binary=:all: -r "$pins"
    cp "$pins" "$venv/requirements.txt"
}
# The NATS tests' non-sluice client, and the OTLP tests' Python SDK
# (tests/otlp/send.py).
python_clients target/nats-py-venv tests/nats/requirements.txt
python_clients target/otlp-py-venv tests/otlp/requirements.txt
# The OTLP tests' JS exporter (tests/otlp/send_logs.mjs): reinstalled when
# missing or when the lockfile is newer than the install.
if [ ! -d tests/otlp/node_modules/@opentelemetry/exporter-logs-otlp-http ] ||
    [ tests/otlp/package-lock.json -nt tests/otlp/node_modules/.package-lock.json ]; then
    npm ci --prefix tests/otlp --no-audit --no-fund --loglevel=error
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

# The fuzz crate needs nightly to fuzz, but must keep compiling on stable.
cargo check --quiet --manifest-path fuzz/Cargo.toml --bins --target-dir target/fuzz-check
cargo test --all-targets
