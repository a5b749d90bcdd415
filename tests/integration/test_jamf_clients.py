"""Every client of the original connector works unchanged, and refusals read as IIS gave them,
behind a real HAProxy 2.6 in both shipped modes (TCP pass-through and TLS termination) in
front of three clustered nodes and the ADCS emulator:

- the original's public curl test script, replayed by tests/interop/jamf_curl_test_replay.sh
  (its requests with the CSR's raw line breaks, its sed reading rules, the identity built);
- a client with no certificate, an untrusted one, an expired one and an unmapped one: HTTP 403,
  the JSON body saying which (403.7, 403.16, 403.17, 403.12), the connection closed, and an
  access-log line with IIS's sc-substatus and sc-win32-status (the node's in pass-through,
  HAProxy's in TLS termination);
- with TLS termination, the node's logs name the Jamf Pro identity and address HAProxy passed
  on, and nobody but the pinned HAProxy can set them."""
import datetime
import http.client
import json
import os
import ssl
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_haproxy import ClusterBehindHAProxy, TCP_CFG, TLS_CFG, NODES  # noqa: E402
from test_ops import pin_of  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REPLAY = REPO / "tests" / "interop" / "jamf_curl_test_replay.sh"
# IIS's default W3C fields, the order both the nodes' access log and HAProxy's log line use.
W3C = ("date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) "
       "sc-status sc-substatus sc-win32-status time-taken").split()
# (case, expected sub-status, sc-win32-status, what the message starts with)
REFUSALS = {
    "none": (7, 5, "403.7 Client certificate required"),
    "untrusted": (16, 2148204809, "403.16 Client certificate is untrusted or invalid"),
    "expired": (17, 2148204801, "403.17 Client certificate has expired"),
    "unmapped": (12, 5, "403.12 Client certificate is not mapped"),
}
SECOND_LOOPBACK = "127.0.0.2"  # the "Jamf Pro" address, so it differs from HAProxy's 127.0.0.1


def w3c_lines(path, marker):
    """Access-log lines (as dicts by IIS field name) that contain `marker`."""
    if not path.exists():
        return []
    return [dict(zip(W3C, line.split(" "))) for line in path.read_text().splitlines()
            if marker in line and not line.startswith("#")]


def refusal_identities(root, pki):
    """{case: (cert, key) or None} for each refusal case."""
    rogue = h.Pki(root, name="rogue")  # a CA the nodes do not trust, with its own "Jamf" identity
    now = datetime.datetime.utcnow()
    return {
        "none": None,
        "untrusted": (rogue.client_cert, rogue.client_key),
        "expired": pki.issue_client(root, "expired-client", not_before=now - datetime.timedelta(days=60),
                                    not_after=now - datetime.timedelta(days=30)),
        "unmapped": pki.issue_client(root, "unmapped-client"),
    }


