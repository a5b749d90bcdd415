"""The ops listener of a real node: what a load balancer's health check sees over TLS (the
API's certificate, no client certificate) or plain HTTP, a node cut off from its CA going
DOWN and coming back UP, a drained node (service mode kept across a restart) answering
DRAIN, and the two ports never serving each other's paths."""
import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

PROMTOOL = "/usr/bin/promtool"  # Debian's prometheus package (deploy/install-deps)
LB_AGENT = h.ADCSC.parent / "adcsc-lb-agent"
F5_MONITOR = Path(__file__).resolve().parents[2] / "lb-agent" / "f5-external-monitor"


def ops_section(port, tls=True, admin_ca=None, admin_pins=(), max_connections=None):
    admin = ""
    if max_connections is not None:
        admin += f"max_connections = {max_connections}\n"
    if admin_pins:
        admin += f'admin_ca_file = "{admin_ca}"\nadmin_pins = [{", ".join(repr(p).replace(chr(39), chr(34)) for p in admin_pins)}]\n'
    return f"""
[ops]
listen = "127.0.0.1:{port}"
tls = {"true" if tls else "false"}
probe_interval_ms = 200
{admin}"""


def pin_of(cert_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).fingerprint(hashes.SHA256()).hex()


def get(url, ctx=None):
    """(status, body) of a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class OpsListener(unittest.TestCase):
    def test_an_unserved_api_call_is_answered_as_before_logged_once_by_shape_and_counted(self):
        """Jamf Pro's revoke call is not public (docs/api.md, "Calls adcsc does not serve"): its
        first call shows its shape in the log and /metrics, names only, never values."""
        with h.TempRoot() as root:
            pki = h.Pki(root)
            port = h.free_port()
            node = h.Node(root, pki, extra=ops_section(port, tls=False)).start()
            try:
                secret_values = ["61000000A1B2C3", "key-compromise-by-kim", "hunter2", "00008030-0011"]
                for _ in range(2):
                    status, body = h.call(node, "POST", "/api/v1/certificate/revoke?token=hunter2",
                                          body={"serialNumber": "61000000A1B2C3", "reason": "key-compromise-by-kim",
                                                "device": {"udid": "00008030-0011"}},
                                          headers={"X-Jamf-Trace": "hunter2"})
                    self.assertEqual(status, 404, body)
                    self.assertEqual(body, {"request-status": {
                        "status": "NOT_FOUND", "message": "no such endpoint: /api/v1/certificate/revoke"}})
                status, _ = h.call(node, "DELETE", "/api/v1/certificate/61000000a1b2c3")
                self.assertEqual(status, 404)

                def unserved():
                    return [l for l in node.log_lines() if l.get("event") == "unserved_api_call"]

                lines = h.wait_for(lambda: len(unserved()) >= 2 and unserved(), timeout=10,
                                   what="two unserved_api_call lines")
                self.assertEqual(len(lines), 2, lines)
                post = lines[0]
                self.assertEqual((post["method"], post["path"], post["status"]),
                                 ("POST", "/api/v1/certificate/revoke", 404))
                self.assertEqual(post["query_keys"], ["token"])
                self.assertIn("x-jamf-trace", post["header_names"])
                self.assertIn("content-type", post["header_names"])
                self.assertEqual(post["body_keys"], ["device", "device.udid", "reason", "serialNumber"])
                self.assertEqual(post["client_pin"], pki.pin)
                self.assertEqual((lines[1]["method"], lines[1]["path"]), ("DELETE", "/api/v1/certificate/{id}"))
                text = (root / "node-a.log").read_text()
                for value in secret_values:
                    self.assertNotIn(value, text)
                status, metrics = get(f"http://127.0.0.1:{port}/metrics")
                self.assertEqual(status, 200)
                self.assertIn('adcsc_api_unserved_requests_total{method="POST",path="/api/v1/certificate/revoke"} 2',
                              metrics)
                self.assertIn('adcsc_api_unserved_requests_total{method="DELETE",path="/api/v1/certificate/{id}"} 1',
                              metrics)
            finally:
                node.stop()

    def test_tls_health_follows_the_ca_and_the_api_port_does_not_serve_it(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            port = h.free_port()
            node = h.Node(root, pki, ca_section=h.icpr_ca_section(emulator), extra=ops_section(port)).start()
            try:
                ctx = ssl.create_default_context(cafile=str(pki.server_ca))  # server authentication only
                base = f"https://localhost:{port}"
                h.wait_for(lambda: get(base + "/health/lb", ctx) == (200, "UP\n"), timeout=20, what="UP")
                status, body = get(base + "/health/ready", ctx)
                self.assertEqual(status, 200, body)
                checks = {c["name"]: c for c in json.loads(body)["checks"]}
                self.assertTrue(checks["store"]["ok"])
                self.assertTrue(checks[f"ca {h.ICPR_DC}\\{h.CA}"]["ok"], checks)
                self.assertIn("days until the API server certificate expires", checks["certificate"]["detail"])
                self.assertEqual(get(base + "/health/live", ctx)[0], 200)
                status, body = get(base + "/status", ctx)
                self.assertEqual((status, json.loads(body)["status"]), (200, "UP"), body)

                # Metrics count the API's calls, and promtool accepts them.
                st, b = h.submit(node, h.make_csr_b64("metrics-1"), dc=h.ICPR_DC)
                self.assertEqual(st, 200, b)
                self.assertEqual(h.retrieve(node, b["request-id"], dc=h.ICPR_DC)[0], 200)
                status, text = get(base + "/metrics", ctx)
                self.assertEqual(status, 200)
                self.assertIn('adcsc_api_requests_total{endpoint="request",outcome="issued"} 1', text)
                self.assertIn('adcsc_api_requests_total{endpoint="retrieve",outcome="issued"} 1', text)
                self.assertIn('adcsc_service_mode{mode="active"} 1', text)
                self.assertIn('adcsc_api_open_connections', text)
                self.assertIn(f'adcsc_ca_pool_idle_connections{{host="{h.ICPR_DC}"}}', text)
                check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
                self.assertEqual((check.returncode, check.stdout + check.stderr), (0, ""))

                # Cut off from the CA: the load balancer is told DOWN, with the reason on /health/ready,
                # and the lb-agent (no administrator's certificate) finds that reason there.
                agent_port = h.free_port()
                agent = subprocess.Popen([str(LB_AGENT), "--node-url", f"https://localhost:{port}", "--ca-file",
                                          str(pki.server_ca), "--listen", f"127.0.0.1:{agent_port}", "--interval-ms",
                                          "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    emulator.stop()
                    h.wait_for(lambda: get(base + "/health/lb", ctx) == (503, "DOWN\n"), timeout=20, what="DOWN")
                    status, body = get(base + "/health/ready", ctx)
                    self.assertEqual(status, 503)
                    self.assertIn("ca-ping", body)

                    def agent_says_why():
                        try:
                            return agent_check(agent_port).startswith(f"down#ca {h.ICPR_DC}\\{h.CA}: ")
                        except OSError:
                            return False
                    h.wait_for(agent_says_why, timeout=10, what="the agent to give the failing check")
                finally:
                    agent.terminate()
                    agent.wait(timeout=10)
                emulator.start()
                h.wait_for(lambda: get(base + "/health/lb", ctx) == (200, "UP\n"), timeout=20, what="UP again")

                # The ops port never serves the API; the API port never serves health.
                self.assertEqual(get(base + "/api/v1/version", ctx)[0], 404)
                status, _ = h.call(node, "GET", "/health/lb")
                self.assertEqual(status, 404)
            finally:
                node.stop()
                emulator.stop()

    def test_plain_http_and_a_drain_that_survives_a_restart(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            port = h.free_port()
            node = h.Node(root, pki, extra=ops_section(port, tls=False)).start()
            try:
                base = f"http://127.0.0.1:{port}"
                h.wait_for(lambda: get(base + "/health/lb") == (200, "UP\n"), timeout=20, what="UP")
                # An operator drained it (the mode file the ctl command writes), then it restarted.
                self.assertEqual(node.stop(), 0)
                (node.data_dir / "service-mode").write_text("drain\n")
                node.start()
                h.wait_for(lambda: get(base + "/health/lb")[0] != 0, timeout=20, what="the ops listener")
                self.assertEqual(get(base + "/health/lb"), (503, "DRAIN\n"))
                status, body = get(base + "/status")
                self.assertEqual(json.loads(body)["mode"], "drain")
                # Draining takes the node out of new work only: the API still answers.
                status, _ = h.call(node, "GET", "/api/v1/version")
                self.assertEqual(status, 200)
            finally:
                node.stop()

    def test_drain_resume_and_maint_over_the_admin_channel(self):
        with h.TempRoot() as root:
            pki, admin_cert, admin_key, port, node = node_with_admin_channel(root)
            try:
                ctx = ssl.create_default_context(cafile=str(pki.server_ca))
                lb = f"https://localhost:{port}/health/lb"
                h.wait_for(lambda: get(lb, ctx) == (200, "UP\n"), timeout=20, what="UP")

                def ctl(command, cert=admin_cert, key=admin_key):
                    return set_mode(command, port, cert, key, pki)
                out = ctl("drain")
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("node-a: mode drain, the load balancer sees DRAIN", out.stdout)
                self.assertEqual(get(lb, ctx), (503, "DRAIN\n"))
                self.assertEqual(h.call(node, "GET", "/api/v1/version")[0], 200)  # still answers
                out = ctl("maint")
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(get(lb, ctx), (503, "DOWN\n"))
                out = ctl("resume")
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(get(lb, ctx), (200, "UP\n"))

                # Jamf's certificate is trusted for the API but is not an administrator's.
                out = ctl("drain", cert=pki.client_cert, key=pki.client_key)
                self.assertEqual(out.returncode, 1, out.stdout)
                self.assertIn("403", out.stderr)
                self.assertEqual(get(lb, ctx), (200, "UP\n"))
                # A load balancer's check, with no certificate at all, cannot change anything either.
                req = urllib.request.Request(f"https://localhost:{port}/admin/mode", data=b'{"mode":"maint"}',
                                             method="POST")
                try:
                    urllib.request.urlopen(req, context=ctx, timeout=5)
                    self.fail("an anonymous admin request was accepted")
                except urllib.error.HTTPError as e:
                    self.assertEqual(e.code, 403)
                self.assertEqual(node.stop(), 0)
                modes = [l.get("mode") for l in node.log_lines() if l.get("event") == "service_mode"]
                self.assertEqual(modes, ["drain", "maint", "active"])
            finally:
                node.stop()

    def test_status_details_only_for_an_administrator(self):
        with h.TempRoot() as root:
            pki, admin_cert, admin_key, port, node = node_with_admin_channel(root)
            try:
                base = f"https://localhost:{port}"
                anonymous = tls_context(pki)
                h.wait_for(lambda: get(base + "/health/lb", anonymous) == (200, "UP\n"), timeout=20, what="UP")
                status, body = get(base + "/status", anonymous)
                self.assertEqual(status, 200, body)
                self.assertEqual(set(json.loads(body)), {"status", "ready", "live", "mode", "ca_ping_ms"}, body)
                for secret in ("svc-adcsc", "EXAMPLE", h.DC, h.CA, "node-a", "peers", "cluster"):
                    self.assertNotIn(secret, body, "health only for a caller without an administrator's certificate")
                # Jamf's certificate is trusted by the API, but it is not an administrator's.
                status, body = get(base + "/status", tls_context(pki, pki.client_cert, pki.client_key))
                self.assertNotIn("svc-adcsc", body)

                status, body = get(base + "/status", tls_context(pki, admin_cert, admin_key))
                self.assertEqual(status, 200, body)
                j = json.loads(body)
                self.assertEqual(j["node"], "node-a")
                self.assertEqual(j["ca_identity"], "EXAMPLE\\svc-adcsc")
                self.assertEqual(j["cas"], [{"dc": h.DC, "ca": h.CA}])
                self.assertIn(f"ca {h.DC}\\{h.CA}", [c["name"] for c in j["health"]["checks"]])
            finally:
                node.stop()

    def test_a_refused_admin_gets_one_generic_403_and_no_100_continue(self):
        with h.TempRoot() as root:
            pki, admin_cert, admin_key, port, node = node_with_admin_channel(root)
            try:
                h.wait_for(lambda: get(f"https://localhost:{port}/health/lb", tls_context(pki))[0] == 200,
                           timeout=20, what="UP")
                # A certificate from another CA, an expired one from the right CA, Jamf's (trusted,
                # not an administrator's) and none at all: the same answer, byte for byte.
                other_ca_cert, other_ca_key = pki.issue_client(root, "other-ca", signer_key=pki.client_key,
                                                               signer_cert=pki.client_cert)
                now = datetime.datetime.utcnow()
                expired_cert, expired_key = pki.issue_client(
                    root, "expired-admin", not_before=now - datetime.timedelta(days=10),
                    not_after=now - datetime.timedelta(days=1))
                body = b'{"mode":"maint"}'
                head = (f"POST /admin/mode HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n")
                answers = {}
                for name, cert, key in (("untrusted", other_ca_cert, other_ca_key),
                                        ("expired", expired_cert, expired_key),
                                        ("unpinned", pki.client_cert, pki.client_key), ("none", None, None)):
                    first, whole = raw_exchange(port, tls_context(pki, cert, key), head, body)
                    self.assertTrue(first.startswith("HTTP/1.1 403"), f"{name}: {first}")
                    self.assertNotIn("100 Continue", whole, f"{name}: invited to send its body")
                    answers[name] = whole.split("\r\n\r\n", 1)[1]
                self.assertEqual(len(set(answers.values())), 1, answers)
                self.assertEqual(json.loads(answers["untrusted"]), {"error": "forbidden"})
                self.assertEqual(get(f"https://localhost:{port}/health/lb", tls_context(pki)), (200, "UP\n"))
                # The reasons are in the node's log.
                reasons = [l["reason"] for l in node.log_lines() if l.get("event") == "ops_admin_refused"]
                self.assertEqual(len(reasons), 4, reasons)

                # The administrator is invited, sends the body, and the mode changes.
                first, whole = raw_exchange(port, tls_context(pki, admin_cert, admin_key), head, body)
                self.assertTrue(first.startswith("HTTP/1.1 100"), first)
                self.assertIn("HTTP/1.1 200", whole)
                self.assertEqual(get(f"https://localhost:{port}/health/lb", tls_context(pki)), (503, "DOWN\n"))
            finally:
                node.stop()

    def test_connections_over_the_cap_are_closed_and_counted(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            port = h.free_port()
            cap = 3
            node = h.Node(root, pki, extra=ops_section(port, max_connections=cap)).start()
            ctx = tls_context(pki)
            base = f"https://localhost:{port}"
            try:
                h.wait_for(lambda: get(base + "/health/lb", ctx) == (200, "UP\n"), timeout=20, what="UP")
                # Earlier checks' connections are closed (only the scrape itself is open).
                h.wait_for(lambda: metric(base, ctx, "adcsc_ops_open_connections") == 1.0, timeout=20,
                           what="the earlier connections to close")
                held = held_open(port, cap)
                try:
                    # Accepted in order: once the cap is held, the next one is closed at accept.
                    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
                    with extra:
                        self.assertTrue(closed_by_peer(extra, timeout=4), "the connection over the cap stayed open")
                finally:
                    for s in held:
                        s.close()
                # Once they are gone the port answers again, and each refusal was counted: this
                # one, and any scrape that came before the node saw the held connections close.
                refused_scrapes = []

                def refused_metric():
                    try:
                        return metric(base, ctx, "adcsc_ops_refused_connections", raise_errors=True)
                    except OSError:
                        refused_scrapes.append(1)
                        return None
                value = h.wait_for(refused_metric, timeout=20, what="the metric")
                self.assertEqual(value, 1.0 + len(refused_scrapes))
            finally:
                node.stop()

    def test_lb_agent_follows_the_node_and_says_down_when_it_stops_answering(self):
        with h.TempRoot() as root:
            pki, admin_cert, admin_key, port, node = node_with_admin_channel(root)
            agent_port = h.free_port()
            agent = subprocess.Popen([str(LB_AGENT), "--node-url", f"https://localhost:{port}", "--ca-file",
                                      str(pki.server_ca), "--listen", f"127.0.0.1:{agent_port}", "--interval-ms",
                                      "200", "--timeout-ms", "500", "--stale-ms", "1000"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                def says(line):
                    def check():
                        try:
                            return agent_check(agent_port) == line
                        except OSError:  # not listening yet
                            return False
                    return check
                h.wait_for(says("up ready 100%\n"), timeout=20, what="the agent to say up")

                def ctl(command):
                    out = set_mode(command, port, admin_cert, admin_key, pki)
                    self.assertEqual(out.returncode, 0, out.stderr)
                ctl("drain")
                h.wait_for(says("up drain\n"), timeout=5, what="drain")
                ctl("maint")
                h.wait_for(says("maint\n"), timeout=5, what="maint")
                ctl("resume")
                h.wait_for(says("up ready 100%\n"), timeout=5, what="up again")

                # The node dies: within the staleness bound the agent says so, and it answers
                # at once every time meanwhile.
                node.kill9()
                killed = time.monotonic()
                h.wait_for(says("down#node not answering\n"), timeout=10, what="down")
                detected = time.monotonic() - killed
                print(f"\nlb-agent: node killed -> 'down' after {detected:.2f} s (stale bound 1.0 s + poll 0.2 s)",
                      file=sys.stderr)
                self.assertLess(detected, 5)
                started = time.monotonic()
                self.assertEqual(agent_check(agent_port), "down#node not answering\n")
                self.assertLess(time.monotonic() - started, 1, "the agent answers at once, whatever the node does")
            finally:
                agent.terminate()
                self.assertEqual(agent.wait(timeout=10), 0)
                node.stop()

    def test_lb_agent_listens_on_loopback_unless_told_otherwise(self):
        default_port = 9101  # lb-agent/main.cc
        for address in ("127.0.0.1", "0.0.0.0"):
            with socket.socket() as probe:
                try:
                    probe.bind((address, default_port))
                except OSError:
                    self.skipTest(f"port {default_port} is taken on this machine")
        agent = subprocess.Popen([str(LB_AGENT), "--node-url", "http://127.0.0.1:9"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        try:
            line = agent.stderr.readline()
            self.assertIn(f"answering on 127.0.0.1:{default_port}", line)
            self.assertEqual(listening_addresses(agent.pid), [("127.0.0.1", default_port)])
        finally:
            agent.terminate()
            self.assertEqual(agent.wait(timeout=10), 0)
            agent.stderr.close()

    def test_f5_external_monitor_prints_up_only_for_a_node_that_should_get_traffic(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            port = h.free_port()
            node = h.Node(root, pki, extra=ops_section(port, tls=False)).start()
            env = dict(os.environ, OPS_PORT=str(port), OPS_TLS="0")
            try:
                h.wait_for(lambda: get(f"http://127.0.0.1:{port}/health/lb") == (200, "UP\n"), timeout=20, what="UP")
                out = subprocess.run([str(F5_MONITOR), "::ffff:127.0.0.1", "8443"], env=env, capture_output=True,
                                     text=True, timeout=10)
                self.assertEqual((out.returncode, out.stdout), (0, "UP\n"))
                node.stop()
                out = subprocess.run([str(F5_MONITOR), "::ffff:127.0.0.1", "8443"], env=env, capture_output=True,
                                     text=True, timeout=10)
                self.assertEqual((out.returncode, out.stdout), (0, ""), "nothing printed: the member is down")
            finally:
                node.stop()


def node_with_admin_channel(root, **ops):
    """A started node whose ops listener (TLS) accepts an administrator certificate made here."""
    pki = h.Pki(root)
    admin_cert, admin_key = pki.issue_client(root, "ops-admin")
    port = h.free_port()
    node = h.Node(root, pki, extra=ops_section(port, admin_ca=pki.server_ca, admin_pins=[pin_of(admin_cert)],
                                               **ops)).start()
    return pki, admin_cert, admin_key, port, node


def tls_context(pki, cert=None, key=None):
    """Server authentication by the node's CA; with cert and key, a client certificate too."""
    ctx = ssl.create_default_context(cafile=str(pki.server_ca))
    if cert:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def raw_exchange(port, ctx, head, body=None):
    """Sends a request head over TLS; with `body`, sends it only after reading a 100 Continue.
    Returns (the first response's status line and headers, the whole answer as read)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(head.encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            first = data.split(b"\r\n\r\n", 1)[0].decode()
            if body is not None and first.startswith("HTTP/1.1 100"):
                data = data.split(b"\r\n\r\n", 1)[1]
                s.sendall(body)
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except (ssl.SSLError, ConnectionResetError):
                pass
            return first, data.decode(errors="replace")


def metric(base, ctx, name, raise_errors=False):
    """The value of an unlabelled metric on the ops port, or None (no answer, or not there)."""
    try:
        status, text = get(base + "/metrics", ctx)
    except OSError:
        if raise_errors:
            raise
        return None
    if status != 200:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def listening_addresses(pid):
    """The local addresses (ip, port) of the TCP sockets process `pid` listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            raw = bytes.fromhex(addr_hex)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append((ip, int(port_hex, 16)))
    return found


def held_open(port, count):
    """`count` TCP connections to the port that send nothing (each holds a slot until the
    node's request timeout)."""
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def closed_by_peer(sock, timeout):
    """True when the peer closes the connection (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def set_mode(command, ops_port, cert, key, pki):
    """`adcsc ctl drain|resume|maint` against the node's ops port; the finished process."""
    return h.run([h.ADCSC, "ctl", command, "--node", f"localhost:{ops_port}", "--cert", cert, "--key", key,
                  "--ca-file", pki.server_ca], check=False)


def agent_check(port):
    """What HAProxy's agent-check reads from the agent: one line, then the agent closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        data = b""
        while True:
            chunk = s.recv(256)
            if not chunk:
                return data.decode()
            data += chunk


if __name__ == "__main__":
    unittest.main(verbosity=2)
