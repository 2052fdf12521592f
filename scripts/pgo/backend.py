#!/usr/bin/env python3
"""The backend the profile-guided build trains ferrogate against (scripts/pgo/train.sh).

Python's standard library only, so a build machine needs nothing more: HTTP/1.1 with keep-alive
on every port given, answering
  GET  /                          a small page (Content-Length)
  POST /upload                    reads the body (Content-Length or chunked), answers its size
  GET  /events                    a short Server-Sent Events stream (chunked)
  GET  /ws                        a WebSocket echo (RFC 6455, text and binary, until close)
  GET  /v1/models, /metrics       an OpenAI-compatible node's model list and vLLM-style gauges
  POST /v1/chat/completions       a completion: streamed as SSE when the body asks for it

    backend.py PORT [PORT...]
"""

import asyncio
import base64
import hashlib
import json
import sys

import ws

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC11B65"
PAGE = b"hello from the training backend\n"
MODELS = json.dumps({"object": "list", "data": [{"id": "train-llama", "object": "model"}]}).encode()
METRICS = (b"vllm:num_requests_running{model_name=\"train-llama\"} 0\n"
           b"vllm:num_requests_waiting{model_name=\"train-llama\"} 0\n"
           b"vllm:gpu_cache_usage_perc{model_name=\"train-llama\"} 0.1\n")


async def read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def read_body(reader, headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


def respond(writer, status, body, content_type="text/plain", close=False):
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {len(body)}\r\n"
                 f"{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode() + body)


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


async def stream(writer, events):
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
    for event in events:
        writer.write(chunk(event))
        await writer.drain()
    writer.write(b"0\r\n\r\n")


def completion_events(n):
    for i in range(n):
        delta = {"id": "c", "object": "chat.completion.chunk", "model": "train-llama",
                 "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
        yield b"data: " + json.dumps(delta).encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


async def websocket(reader, writer, headers):
    accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + WS_GUID).digest())
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    while True:
        opcode, payload = await ws.read(reader)
        writer.write(ws.encode(opcode, payload, masked=False))
        await writer.drain()
        if opcode == 8:
            return


async def serve(reader, writer):
    try:
        while True:
            method, target, headers = await read_head(reader)
            body = await read_body(reader, headers)
            path = target.split("?", 1)[0]
            close = headers.get("connection", "").lower() == "close"
            if path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
                await websocket(reader, writer, headers)
                break
            if path == "/events":
                await stream(writer, (b"data: tick %d\n\n" % i for i in range(20)))
            elif path == "/v1/chat/completions" and method == "POST":
                request = json.loads(body or b"{}")
                if request.get("stream"):
                    await stream(writer, completion_events(16))
                else:
                    answer = {"id": "c", "object": "chat.completion", "model": "train-llama",
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": "ok"}}],
                              "usage": {"prompt_tokens": 8, "completion_tokens": 1}}
                    respond(writer, "200 OK", json.dumps(answer).encode(), "application/json")
            elif path == "/v1/models":
                respond(writer, "200 OK", MODELS, "application/json")
            elif path == "/metrics":
                respond(writer, "200 OK", METRICS)
            elif path == "/upload":
                respond(writer, "200 OK", b"%d bytes\n" % len(body))
            else:
                respond(writer, "200 OK", PAGE, close=close)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, KeyError):
        pass
    finally:
        writer.close()


async def main(ports):
    servers = [await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024) for port in ports]
    print("backend: listening on", *ports, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main([int(p) for p in sys.argv[1:]]))
