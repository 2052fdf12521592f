#!/usr/bin/env python3
"""Side-by-side benchmark driver for benches/peers.sh (run that, not this).

Starts one nginx backend and the ferrogate demo backend (WebSocket echo, SSE), then for each proxy
in turn (ferrogate, HAProxy, nginx, Caddy; one worker thread each, same certificate, same routes)
measures: HTTPS keep-alive requests/s with p50/p99 (wrk), new TLS connections/s (wrk with
`Connection: close`), h2 multiplexed requests/s (h2load), RSS per idle WebSocket, time to first
byte added on an SSE stream, requests failed during 20 configuration reloads under load, and
the time an 8 MiB h2 upload takes through a relay that adds 25 ms each way (a 50 ms path).
Only loopback addresses are used; every load run is bounded in time or count.

On a machine with two CPUs or more the proxy under test runs alone on the last CPU and
everything else (the load generators, the backends, this script) on the others (PIN=0 turns
this off): where the proxy shares its CPU with the client and the backend, the scheduler's
placement and wake-up preemption are part of what is measured, and they differ from run to run
more than the proxies do.

THINK_MS=N makes each keep-alive connection pause N ms between its requests, so that the
latency row compares the proxies at the same offered load below saturation.

FERROGATE_BIN picks the ferrogate under test (default target/release/ferrogate; the build that
ships is target/pgo/optimized/release/ferrogate, from scripts/build-release.sh); DEMO_BIN the one
that runs the demo backend (default target/release/ferrogate, built with the `demo` feature).
"""

import asyncio
import json
import os
import re
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "target" / "bench"
BIN = Path(os.environ.get("FERROGATE_BIN", ROOT / "target" / "release" / "ferrogate"))  # override for A/B runs
# The backend for WebSocket, SSE and uploads (`ferrogate demo-backend`): a build with the default
# `demo` feature, so FERROGATE_BIN may be one without it (the package's profile-guided build).
DEMO_BIN = Path(os.environ.get("DEMO_BIN", ROOT / "target" / "release" / "ferrogate"))
DURATION = int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
# 10,000 is the goal; a proxy holds two descriptors per WebSocket, so the count is capped below
# half of the per-process descriptor limit (20,000 on the machines this ran on).
WS_CONNECTIONS = int(os.environ.get("WS_CONNECTIONS", "9000"))
RELOADS = int(os.environ.get("RELOADS", "20"))
WARMUP = int(os.environ.get("WARMUP", "1"))  # seconds of keep-alive load before it is measured
# Milliseconds each keep-alive connection waits between its requests (0: none, the proxy runs
# flat out). With a pause the offered load is about the same for every proxy and below what
# any of them can take, so the latency row compares proxies at equal load rather than restating
# their throughput (at saturation mean latency is connections / throughput).
THINK_MS = int(os.environ.get("THINK_MS", "0"))
SSE_SAMPLES = 20
PROXIES = ["ferrogate", "haproxy", "nginx", "caddy"]
# Which measurements to take (all by default); e.g. ROWS=keepalive,new_tls for a quick A/B.
ALL_ROWS = ["keepalive", "new_tls", "h2", "sse", "websockets", "reloads", "upload"]
ROWS = [r for r in os.environ.get("ROWS", ",".join(ALL_ROWS)).split(",") if r in ALL_ROWS]
NOFILE = 200_000


def cpu_sets():
    """(CPUs for the proxy, CPUs for everything else), or (None, None) when not pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if os.environ.get("PIN", "1") == "0" or len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


PROXY_CPUS, OTHER_CPUS = cpu_sets()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else NOFILE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(NOFILE, target)), max(hard, NOFILE)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=30.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {limit}s")


def tree_pids(pid):
    """The process and its descendants (nginx/haproxy masters fork workers)."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            pids.append(int(child))
            frontier.append(int(child))
    return pids