def request_with(port, pki, identity, user_agent, source=None, headers=None, path="/api/v1/version",
                 method="GET", body=None):
    """One request on a new connection; returns (status, body text, whether the server closed it)."""
    ctx = ssl.create_default_context(cafile=str(pki.server_ca))
    if identity is not None:
        ctx.load_cert_chain(str(identity[0]), str(identity[1]))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=30,
                                       source_address=(source, 0) if source else None)
    try:
        hdrs = {"User-Agent": user_agent, "Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode()
        return resp.status, text, resp.will_close
    finally:
        conn.close()


class JamfClients(unittest.TestCase):
    def run_replay(self, root, pki, port, subject):
        der = root / "adcs-proxy-ca.cer"
        if not der.exists():
            h.run(["openssl", "x509", "-in", pki.server_ca, "-outform", "der", "-out", der])
        env = dict(os.environ, CONNECTOR_HOSTPORT=f"localhost:{port}", ADCS_CA_hostname=h.ICPR_DC,
                   ADCS_CA_InstanceName=h.CA, ADCS_CA_template="JamfDevice", SERVER_CERT_DER=str(der),
                   CLIENT_PFX=str(pki.pfx), CLIENT_PFX_PASSWORD=pki.password, WORK_DIR=str(root / subject),
                   SUBJECT=subject)
        r = subprocess.run(["bash", str(REPLAY)], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        request_id = int(next(l for l in r.stdout.splitlines() if l.startswith("Request ID: ")).split(": ")[1])
        # The identity it built: the certificate the CA issued for the script's own key.
        ident = root / subject / f"{subject}.p12"
        cert = h.run(["openssl", "pkcs12", "-in", ident, "-passin", "pass:pwd", "-nokeys", "-clcerts"]).stdout
        subj = h.run(["openssl", "x509", "-noout", "-subject"], input=cert).stdout
        self.assertIn(f"CN = {subject}", subj)
        cert_key = h.run(["openssl", "x509", "-noout", "-pubkey"], input=cert).stdout
        own_key = h.run(["openssl", "pkey", "-in", root / subject / f"_{subject}.key", "-pubout"]).stdout
        self.assertEqual(cert_key, own_key)
        return request_id

    def check_refusals(self, lb, pki, identities, log_of):
        """Each refusal: 403, its JSON body, the connection closed, and its access-log line."""
        for case, (substatus, win32, message) in REFUSALS.items():
            agent = f"refusal-test-{case}"
            for method, path, body in (("GET", "/api/v1/version", None),
                                       ("POST", "/api/v1/certificate/request", '{"pkcs10": "MIIB\nAA=="}')):
                status, text, closed = request_with(lb.port, pki, identities[case], agent, method=method, path=path,
                                                    body=body)
                self.assertEqual(status, 403, f"{case}: {text}")
                answer = json.loads(text)
                self.assertEqual(answer["request-status"]["status"], "FORBIDDEN", text)
                self.assertTrue(answer["request-status"]["message"].startswith(message), text)
                self.assertTrue(closed, f"{case}: the connection stays open after a refusal")
            lines = h.wait_for(lambda: len(log_of(agent)) >= 2 and log_of(agent), timeout=10,
                               what=f"the access-log lines of {case}")
            for line in lines:
                self.assertEqual((line["sc-status"], line["sc-substatus"], line["sc-win32-status"]),
                                 ("403", str(substatus), str(win32)), line)
                self.assertEqual(line["cs-username"], "-", line)
            print(f"  {case}: 403 {substatus} {win32}", file=sys.stderr)

    def test_tcp_pass_through(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            identities = refusal_identities(root, pki)
            with ClusterBehindHAProxy(root, TCP_CFG, pki=pki) as c:
                rid = self.run_replay(root, pki, c.lb_port, "replay-tcp")
                self.assertIn(rid, [r["request_id"] for r in c.emulator.ctl("list")["requests"]])

                def log_of(marker):
                    return [l for n in NODES for l in w3c_lines(root / f"{n}-access.log", marker)]
                print("\ntcp pass-through refusals (status substatus win32):", file=sys.stderr)
                self.check_refusals(c.lb, pki, identities, log_of)

    def test_tls_termination(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            identities = refusal_identities(root, pki)
            lb_cert = root / "haproxy-server.pem"
            lb_cert.write_text(Path(pki.server_ca).read_text() + Path(pki.server_key).read_text())
            lb_client, lb_client_key = pki.issue_client(root, "haproxy-client")
            lb_client_pem = root / "haproxy-client.pem"
            lb_client_pem.write_text(Path(lb_client).read_text() + Path(lb_client_key).read_text())
            lb_pin = pin_of(lb_client)
            pins = root / "jamf-pins.lst"
            pins.write_text(pki.pin + "\n")
            env = {"ADCSC_LB_CERT": str(lb_cert), "ADCSC_CLIENT_CA": str(pki.server_ca),
                   "ADCSC_CLIENT_PINS": str(pins), "ADCSC_NODE_CA": str(pki.server_ca), "ADCSC_NODE_SNI": "localhost",
                   "ADCSC_LB_CLIENT": str(lb_client_pem)}
            with ClusterBehindHAProxy(root, TLS_CFG, pki=pki, extra_env=env, extra_pins=[lb_pin],
                                      api_extra=f'trusted_proxy_pins = ["{lb_pin}"]') as c:
                rid = self.run_replay(root, pki, c.lb_port, "replay-tls")
                self.assertIn(rid, [r["request_id"] for r in c.emulator.ctl("list")["requests"]])

                def haproxy_log(marker):
                    return w3c_lines(root / "haproxy.log", marker)
                print("\ntls termination refusals at HAProxy (status substatus win32):", file=sys.stderr)
                self.check_refusals(c.lb, pki, identities, haproxy_log)

                # The real caller in the node's logs: Jamf Pro's name and address, not HAProxy's.
                jamf = (pki.client_cert, pki.client_key)
                spoof = {"X-Adcsc-Client-Addr": "203.0.113.66", "X-Adcsc-Client-Pin": "f" * 64,
                         "X-Adcsc-Client-Subject": "someone-else"}
                for i in range(3):  # round-robin: one per node
                    status, text, _ = request_with(c.lb_port, pki, jamf, f"forwarded-{i}", source=SECOND_LOOPBACK,
                                                   headers=spoof)
                    self.assertEqual(status, 200, text)

                def node_lines(marker):
                    return [l for n in NODES for l in w3c_lines(root / f"{n}-access.log", marker)]
                lines = h.wait_for(lambda: len(node_lines("forwarded-")) == 3 and node_lines("forwarded-"),
                                   timeout=10, what="the nodes' access-log lines")
                for line in lines:
                    self.assertEqual(line["c-ip"], SECOND_LOOPBACK, line)
                    self.assertEqual(line["cs-username"], "jamf.example.test", line)
                hap = h.wait_for(lambda: haproxy_log("forwarded-0"), timeout=10, what="HAProxy's line")
                self.assertEqual((hap[0]["c-ip"], hap[0]["cs-username"], hap[0]["sc-status"]),
                                 (SECOND_LOOPBACK, "jamf.example.test", "200"))
                # The JSON log: a submit through HAProxy is logged with Jamf Pro's pin and address.
                st, body = h.submit(c.lb, h.make_csr_b64("forwarded-submit"), dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)

                def api_events():
                    return [l for n in NODES for l in c.nodes[n].log_lines()
                            if l.get("event") == "api" and l.get("endpoint") == "request"]
                event = h.wait_for(api_events, timeout=10, what="the submit's log line")[0]
                self.assertEqual((event["client_pin"], event["proxy_pin"]), (pki.pin, lb_pin), event)
                self.assertEqual(event["remote"], "127.0.0.1", event)  # h.submit connects from 127.0.0.1

                # Nobody else can set them: Jamf Pro's own certificate straight to a node (mapped, but
                # not a trusted proxy) is logged as itself, with a warning.
                node = c.nodes["node-a"]
                status, text, _ = request_with(node.port, pki, jamf, "direct-spoof", source=SECOND_LOOPBACK,
                                               headers=spoof)
                self.assertEqual(status, 200, text)
                line = h.wait_for(lambda: w3c_lines(root / "node-a-access.log", "direct-spoof"), timeout=10,
                                  what="the direct line")[0]
                self.assertEqual((line["c-ip"], line["cs-username"]), (SECOND_LOOPBACK, "jamf.example.test"))
                self.assertTrue(h.wait_for(lambda: [l for l in node.log_lines()
                                                    if l.get("event") == "forwarded_identity_ignored"],
                                           timeout=10, what="the ignored-headers warning"))
                self.assertFalse([l for n in NODES for l in (root / f"{n}-access.log").read_text().splitlines()
                                  if "someone-else" in l or "203.0.113.66" in l])


if __name__ == "__main__":
    unittest.main(verbosity=2)
