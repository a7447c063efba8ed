#!/usr/bin/env bash
# Builds the Debian package: target/debian/sluice_<version>_<arch>.deb.
#
#   bash scripts/deb.sh            # then: sudo dpkg -i target/debian/sluice_*.deb
#
# A release build, then `sluice package-assets` writes the man pages and
# shell completions generated from the clap definitions and the annotated
# config/production.toml into target/assets, and cargo-deb (installed here
# when missing, pinned) packs them with the binary, the systemd units in
# systemd/, the config as a conffile, the sysctl.d file and the docs, as
# [package.metadata.deb] in Cargo.toml lists them. CARGO_TARGET_DIR is
# honoured for the build; the package lands in its debian/ directory.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi
command -v dpkg-deb >/dev/null || { echo "dpkg-deb is needed (Debian's dpkg package)" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked
rm -rf target/assets
"$target_dir/release/sluice" package-assets target/assets >/dev/null
cargo deb --no-build --locked --strip "$@"