def cpu_seconds(pid):
    """User and system CPU time of the process and its descendants so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime
            system += int(fields[12])  # stime
        except (OSError, IndexError, ValueError):
            pass
    return user / ticks, system / ticks


def with_cpu(pid, measure):
    """Runs `measure` and adds the proxy's CPU time per request it served (µs): on two cores
    the client itself can be the bottleneck, and this is the proxy's cost either way."""
    user_before, system_before = cpu_seconds(pid)
    result = measure()
    user_after, system_after = cpu_seconds(pid)
    user = user_after - user_before
    spent = user + system_after - system_before
    count = result.get("requests") or 0
    result["cpu_us_per_req"] = spent * 1e6 / count if count else None
    # The kernel's share (sockets, TLS records copied in and out) differs little between
    # proxies doing the same job; the user-space share is the proxy's own code.
    result["user_us_per_req"] = user * 1e6 / count if count else None
    return result


def rss_kib(pid):
    total = 0
    for p in tree_pids(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Proc:
    def __init__(self, name, argv, env=None, cwd=None, log=None, cpus=None):
        self.name = name
        self.log = open(log, "w") if log else subprocess.DEVNULL
        full_env = dict(os.environ)
        full_env.update(env or {})

        def setup():
            raise_nofile()
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.p = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=self.log, stderr=self.log,
                                  stdin=subprocess.DEVNULL, preexec_fn=setup,
                                  start_new_session=True)

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(timeout=10)


def run(argv, timeout):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile)
    return out.stdout + out.stderr


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url, extra=(), duration=DURATION, connections=CONNECTIONS):
    text = run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url],
               timeout=duration + 60)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", text)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    return {
        "rps": float(rate.group(1)) if rate else 0.0,
        "p50_ms": to_ms(*p50.groups()) if p50 else None,
        "p99_ms": to_ms(*p99.groups()) if p99 else None,
        "requests": int(total.group(1)) if total else 0,
        "failed": (int(non2xx.group(1)) if non2xx else 0)
        + (sum(int(g) for g in errors.groups()) if errors else 0),
        "raw": text if not rate else "",
    }


def h2load(url):
    text = run(["h2load", "-t1", "-c16", "-m10", "-D", str(DURATION), url], timeout=DURATION + 60)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", text)
    return {"rps": float(rate.group(1)) if rate else 0.0, "requests": int(done.group(1)) if done else 0}


def client_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def open_websocket(port, ctx, sem, held):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="localhost")
        writer.write(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head[:80])
        held.append(writer)


async def idle_websockets(port, pid):
    ctx, sem, held = client_tls(), asyncio.Semaphore(100), []
    before = rss_kib(pid)
    results = await asyncio.gather(*(open_websocket(port, ctx, sem, held) for _ in range(WS_CONNECTIONS)),
                                   return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, Exception))
    await asyncio.sleep(2)
    after = rss_kib(pid)
    for writer in held:
        writer.close()
    opened = len(held)
    return {"opened": opened, "failed": failed,
            "rss_per_ws_kib": (after - before) / opened if opened else None,
            "rss_before_kib": before, "rss_after_kib": after}


async def first_event_ms(port, tls):
    ctx = client_tls() if tls else None
    samples = []
    for _ in range(SSE_SAMPLES):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="localhost" if tls else None)
        start = time.perf_counter()
        writer.write(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(b"data:"), 10)
        samples.append((time.perf_counter() - start) * 1000)
        writer.close()
    return statistics.median(samples)


def write_certificate(dir):
    cert, key = dir / "cert.pem", dir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-days", "2", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    (dir / "combined.pem").write_text(cert.read_text() + key.read_text())
    return cert, key


def backend_nginx(dir, port):
    conf = dir / "backend-nginx.conf"
    conf.write_text(f"""
worker_processes 1; daemon off; pid {dir}/backend-nginx.pid; error_log {dir}/backend-nginx.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19900; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} reuseport backlog=4096;
    keepalive_requests 1000000;
    location / {{ return 200 "hello from the backend\\n"; }}
  }}
}}
""")
    return Proc("backend", ["nginx", "-c", str(conf), "-p", str(dir)])


# What ferrogate does to every proxied request by default, asked of the peers too so that each
# does the same job: X-Forwarded-For / -Proto / -Host, X-Real-IP and X-Client-IP to the backend, and
# an X-Request-ID (fresh, 128 random bits) sent to the backend and returned to the client. Caddy
# sets the three X-Forwarded-* headers by itself.
NGINX_FORWARDED = ("proxy_set_header Host $host; proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
                   "proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; "
                   "proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Client-IP $remote_addr; "
                   "proxy_set_header X-Request-ID $request_id;")
