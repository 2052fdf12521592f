#!/usr/bin/env python3
"""WebSocket clients for the profile-guided build's training run (scripts/pgo/train.sh): CONNS
connections to wss://127.0.0.1:PORT/ws at once, each sending MESSAGES masked text frames and
checking every echo, then closing. Exits non-zero when any echo is missing or wrong.

    ws_client.py PORT CONNS MESSAGES
"""

import asyncio
import base64
import os
import ssl
import struct
import sys

import ws


async def client(port, n, messages):
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls,
                                                   server_hostname="localhost")
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"connection {n}: no upgrade: {head[:60]!r}")
    for i in range(messages):
        payload = (f"message {i} of connection {n} " * (1 + i % 8)).encode()
        writer.write(ws.encode(1, payload, masked=True))
        await writer.drain()
        opcode, echo = await ws.read(reader)
        if opcode != 1 or echo != payload:
            raise RuntimeError(f"connection {n}: echo {i} differs")
    writer.write(ws.encode(8, struct.pack("!H", 1000), masked=True))
    await writer.drain()
    await ws.read(reader)
    writer.close()


async def main(port, conns, messages):
    await asyncio.gather(*(client(port, n, messages) for n in range(conns)))
    print(f"ws: {conns} connections x {messages} messages echoed")


if __name__ == "__main__":
    asyncio.run(main(*(int(a) for a in sys.argv[1:4])))
