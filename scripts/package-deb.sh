#!/usr/bin/env bash
# Builds the Debian package target/debian/ferrogate_VERSION_amd64.deb (VERSION from Cargo.toml) and
# prints its path. The release binary is built without default features (no built-in demo) and
# profile-guided by scripts/build-release.sh (FERROGATE_PGO=0 there builds it plainly); cargo-deb
# (installed from crates.io when missing) strips it (its debug symbols go into
# ferrogate-dbgsym_VERSION_amd64.ddeb beside it) and packs what [package.metadata.deb] in
# Cargo.toml lists: /usr/bin/ferrogate, the systemd unit, /etc/ferrogate/ferrogate.yaml (a
# conffile), the manual page, the docs and examples, and the maintainer scripts, all from
# packaging/debian/. The release builds take several minutes each (fat LTO).
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
bin=$(scripts/build-release.sh --no-default-features)
# cargo-deb packs the binary of the target directory it is given (the asset target/release/ferrogate).
CARGO_TARGET_DIR=$(dirname "$(dirname "$bin")") cargo deb --locked --no-build --dbgsym --output target/debian/ >&2
test -f "$deb" || { echo "package-deb: cargo-deb did not write $deb" >&2; exit 1; }
echo "$deb"