CADDY_FORWARDED = ("header_up X-Real-IP {remote_host}\n      header_up X-Client-IP {remote_host}\n"
                   "      header_up X-Request-ID {http.request.uuid}")


def configs(dir, cert, key, port, backend, demo, admin, variant=0):
    """The same routes and the same per-request job for every proxy (see NGINX_FORWARDED);
    `variant` changes nothing observable (for reloads)."""
    return {
        "ferrogate": f"""
state_dir: {dir}/ferrogate-state
workers: 1
listeners: {{ https: 127.0.0.1:{port} }}
admin: {{ listen: 127.0.0.1:{admin} }}
tls: {{ certificates: [ {{ name: bench, cert: {cert}, key: {key} }} ] }}
routes:
  - {{ name: ws, path_prefix: /ws, upstream: demo }}
  - {{ name: events, path_prefix: /events, upstream: demo }}
  - {{ name: upload, path_prefix: /upload, upstream: demo }}
  - {{ name: backend, upstream: backend }}
upstreams:
  backend: {{ servers: [ {{ address: 127.0.0.1:{backend} }} ], timeouts: {{ read: 60s }} }}
  demo: {{ servers: [ {{ address: 127.0.0.1:{demo} }} ], timeouts: {{ read: 60s, websocket_idle: 1h }} }}
# variant {variant}
""",
        "haproxy": f"""
global
  nbthread 1
  maxconn 9800
defaults
  mode http
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:{port} ssl crt {dir}/combined.pem alpn h2,http/1.1
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Client-IP %[src]
  unique-id-format %[uuid()]
  unique-id-header X-Request-ID
  http-response set-header X-Request-ID %[unique-id]
  acl demo path_beg /ws /events /upload
  use_backend demo if demo
  default_backend be
backend be
  server b1 127.0.0.1:{backend}
backend demo
  server d1 127.0.0.1:{demo}
# variant {variant}
""",
        "nginx": f"""
worker_processes 1; daemon off; pid {dir}/proxy-nginx.pid; error_log {dir}/proxy-nginx.err;
worker_rlimit_nofile 20000;
events {{ worker_connections 19900; }}
http {{
  access_log off;
  upstream be {{ server 127.0.0.1:{backend}; keepalive 128; }}
  upstream demo {{ server 127.0.0.1:{demo}; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert}; ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    add_header X-Request-ID $request_id always;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; {NGINX_FORWARDED} }}
    location /ws {{ proxy_pass http://demo; proxy_http_version 1.1; proxy_read_timeout 1h;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"; {NGINX_FORWARDED} }}
    location /events {{ proxy_pass http://demo; proxy_http_version 1.1; proxy_buffering off;
      {NGINX_FORWARDED} }}
    location /upload {{ proxy_pass http://demo; proxy_http_version 1.1; client_max_body_size 0;
      {NGINX_FORWARDED} }}
  }}
}}
# variant {variant}
""",
        "caddy": f"""
{{
  admin 127.0.0.1:{admin}
  auto_https off
  servers {{
    protocols h1 h2
  }}
}}
https://localhost:{port} {{
  bind 127.0.0.1
  tls {cert} {key}
  header X-Request-ID {{http.request.uuid}}
  handle /ws* {{
    reverse_proxy 127.0.0.1:{demo} {{
      {CADDY_FORWARDED}
    }}
  }}
  handle /events* {{
    reverse_proxy 127.0.0.1:{demo} {{
      flush_interval -1
      {CADDY_FORWARDED}
    }}
  }}
  handle /upload* {{
    reverse_proxy 127.0.0.1:{demo} {{
      {CADDY_FORWARDED}
    }}
  }}
  handle {{
    reverse_proxy 127.0.0.1:{backend} {{
      {CADDY_FORWARDED}
    }}
  }}
}}
# variant {variant}
""",
    }


def start_proxy(name, dir, conf_path):
    """Starts proxy `name` on the proxy's CPUs (see cpu_sets)."""
    env = None
    if name == "ferrogate":
        argv = [str(BIN), "run", "--config", str(conf_path)]
        env = {"FERROGATE_LOG": os.environ.get("FERROGATE_LOG", "warn")}
    elif name == "haproxy":
        argv = ["haproxy", "-W", "-db", "-f", str(conf_path)]
    elif name == "nginx":
        argv = ["nginx", "-c", str(conf_path), "-p", str(dir)]
    else:
        argv = ["caddy", "run", "--config", str(conf_path), "--adapter", "caddyfile"]
        env = {"GOMAXPROCS": "1", "HOME": str(dir), "XDG_DATA_HOME": str(dir), "XDG_CONFIG_HOME": str(dir)}
    return Proc(name, argv, env=env, log=dir / f"{name}.log", cpus=PROXY_CPUS)


