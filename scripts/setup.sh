#!/usr/bin/env bash
# Installs what building and testing ferrogate needs on a fresh Debian machine that already has the
# Rust toolchain: cmake (pingora's zlib-ng build), and for the ACME integration tests Pebble
# (+ pebble-challtestsrv), bind9 (named, for RFC 2136), dig, openssl and curl. Safe to run again;
# installs only what is missing.
set -euo pipefail

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v pebble >/dev/null 2>&1 || need+=(pebble)
{ command -v named || test -x /usr/sbin/named; } >/dev/null 2>&1 || need+=(bind9)
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  echo "setup: installing ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (the Rust toolchain) is required" >&2; exit 1; }
echo "setup: ok"
