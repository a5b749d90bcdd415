"""The cluster status page (GET / on the ops port) on real processes: a three-node cluster
against the ADCS emulator, with enrolments and a failure behind it. Only an administrator's
certificate gets the page (the API's client certificate and no certificate get the generic
403). Headless Chromium (Debian's `chromium`) then loads it live from node-a through a
loopback relay that presents the administrator's certificate, as the browser's certificate
store would, with every other host name unresolvable (no external assets): the DOM lists every
node, the CA's state, an expiry date and the failure; the page's Content-Security-Policy lets
its stylesheet apply (Chromium logs no violation); screenshots at laptop and phone width are
saved. The page is checked again with node-c stopped: it says so. ADCSC_STATUS_PAGE_SHOTS=<dir>
keeps the screenshots (docs/operations.md's picture comes from the quickstart cluster that
way: tests/integration/status_page_shot.py)."""
import http.server
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_ops import ops_section, pin_of  # noqa: E402

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package (deploy/install-deps)
NODES = ("node-a", "node-b", "node-c")


class AdminRelay:
    """A loopback HTTP server that forwards each GET to an ops port over TLS with the
    administrator's certificate and returns the answer as it came (status, content type,
    Content-Security-Policy, body)."""

    def __init__(self, target, cert, key, ca):
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        self.seen = []

        relay = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                relay.seen.append(self.path)
                try:
                    with urllib.request.urlopen(target + self.path, context=ctx, timeout=20) as r:
                        status, headers, body = r.status, r.headers, r.read()
                except urllib.error.HTTPError as e:
                    status, headers, body = e.code, e.headers, e.read()
                self.send_response(status)
                for name in ("Content-Type", "Content-Security-Policy"):
                    if headers.get(name):
                        self.send_header(name, headers[name])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def chromium(url, out_dir: Path, width, height, shot_name):
    """Loads `url` in headless Chromium: (DOM after load, Chromium's log, screenshot path)."""
    profile = out_dir / f"profile-{shot_name}"
    shot = out_dir / f"{shot_name}.png"
    common = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
              # Nothing but the relay resolves: a page that needed anything else would show it.
              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
              f"--window-size={width},{height}", "--hide-scrollbars", "--virtual-time-budget=3000"]
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    subprocess.run(common + [f"--screenshot={shot}", url], capture_output=True, text=True, timeout=120)
    return dom.stdout, dom.stderr, shot


