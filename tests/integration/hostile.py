"""Hostile clients for the API port, as an attacker with nothing but a throw-away self-signed
client certificate would run them (tests/integration/test_hostile.py, tests/perf/bench_hostile.py).

Each kind runs in its own processes, from its own loopback source addresses (127.0.x.y), bounded
in time and in count:
  - holders keep connections open: a third only TCP-connect and never start TLS, the others shake
    hands and then never send a request; any connection the node closes is opened again;
  - flooders send refused requests (an 8 KiB User-Agent and a long path) as fast as they can, one
    per connection, and count what happened: answered 403, or closed before an answer.
"""
import multiprocessing as mp
import resource
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path

UA_8K = "Mozilla/5.0 " + "A" * (8192 - 12)


def make_stranger(root: Path, name="attacker"):
    """A self-signed client certificate nobody mapped; returns (cert, key) paths."""
    cert, key = root / f"{name}.pem", root / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", f"/CN={name}", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def _context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _connect(port, source, timeout):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    return raw


def _hold(port, cert, key, sources, per_source, stop, seconds, opened):
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    ctx = _context(cert, key)
    conns = {}
    end = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < end:
        for source in sources:
            for slot in range(per_source):
                if (source, slot) in conns:
                    continue
                try:
                    sock = _connect(port, source, 2)
                    if slot % 3 != 0:
                        sock = ctx.wrap_socket(sock)
                    sock.setblocking(False)
                    conns[(source, slot)] = sock
                    with opened.get_lock():
                        opened.value += 1
                except (OSError, ssl.SSLError):
                    pass
        # A holder's socket turns readable when the node closes it: open another.
        ready, _, _ = select.select(list(conns.values()), [], [], 0.2) if conns else ([], [], [])
        for key_, sock in list(conns.items()):
            if sock in ready:
                try:
                    sock.close()
                except OSError:
                    pass
                del conns[key_]
    for sock in conns.values():
        sock.close()


class HostileLoad:
    """Holders and flooders against 127.0.0.1:port. `holders`: connections to keep open (spread
    over sources, `per_source` each); `flood`: refused requests to send in all (0: none), over
    `flood_sources` sources with `flood_procs` processes. Everything stops at stop() or after
    `seconds`."""

    def __init__(self, port, cert, key, holders=0, per_source=16, flood=0, flood_sources=8, flood_procs=2,
                 seconds=120, subnet=1):
        self.stop_event = mp.Event()
        self.opened = mp.Value("q", 0)
        self.attempts = mp.Value("q", 0)
        self.answered = mp.Value("q", 0)
        self.cut_off = mp.Value("q", 0)
        self.procs = []
        self.flooders = []
        n_sources = (holders + per_source - 1) // per_source
        hold_sources = [f"127.{subnet}.{i // 250}.{i % 250 + 1}" for i in range(n_sources)]
        sources_per_proc = max(1, 250 // per_source)  # about 250 connections per process
        for j in range(0, len(hold_sources), sources_per_proc):
            chunk = hold_sources[j:j + sources_per_proc]
            self.procs.append(mp.Process(target=_hold, args=(port, cert, key, chunk, per_source, self.stop_event,
                                                             seconds, self.opened), daemon=True))
        if flood:
            flood_src = [f"127.{subnet + 1}.0.{i + 1}" for i in range(flood_sources)]
            per = max(1, flood // flood_procs)
            for j in range(flood_procs):
                self.flooders.append(mp.Process(target=_flood,
                                                args=(port, cert, key, flood_src[j::flood_procs] or flood_src,
                                                      self.stop_event, seconds, per, self.attempts, self.answered,
                                                      self.cut_off), daemon=True))
            self.procs += self.flooders

    def start(self):
        for p in self.procs:
            p.start()
        return self

    def flood_done(self, timeout):
        """Waits for the flooders to finish their count; True when they did."""
        end = time.monotonic() + timeout
        for p in self.flooders:
            p.join(max(0.0, end - time.monotonic()))
            if p.is_alive():
                return False
        return True

    def stop(self):
        self.stop_event.set()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def _flood(port, cert, key, sources, stop, seconds, count, attempts, answered, cut_off):
    ctx = _context(cert, key)
    request = (f"POST /api/v1/certificate/request/{'x' * 2000} HTTP/1.1\r\nHost: localhost\r\n"
               f"User-Agent: {UA_8K}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").encode()
    end = time.monotonic() + seconds
    for i in range(count):
        if stop.is_set() or time.monotonic() >= end:
            return
        with attempts.get_lock():
            attempts.value += 1
        try:
            sock = ctx.wrap_socket(_connect(port, sources[i % len(sources)], 5))
            sock.sendall(request)
            data = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            sock.close()
            counter = answered if data.startswith(b"HTTP/1.1 403") else cut_off
        except (OSError, ssl.SSLError):
            counter = cut_off
        with counter.get_lock():
            counter.value += 1
