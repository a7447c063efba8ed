#!/usr/bin/env bash
# The Debian package on a new machine, under a real systemd: boots a
# Debian 12 container (debootstrap + systemd-nspawn, root needed), installs
# the package built by scripts/deb.sh, and walks what an operator does:
# the service and socket come up, the daemon holds no capability, `sluice
# setup` and `sluice apikeys create` work through the stored login, syslog
# reaches port 514 over TCP and UDP through sluice.socket, an upgrade
# restarts the service and keeps the data, a purge removes it all.
#
#   bash scripts/deb.sh && sudo bash scripts/deb-smoke.sh [path/to.deb]
#
# Not part of CI (a second release build and a container boot). The root
# file system is kept in $SLUICE_SMOKE_ROOT (default /var/tmp/sluice-smoke-root)
# for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

deb="${1:-$(ls -t "${CARGO_TARGET_DIR:-target}"/debian/sluice_*.deb | head -1)}"
root="${SLUICE_SMOKE_ROOT:-/var/tmp/sluice-smoke-root}"
machine="sluice-smoke-$$"

need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$root/lib/systemd/systemd" ]; then
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,man-db,procps,bsdutils \
        bookworm "$root" http://deb.debian.org/debian >/dev/null
fi
# A new machine each run: no data dir or login left by an earlier one.
rm -rf "$root/var/lib/private/sluice" "$root/var/lib/sluice" "$root/root/.config/sluice"
cp "$deb" "$root/root/sluice.deb"
echo "$machine" >"$root/etc/hostname"

systemd-nspawn -D "$root" --boot --keep-unit --register=no --machine="$machine" >/dev/null 2>&1 &
nspawn=$!
trap 'kill "$nspawn" 2>/dev/null || true; wait "$nspawn" 2>/dev/null || true' EXIT
inside() {
    local init
    init=$(pgrep -P "$nspawn" | head -1)
    nsenter -t "$init" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}
for _ in $(seq 60); do
    state=$(inside systemctl is-system-running 2>/dev/null || true)
    [ "$state" = running ] || [ "$state" = degraded ] && break
    sleep 1
done
echo "== container: $state"

step() { echo "== $*"; }
step "dpkg -i"
inside dpkg -i /root/sluice.deb | tail -12
sleep 2
inside systemctl is-active sluice.service sluice.socket
step "adopted sockets"
inside journalctl -b -u sluice --no-pager -o cat | grep -o 'adopted the .*' || true
step "capabilities of the daemon"
inside sh -c 'grep -E "^(Uid|CapEff|CapBnd)" /proc/$(systemctl show -p MainPID --value sluice)/status'
step "exposure"
inside systemd-analyze security sluice.service | tail -1
step "setup and a key through the stored login"
echo "a long admin password" | inside sluice setup --email you@example.com --password-stdin --json 2>/dev/null
inside sluice apikeys create --name web --json
step "syslog over TCP and UDP on 127.0.0.1:514"
inside logger -n 127.0.0.1 -P 514 -T "smoke over tcp"
inside logger -n 127.0.0.1 -P 514 -d "smoke over udp"
sleep 1
stored=$(inside sluice export --kind syslog | grep -c '"message":"smoke over')
echo "stored $stored of 2"
step "upgrade (same package again)"
before=$(inside systemctl show -p MainPID --value sluice)
inside dpkg -i /root/sluice.deb >/dev/null
sleep 2
after=$(inside systemctl show -p MainPID --value sluice)
echo "main pid $before -> $after; events kept: $(inside sluice export --kind syslog | wc -l)"
step "man pages and completions"
inside man -w sluice sluice-apikeys-create sluice.toml
inside ls /usr/share/bash-completion/completions/sluice /usr/share/zsh/vendor-completions/_sluice \
    /usr/share/fish/vendor_completions.d/sluice.fish
step "purge"
inside dpkg --purge sluice >/dev/null
inside systemctl is-active sluice.service sluice.socket || true
[ "$stored" = 2 ] && [ "$before" != "$after" ] && echo "== smoke test passed"