def png_size(path: Path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@unittest.skipUnless(Path(CHROMIUM).exists(), f"{CHROMIUM} missing (deploy/install-deps installs chromium)")
class StatusPage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.pki = h.Pki(cls.root)
        cls.emulator = h.Emulator(cls.root).start()
        cls.admin_cert, cls.admin_key = cls.pki.issue_client(cls.root, "ops-admin")
        sections = h.cluster_sections(cls.root, NODES, cluster_id="prod", write_quorum=2)
        cls.ops_ports, cls.nodes = {}, {}
        for n in NODES:
            cls.ops_ports[n] = h.free_port()
            ops = ops_section(cls.ops_ports[n], admin_ca=cls.pki.server_ca, admin_pins=[pin_of(cls.admin_cert)])
            cls.nodes[n] = h.Node(cls.root, cls.pki, node_id=n, ca_section=h.icpr_ca_section(cls.emulator),
                                  extra=sections[n] + ops).start()
        cls.page_url = f"https://localhost:{cls.ops_ports['node-a']}/"
        # Traffic for the hour's counts: enrolments through two nodes, and one bad request.
        for i, n in enumerate(("node-a", "node-b", "node-a")):
            status, body = h.submit(cls.nodes[n], h.make_csr_b64(f"page-{i}"), dc=h.ICPR_DC)
            assert status == 200 and body["request-status"]["status"] == "CR_DISP_ISSUED", body
        status, _ = h.call(cls.nodes["node-a"], "POST", "/api/v1/certificate/retrieve",
                           {"request-id": "not-a-number", "config": {"dc": h.ICPR_DC, "ca": h.CA}})
        assert status == 400, status
        cls.shots = Path(os.environ.get("ADCSC_STATUS_PAGE_SHOTS") or (cls.root / "shots"))
        cls.shots.mkdir(parents=True, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes.values():
            node.stop()
        cls.emulator.stop()
        cls._root_ctx.__exit__(None, None, None)

    def fetch(self, cert=None, key=None):
        ctx = ssl.create_default_context(cafile=str(self.pki.server_ca))
        if cert:
            ctx.load_cert_chain(str(cert), str(key))
        try:
            with urllib.request.urlopen(self.page_url, context=ctx, timeout=20) as r:
                return r.status, dict(r.headers), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    def every_node_ready(self):
        _, _, page = self.fetch(self.admin_cert, self.admin_key)
        return "3 of 3</b><span>nodes ready" in page and page

    def test_a_only_an_administrator_gets_the_page(self):
        status, _, body = self.fetch()
        self.assertEqual(status, 403, body)
        self.assertNotIn("node-b", body)
        status, _, body = self.fetch(self.pki.client_cert, self.pki.client_key)  # Jamf Pro's, not an admin's
        self.assertEqual(status, 403, body)
        self.assertNotIn("node-b", body)
        status, headers, body = self.fetch(self.admin_cert, self.admin_key)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertRegex(headers["Content-Security-Policy"], r"^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/=]+'")
        refused = [l for l in self.nodes["node-a"].log_lines() if l.get("event") == "ops_admin_refused"
                   and l.get("path") == "/"]
        self.assertTrue(refused, "the refusals are logged with their reason")

    def test_b_chromium_shows_every_node_the_ca_an_expiry_date_and_the_failure(self):
        h.wait_for(self.every_node_ready, timeout=30, what="node-a's page to show three ready nodes")
        relay = AdminRelay(f"https://localhost:{self.ops_ports['node-a']}", self.admin_cert, self.admin_key,
                           self.pki.server_ca)
        try:
            dom, log, laptop = chromium(relay.url + "/", self.shots, 1280, 2400, "status-page")
            _, _, phone = chromium(relay.url + "/", self.shots, 390, 3200, "status-page-phone")
        finally:
            relay.close()
        self.assertIn("/", relay.seen, "Chromium loaded the page through the relay")
        self.assertIn("<title>adcsc cluster prod</title>", dom)
        for n in NODES:
            self.assertIn(f"<b>{n}</b>", dom, n)
        self.assertIn("3 of 3</b><span>nodes ready", dom)
        self.assertRegex(dom, r"reachable from 3 of 3</b><span>[^<]*" + re.escape(h.CA))
        self.assertRegex(dom, r"<td class=\"nw\">\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ</td>", "a certificate's expiry date")
        self.assertIn("bad_request", dom)
        self.assertIn("Latest failures", dom)
        self.assertRegex(dom, r'class="ok">issued</td><td class="num">[1-9]')
        # The stylesheet applied: Chromium reports any CSP refusal on its console.
        self.assertNotRegex(log, r"(?i)content security policy", log[-3000:])
        for shot, width in ((laptop, 1280), (phone, 390)):
            self.assertTrue(shot.exists(), shot)
            self.assertEqual(png_size(shot)[0], width, shot)
            self.assertGreater(shot.stat().st_size, 20_000, f"{shot} looks blank")

    def test_c_the_rules_and_the_dashboard_name_only_metrics_a_live_node_exports(self):
        """metrics_test.cc checks every name against each family the node can export; here the
        live node: each name it uses is on node-a's /metrics now, or appears only after its
        event (named below, with the event)."""
        only_after = {
            "adcsc_ca_kerberos_ticket_expiry_timestamp_seconds": "a Kerberos bind (this cluster uses NTLM)",
            "adcsc_policy_denials_total": "a signing policy denial",
            "adcsc_ca_errors_total": "a failed CA call",
            "adcsc_ca_call_duration_seconds_bucket": "a call answered by the CA on this node",
            "adcsc_ca_pool_idle_connections": "an idle pooled CA connection at scrape time",
        }
        ctx = ssl.create_default_context(cafile=str(self.pki.server_ca))
        with urllib.request.urlopen(f"https://localhost:{self.ops_ports['node-a']}/metrics", context=ctx,
                                    timeout=10) as r:
            text = r.read().decode()
        exported = set()
        for line in text.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                exported.add(m.group(1))
                if m.group(2) == "histogram":
                    exported.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
        for always in ("adcsc_ready", "adcsc_health_check_ok", "adcsc_service_mode", "adcsc_replication_lag_seconds",
                       "adcsc_replication_writes", "adcsc_certificate_expiry_seconds", "adcsc_store_free_bytes",
                       "adcsc_store_min_free_bytes", "adcsc_api_requests_total"):
            self.assertIn(always, exported)
        top = Path(__file__).resolve().parents[2]
        rules = (top / "deploy/prometheus/adcsc-rules.yml").read_text()
        exprs = [e["expr"] for p in json.loads((top / "deploy/grafana/adcsc-dashboard.json").read_text())["panels"]
                 for e in p.get("targets", [])]
        for where, source in (("adcsc-rules.yml", "\n".join(l for l in rules.splitlines() if "expr:" in l)),
                              ("adcsc-dashboard.json", "\n".join(exprs))):
            used = set(re.findall(r"\badcsc_[a-z0-9_]+", source))
            self.assertGreater(len(used), 10, where)
            self.assertEqual(sorted(used - exported - set(only_after)), [], f"{where} names metrics no node exports")

    def test_d_a_stopped_node_is_shown_unreachable(self):
        self.assertEqual(self.nodes["node-c"].stop(), 0)
        try:
            status, _, page = self.fetch(self.admin_cert, self.admin_key)
            self.assertEqual(status, 200)
            self.assertIn("<b>node-c</b>", page)
            self.assertIn(">unreachable<", page)
            self.assertIn("2 of 3</b><span>nodes ready", page)
        finally:
            self.nodes["node-c"].start()


if __name__ == "__main__":
    unittest.main()
