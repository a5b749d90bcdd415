"""The ops listener of a real node: what a load balancer's health check sees over TLS (the
API's certificate, no client certificate) or plain HTTP, a node cut off from its CA going
DOWN and coming back UP, a drained node (service mode kept across a restart) answering
DRAIN, and the two ports never serving each other's paths."""
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


def ops_section(port, tls=True, admin_ca=None, admin_pins=()):
    admin = ""
    if admin_pins:
        admin = f'admin_ca_file = "{admin_ca}"\nadmin_pins = [{", ".join(repr(p).replace(chr(39), chr(34)) for p in admin_pins)}]\n'
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
                self.assertEqual(json.loads(body)["node"], "node-a")

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

                # Cut off from the CA: the load balancer is told DOWN, with the reason on /health/ready.
                emulator.stop()
                h.wait_for(lambda: get(base + "/health/lb", ctx) == (503, "DOWN\n"), timeout=20, what="DOWN")
                status, body = get(base + "/health/ready", ctx)
                self.assertEqual(status, 503)
                self.assertIn("ca-ping", body)
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


def node_with_admin_channel(root):
    """A started node whose ops listener (TLS) accepts an administrator certificate made here."""
    pki = h.Pki(root)
    admin_cert, admin_key = pki.issue_client(root, "ops-admin")
    port = h.free_port()
    node = h.Node(root, pki, extra=ops_section(port, admin_ca=pki.server_ca, admin_pins=[pin_of(admin_cert)])).start()
    return pki, admin_cert, admin_key, port, node


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