def reload_proxy(name, proc, conf_path, text, admin):
    conf_path.write_text(text)
    if name == "ferrogate":
        return  # the file watch picks the change up
    if name == "haproxy":
        os.kill(proc.p.pid, signal.SIGUSR2)
    elif name == "nginx":
        os.kill(proc.p.pid, signal.SIGHUP)
    else:
        run(["caddy", "reload", "--config", str(conf_path), "--adapter", "caddyfile",
             "--address", f"127.0.0.1:{admin}", "--force"], timeout=30)


def reloads_under_load(name, proc, conf_path, all_configs, port, admin):
    duration = max(DURATION * 2, RELOADS // 2 + 4)
    loader = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{duration}s", f"https://localhost:{port}/"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              preexec_fn=raise_nofile)
    time.sleep(1)
    gap = (duration - 3) / RELOADS
    for i in range(RELOADS):
        reload_proxy(name, proc, conf_path, all_configs(i + 1)[name], admin)
        time.sleep(gap)
    text, _ = loader.communicate(timeout=duration + 60)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    total = re.search(r"(\d+) requests in", text)
    failed = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in errors.groups()) if errors else 0)
    return {"requests": int(total.group(1)) if total else 0, "failed": failed}


UPLOAD_BYTES = 8 * 1024 * 1024
UPLOAD_ONE_WAY_DELAY = 0.025  # seconds each way: a 50 ms round trip, a client in another region


def delay_relay(target_port):
    """A TCP relay on loopback that delivers every chunk UPLOAD_ONE_WAY_DELAY after reading it,
    in order, in both directions (the kernel here has no netem). Returns (port, stop)."""
    import threading
    port = free_port()
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        queue = asyncio.Queue()

        async def pump_in():
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                await queue.put((time.monotonic() + UPLOAD_ONE_WAY_DELAY, data))
                if not data:
                    return

        async def pump_out():
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    try:
                        writer.write_eof()
                    except OSError:
                        pass
                    return
                try:
                    writer.write(data)
                    await writer.drain()
                except OSError:
                    return

        await asyncio.gather(pump_in(), pump_out(), return_exceptions=True)

    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))
        client_writer.close()
        up_writer.close()

    started = threading.Event()

    def run_loop():
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(lambda _loop, _context: None)  # resets at teardown are expected
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port))
        started.set()
        loop.run_forever()
        server.close()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    started.wait(10)

    async def cancel_all():
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    def stop():
        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)

    return port, stop


def h2_upload_seconds(dir, port):
    """Median over 3 uploads of UPLOAD_BYTES over h2 through the delay relay: request sent until
    the backend has read the whole body and its answer is back."""
    payload = dir / "upload.bin"
    if not payload.exists():
        payload.write_bytes(os.urandom(UPLOAD_BYTES))
    relay_port, stop = delay_relay(port)
    times = []
    try:
        for _ in range(3):
            out = dir / "upload.out"
            text = run(["curl", "-sk", "--http2", "--max-time", "60", "-o", str(out), "-w", "%{http_code} %{time_total}",
                        "--data-binary", f"@{payload}", f"https://localhost:{relay_port}/upload"], timeout=90)
            status, seconds = text.split()
            answer = out.read_text() if out.exists() else ""
            if status != "200" or f"received {UPLOAD_BYTES} bytes" not in answer:
                return None  # the upload did not arrive whole: no figure rather than a wrong one
            times.append(float(seconds))
    finally:
        stop()
    return statistics.median(times)


