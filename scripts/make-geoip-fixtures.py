#!/usr/bin/env python3
"""Writes the tiny MaxMind-format (.mmdb) country databases the tests and conf/edge-rules.yaml use.

The MaxMind DB format (https://maxmind.github.io/MaxMind-DB/) is a binary search tree over the
address bits, a data section and a metadata map. This writes an IPv6 database (IPv4 under ::/96,
as GeoLite2 does) with 24-bit records and GeoLite2-Country-shaped records, from the networks
below. Deterministic: running it again writes the same bytes.

    scripts/make-geoip-fixtures.py          (writes tests/fixtures/geoip/*.mmdb and conf/edge-rules/)

Networks are documentation ranges (RFC 5737, RFC 3849), so no real address is placed anywhere.
"""

import ipaddress
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# countries.mmdb: what the unit and integration tests expect.
FIRST = [
    ("192.0.2.0/24", {"country": {"iso_code": "DE"}}),
    ("198.51.100.0/24", {"country": {"iso_code": "RU"}}),
    # Only a registered country (anycast, satellite providers).
    ("203.0.113.0/24", {"registered_country": {"iso_code": "NL"}}),
    ("2001:db8::/32", {"country": {"iso_code": "FR"}}),
]
# countries-v2.mmdb: the same with 192.0.2.0/24 moved to FR (a database update).
SECOND = [(net, {"country": {"iso_code": "FR"}}) if net == "192.0.2.0/24" else (net, rec)
          for net, rec in FIRST]

BUILD_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def control(kind, size):
    """Control byte(s) for a value of `kind` (1-15) and `size` (< 285 here)."""
    assert size < 285
    small, extra = (size, b"") if size < 29 else (29, bytes([size - 29]))
    if kind <= 7:
        return bytes([(kind << 5) | small]) + extra
    return bytes([small, kind - 7]) + extra


def uint(kind, number):
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return control(kind, len(raw)) + raw


def encode(value):
    if isinstance(value, str):
        raw = value.encode()
        return control(2, len(raw)) + raw
    if isinstance(value, dict):
        out = control(7, len(value))
        for key, item in value.items():
            out += encode(key) + encode(item)
        return out
    if isinstance(value, list):
        return control(11, len(value)) + b"".join(encode(v) for v in value)
    if isinstance(value, tuple):  # (kind, number): uint16 = 5, uint32 = 6, uint64 = 9
        return uint(*value)
    raise TypeError(value)


def bits(network):
    """The network's prefix bits in a 128-bit tree (IPv4 under ::/96)."""
    net = ipaddress.ip_network(network)
    if net.version == 4:
        value, length = int(net.network_address), 96 + net.prefixlen
    else:
        value, length = int(net.network_address), net.prefixlen
    return [(value >> (127 - i)) & 1 for i in range(length)]


def build(entries):
    # Trie nodes: [left, right], each None (empty), ("node", index) or ("data", offset).
    nodes = [[None, None]]
    data, offsets = b"", {}
    for network, record in entries:
        encoded = encode(record)
        if encoded not in offsets:
            offsets[encoded] = len(data)
            data += encoded
        path = bits(network)
        node = 0
        for depth, bit in enumerate(path):
            if depth == len(path) - 1:
                nodes[node][bit] = ("data", offsets[encoded])
                break
            child = nodes[node][bit]
            if child is None:
                nodes.append([None, None])
                child = ("node", len(nodes) - 1)
                nodes[node][bit] = child
            assert child[0] == "node", "overlapping networks"
            node = child[1]
    count = len(nodes)

    def record(value):
        if value is None:
            return count
        kind, number = value
        return number if kind == "node" else count + 16 + number

    tree = b""
    for left, right in nodes:
        tree += struct.pack(">I", record(left))[1:] + struct.pack(">I", record(right))[1:]
    metadata = {
        "binary_format_major_version": (5, 2),
        "binary_format_minor_version": (5, 0),
        "build_epoch": (9, BUILD_EPOCH),
        "database_type": "ferrogate-test-Country",
        "description": {"en": "ferrogate test countries (documentation ranges)"},
        "ip_version": (5, 6),
        "languages": ["en"],
        "node_count": (6, count),
        "record_size": (5, 24),
    }
    return tree + bytes(16) + data + b"\xab\xcd\xefMaxMind.com" + encode(metadata)


def write(path, entries):
    path = os.path.join(ROOT, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as out:
        out.write(build(entries))
    print(f"wrote {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    write("tests/fixtures/geoip/countries.mmdb", FIRST)
    write("tests/fixtures/geoip/countries-v2.mmdb", SECOND)
    write("conf/edge-rules/countries.mmdb", FIRST)
