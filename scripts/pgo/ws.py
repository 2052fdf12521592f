"""WebSocket framing (RFC 6455) for the profile-guided build's training run: the backend's echo
(scripts/pgo/backend.py) and its clients (scripts/pgo/ws_client.py). Standard library only."""

import os
import struct


def encode(opcode, payload, masked):
    """One final frame; a client's frames are masked, a server's are not."""
    header = bytes([0x80 | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        header += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        header += bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + unmask(mask, payload)


def unmask(mask, data):
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def read(reader):
    """The next frame from an asyncio reader: (opcode, payload), unmasked."""
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    mask = await reader.readexactly(4) if b1 & 0x80 else None
    payload = await reader.readexactly(length)
    return b0 & 0x0F, unmask(mask, payload) if mask else payload