def bench_proxy(name, dir, cert, key, backend, demo):
    port, admin = free_port(), free_port()
    all_configs = lambda variant: configs(dir, cert, key, port, backend, demo, admin, variant)
    suffix = {"ferrogate": "yaml", "haproxy": "cfg", "nginx": "conf", "caddy": "Caddyfile"}[name]
    conf_path = dir / f"{name}.{suffix}"
    conf_path.write_text(all_configs(0)[name])
    proc = start_proxy(name, dir, conf_path)
    try:
        try:
            wait_port(port)
        except RuntimeError:
            print((dir / f"{name}.log").read_text()[-3000:], file=sys.stderr)
            raise
        time.sleep(0.5)
        url = f"https://localhost:{port}/"
        result = {}
        if "keepalive" in ROWS:
            # Warm up first: the 64 connections' handshakes and first server connections are
            # the new-TLS row's business, and whatever a proxy builds lazily is built.
            pace = []
            if THINK_MS > 0:
                script = dir / "think.lua"
                script.write_text(f"function delay()\n  return {THINK_MS}\nend\n")
                pace = ["-s", str(script)]
            if WARMUP > 0:
                wrk(url, extra=pace, duration=WARMUP)
            result["keepalive"] = with_cpu(proc.p.pid, lambda: wrk(url, extra=pace))
        if "new_tls" in ROWS:
            result["new_tls"] = with_cpu(proc.p.pid, lambda: wrk(url, extra=["-H", "Connection: close"]))
        if "h2" in ROWS:
            result["h2"] = with_cpu(proc.p.pid, lambda: h2load(url))
        if "sse" in ROWS:
            result["sse_first_byte_ms"] = asyncio.run(first_event_ms(port, tls=True))
        if "websockets" in ROWS:
            result["websockets"] = asyncio.run(idle_websockets(port, proc.p.pid))
        if "reloads" in ROWS:
            time.sleep(1)
            result["reloads"] = reloads_under_load(name, proc, conf_path, all_configs, port, admin)
        if "upload" in ROWS:
            result["h2_upload_s"] = h2_upload_seconds(dir, port)
        return result
    finally:
        proc.stop()


def ratio(a, b, higher_is_better=True):
    if not a or not b:
        return "-"
    return f"{(a / b) if higher_is_better else (b / a):.2f}x"


def measured(get, result):
    """The figure `get` reads from one proxy's result, or None when that row was not run."""
    try:
        return get(result)
    except (KeyError, TypeError):
        return None


# The table's figures: label, the row of a proxy's results it comes from, its key there (None: the
# row is the figure itself), whether higher is better, and its format. benches/ab.py reads it too.
FIGURES = [
    ("HTTPS keep-alive req/s", "keepalive", "rps", True, "{:.0f}"),
    ("  p50 latency ms", "keepalive", "p50_ms", False, "{:.2f}"),
    ("  p99 latency ms", "keepalive", "p99_ms", False, "{:.2f}"),
    ("  proxy CPU µs per request", "keepalive", "cpu_us_per_req", False, "{:.1f}"),
    ("    of which user space", "keepalive", "user_us_per_req", False, "{:.1f}"),
    ("new TLS connections/s", "new_tls", "rps", True, "{:.0f}"),
    ("  proxy CPU µs per connection", "new_tls", "cpu_us_per_req", False, "{:.1f}"),
    ("h2 multiplexed req/s", "h2", "rps", True, "{:.0f}"),
    ("  proxy CPU µs per request", "h2", "cpu_us_per_req", False, "{:.1f}"),
    ("    of which user space", "h2", "user_us_per_req", False, "{:.1f}"),
    ("RSS per idle WebSocket KiB", "websockets", "rss_per_ws_kib", False, "{:.1f}"),
    ("SSE first byte ms (added)", "sse_first_byte_ms", None, False, "{:.2f}"),
    ("failed during 20 reloads", "reloads", "failed", False, "{:.0f}"),
    ("h2 upload 8 MiB at 50 ms RTT, s", "h2_upload_s", None, False, "{:.2f}"),
]
# Figures the backend reached directly also has (the ceiling), and the row it has them under.
CEILINGS = {("keepalive", "rps"): "keepalive", ("keepalive", "p50_ms"): "keepalive",
            ("keepalive", "p99_ms"): "keepalive", ("new_tls", "rps"): "new_conn"}


def figure(result, row, key):
    """One figure of one proxy's results, or None when that row was not run."""
    value = result.get(row) if isinstance(result, dict) else None
    if key is None:
        return value if isinstance(value, (int, float)) else None
    return value.get(key) if isinstance(value, dict) else None


