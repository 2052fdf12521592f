#!/usr/bin/env bash
# Builds the Debian package target/debian/ferrogate_VERSION_amd64.deb (VERSION from Cargo.toml) and
# prints its path. cargo-deb (installed from crates.io when missing) builds the release binary
# without default features (no built-in demo), strips it (its debug symbols go into
# ferrogate-dbgsym_VERSION_amd64.ddeb beside it) and packs what [package.metadata.deb] in
# Cargo.toml lists: /usr/bin/ferrogate, the systemd unit, /etc/ferrogate/ferrogate.yaml (a
# conffile), the manual page, the docs and examples, and the maintainer scripts, all from
# packaging/debian/. The first release build takes several minutes (fat LTO).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --build >&2
if ! cargo deb --version >/dev/null 2>&1; then
  echo "package-deb: installing cargo-deb" >&2
  cargo install --locked -q cargo-deb --version '^3' >&2
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
# The package's changelog must name the version being packed (lintian and apt read it).
changelog_version=$(sed -n '1s/^ferrogate (\([^)]*\)).*/\1/p' packaging/debian/changelog)
if [ "$changelog_version" != "$version" ]; then
  echo "package-deb: packaging/debian/changelog starts with version '$changelog_version'," \
       "Cargo.toml says '$version': add a changelog entry for $version first" >&2
  exit 1
fi

deb="target/debian/ferrogate_${version}_${arch}.deb"
rm -f "$deb" "target/debian/ferrogate-dbgsym_${version}_${arch}.ddeb"
cargo deb --locked --dbgsym --output target/debian/ >&2
test -f "$deb" || { echo "package-deb: cargo-deb did not write $deb" >&2; exit 1; }
echo "$deb"
