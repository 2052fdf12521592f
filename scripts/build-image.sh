#!/usr/bin/env bash
# Builds the container image with podman on a machine that cannot pull from a container registry,
# starts it once and waits for its health check (`ferrogate health` on the admin /healthz), then
# prints the image's name.
#
#   scripts/build-image.sh [IMAGE]        IMAGE defaults to localhost/ferrogate:VERSION
#
# The binary is built here (release, without default features, profile-guided by
# scripts/build-release.sh) and the Containerfile's `prebuilt`
# target puts it on a Debian base of this machine's release (the binary needs its C library):
# docker.io/library/debian:CODENAME-slim when podman has it or can pull it, otherwise
# localhost/ferrogate-base:CODENAME, assembled here with debootstrap from the Debian archive
# (DEBIAN_MIRROR, default http://deb.debian.org/debian) and imported. Runs as root (debootstrap).
# Where podman's defaults cannot start a container (crun on a hybrid cgroup hierarchy, resource
# limits a sandbox refuses) it uses runc and lower limits, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-image: $*" >&2; }
fail() { echo "build-image: FAILED: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, rootful podman)"
. /etc/os-release
codename=${VERSION_CODENAME:?/etc/os-release names no Debian release}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
image=${1:-localhost/ferrogate:$version}

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v strip >/dev/null 2>&1 || need+=(binutils)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The base image.
base=docker.io/library/debian:$codename-slim
if ! podman image exists "$base" && ! podman pull -q "$base" >/dev/null 2>&1; then
  base=localhost/ferrogate-base:$codename
  if ! podman image exists "$base"; then
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d /tmp/ferrogate-base.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    say "no registry: assembling $base with debootstrap from $mirror"
    debootstrap --variant=minbase --include=ca-certificates "$codename" "$rootfs" "$mirror" >&2
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    tar --numeric-owner -C "$rootfs" -c . \
      | podman import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
  fi
fi
say "base $base"

# How this machine lets podman start a container: its defaults first; else runc (crun cannot
# run on a hybrid cgroup hierarchy); else limits a sandbox allows (this shell's hard limit of
# open files, 4096 processes) instead of podman's defaults.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
runtime=() limits=()
started=false
for attempt in default runc limits runc+limits; do
  case "$attempt" in
    default) runtime=() limits=() ;;
    runc)
      command -v runc >/dev/null 2>&1 \
        || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
      runtime=(--runtime runc) limits=() ;;
    limits) runtime=() limits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096) ;;
    runc+limits) runtime=(--runtime runc) ;;
  esac
  if podman "${runtime[@]}" run --rm "${limits[@]}" "$base" true >/dev/null 2>&1; then
    started=true
    break
  fi
done
[ "$started" = true ] || fail "podman cannot start a container here: $(podman run --rm "$base" true 2>&1)"
[ "$attempt" = default ] || say "podman starts containers here with: ${runtime[*]} ${limits[*]}"

scripts/setup.sh --build >&2
bin=$(scripts/build-release.sh --no-default-features)
context=target/image-context
rm -rf "$context" && mkdir -p "$context/conf"
strip -o "$context/ferrogate" "$bin"
cp conf/container.yaml "$context/conf/"
podman "${runtime[@]}" build --format docker "${limits[@]}" --build-arg "RUNTIME_BASE=$base" \
  --target prebuilt -t "$image" -f Containerfile "$context" >&2
rm -rf "$context"

# Once: start it with its default configuration and wait for its own health check.
name=ferrogate-image-check-$$
podman "${runtime[@]}" run -d --name "$name" "${limits[@]}" "$image" >/dev/null 2>&1 \
  || fail "the image does not start: $(podman logs "$name" 2>&1 | tail -n 20)"
trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
healthy=false
for _ in $(seq 1 50); do
  if podman healthcheck run "$name" >/dev/null 2>&1; then healthy=true; break; fi
  sleep 0.2
done
[ "$healthy" = true ] || fail "no healthy /healthz: $(podman logs "$name" 2>&1 | tail -n 20)"
user=$(podman exec "$name" id -u)
[ "$user" = 65532 ] || fail "the daemon runs as uid $user"
podman stop -t 15 "$name" >/dev/null 2>&1
status=$(podman inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || fail "the daemon exited with $status on SIGTERM"
say "$image starts, answers /healthz as uid 65532, stops cleanly on SIGTERM"
echo "$image"