def report(results, direct):
    rows = []
    for label, row, key, higher, fmt in FIGURES:
        if row == "sse_first_byte_ms":  # added by the proxy: less the backend's own
            get = lambda r: r["sse_first_byte_ms"] - direct.get("sse_first_byte_ms", 0)
        else:
            get = lambda r, row=row, key=key: figure(r, row, key)
        ceiling = figure(direct, CEILINGS[(row, key)], key) if (row, key) in CEILINGS else None
        rows.append((label, get, higher, ceiling, fmt))
    head = ["metric", "direct"] + PROXIES + [f"fg/{p}" for p in PROXIES[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, get, higher, ceiling, fmt in rows:
        values = {p: measured(get, results[p]) if p in results else None for p in PROXIES}
        cells = [label, fmt.format(ceiling) if ceiling is not None else "-"]
        cells += [fmt.format(values[p]) if values[p] is not None else "-" for p in PROXIES]
        for p in PROXIES[1:]:
            fg, peer = values["ferrogate"], values[p]
            if label.startswith("failed"):
                cells.append("-")
            else:
                cells.append(ratio(fg, peer, higher) if fg is not None and peer is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(results, direct, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("HTTPS keep-alive req/s", lambda r: r["keepalive"]["rps"], measured(lambda d: d["keepalive"]["rps"], direct)),
              ("new TLS connections/s", lambda r: r["new_tls"]["rps"], measured(lambda d: d["new_conn"]["rps"], direct)),
              ("h2 multiplexed req/s", lambda r: r["h2"]["rps"], None),
              ("RSS per idle WebSocket (KiB)", lambda r: r["websockets"]["rss_per_ws_kib"] or 0, None),
              ("h2 upload 8 MiB at 50 ms RTT (s)", lambda r: r["h2_upload_s"], None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(20, 4))
    for ax, (title, get, ceiling) in zip(axes, panels):
        names = [p for p in PROXIES if p in results and measured(get, results[p]) is not None]
        values = [measured(get, results[p]) for p in names]
        ax.bar(names, values, color=["#d9480f" if n == "ferrogate" else "#868e96" for n in names])
        if ceiling:
            ax.axhline(ceiling, color="#2b8a3e", linestyle="--", label="backend direct")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("ferrogate vs HAProxy, nginx, Caddy (one worker thread each, loopback)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    raise_nofile()
    if OTHER_CPUS:
        os.sched_setaffinity(0, OTHER_CPUS)  # inherited by the backends and load generators
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ferrogate-peers-") as tmp:
        dir = Path(tmp)
        cert, key = write_certificate(dir)
        backend_port, demo_port = free_port(), free_port()
        backend = backend_nginx(dir, backend_port)
        demo = Proc("demo", [str(DEMO_BIN), "demo-backend", "--listen", f"127.0.0.1:{demo_port}"],
                    env={"FERROGATE_LOG": "warn"})
        try:
            wait_port(backend_port)
            wait_port(demo_port)
            direct_url = f"http://127.0.0.1:{backend_port}/"
            direct = {}
            if os.environ.get("DIRECT", "1") != "0":  # DIRECT=0 skips the ceiling (quick A/B runs)
                direct = {"keepalive": wrk(direct_url),
                          "new_conn": wrk(direct_url, extra=["-H", "Connection: close"]),
                          "sse_first_byte_ms": asyncio.run(first_event_ms(demo_port, tls=False))}
            results = {}
            only = [p for p in sys.argv[1:] if p in PROXIES] or PROXIES
            for name in only:
                print(f"== {name}", flush=True)
                results[name] = bench_proxy(name, dir, cert, key, backend_port, demo_port)
        finally:
            demo.stop()
            backend.stop()
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release,
               "proxy_cpus": sorted(PROXY_CPUS) if PROXY_CPUS else None,
               "duration_s": DURATION, "connections": CONNECTIONS, "websockets": WS_CONNECTIONS}
    (OUT / "peers.json").write_text(json.dumps({"machine": machine, "direct": direct, "results": results}, indent=2))
    table = report(results, direct)
    (OUT / "peers.md").write_text(table + "\n")
    print(table)
    try:
        chart(results, direct, OUT / "peers.png")
        print(f"chart: {OUT / 'peers.png'}")
    except Exception as e:  # the table is the result; the chart is a convenience
        print(f"no chart: {e}")


if __name__ == "__main__":
    main()
