"""End to end against a real `adcsc node` on loopback with the embedded CA: the Jamf Pro
flow with Python's ssl client, curl with the generated PKCS#12, and `adcsc client`."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from cryptography import x509  # noqa: E402


class ApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="adcsc-it-")
        cls.root = Path(cls.tmp.name)
        cls.pki = h.Pki(cls.root)
        cls.node = h.Node(cls.root, cls.pki).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.tmp.cleanup()

    def test_version(self):
        status, body = h.call(self.node, "GET", "/api/v1/version")
        self.assertEqual(status, 200)
        self.assertEqual(body["name"], "adcsc")
        self.assertIn("version", body)

    def test_request_then_retrieve_issues_a_certificate_for_the_csr(self):
        status, body = h.submit(self.node, h.make_csr_b64("device-42"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"], {"status": "CR_DISP_ISSUED", "message": "Certificate issued"})
        rid = body["request-id"]
        self.assertGreater(rid, 0)
        status, got = h.retrieve(self.node, rid)
        self.assertEqual(status, 200, got)
        self.assertEqual(got["request-status"]["status"], "CR_DISP_ISSUED")
        lines = got["x509"].split("\r\n")
        self.assertEqual(lines[-1], "")
        self.assertTrue(all(len(l) == 64 for l in lines[:-2]), "64-character lines ended by CRLF")
        cert = x509.load_der_x509_certificate(base64.b64decode(got["x509"]))
        self.assertEqual(cert.subject.rfc4514_string(), "CN=device-42")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["device-42.example.test"])

    def test_pending_request_is_issued_later(self):
        status, body = h.submit(self.node, h.make_csr_b64("slow-1"), template="Pending")
        self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION", body)
        rid = body["request-id"]

        def issued():
            s, b = h.retrieve(self.node, rid)
            self.assertEqual(s, 200, b)
            return b if b["request-status"]["status"] == "CR_DISP_ISSUED" else None

        got = h.wait_for(issued, timeout=15, what="the pending request to be issued")
        self.assertIsNotNone(got["x509"])

    def test_denied_template_and_too_small_key(self):
        status, body = h.submit(self.node, h.make_csr_b64("nope"), template="Denied")
        self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_DENIED"), body)
        status, got = h.retrieve(self.node, body["request-id"])
        self.assertEqual(got, {"request-status": {"status": "CR_DISP_DENIED", "message": "Request denied"},
                               "x509": None})
        status, body = h.submit(self.node, h.make_csr_b64("weak", rsa_bits=2048), template="Strong")
        self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_DENIED"), body)

    def test_resubmitted_csr_gets_the_same_request_id(self):
        csr = h.make_csr_b64("retry-me")
        first = h.submit(self.node, csr)
        second = h.submit(self.node, csr)
        self.assertEqual(first, second)

    def test_curl_with_the_generated_pfx(self):
        csr = h.make_csr_b64("curl-device")
        body = json.dumps({"pkcs10": csr, "template": "JamfDevice", "config": {"dc": h.DC, "ca": h.CA}})
        base = ["curl", "-sS", "--fail-with-body", "--cacert", str(self.pki.server_ca), "--cert-type", "P12",
                "--cert", f"{self.pki.pfx}:{self.pki.password}", "-H", "Content-Type: application/json"]
        out = h.run(base + ["-d", body, f"{self.node.url}/api/v1/certificate/request"])
        rid = json.loads(out.stdout)["request-id"]
        out = h.run(base + ["-d", json.dumps({"request-id": rid, "config": {"dc": h.DC, "ca": h.CA}}),
                            f"{self.node.url}/api/v1/certificate/retrieve"])
        self.assertEqual(json.loads(out.stdout)["request-status"]["status"], "CR_DISP_ISSUED")

    def test_our_own_client(self):
        common = ["--url", self.node.url, "--pfx", self.pki.pfx, "--password-file", self.pki.password_file,
                  "--server-ca", self.pki.server_ca]
        out = h.run([h.ADCSC, "client", "request", *common, "--dc", h.DC, "--ca", h.CA, "--template", "JamfDevice",
                     "--subject", "cli-device"])
        rid = json.loads(out.stdout)["request-id"]
        cert_out = self.root / "cli.pem"
        out = h.run([h.ADCSC, "client", "retrieve", *common, "--dc", h.DC, "--ca", h.CA, "--id", str(rid),
                     "--out", cert_out])
        cert = x509.load_pem_x509_certificate(cert_out.read_bytes())
        self.assertEqual(cert.subject.rfc4514_string(), "CN=cli-device")
        # A wrong CA name is refused by the allowlist: HTTP error exit code 3.
        bad = h.run([h.ADCSC, "client", "retrieve", *common, "--dc", h.DC, "--ca", "Other-CA", "--id", "1"],
                    check=False)
        self.assertEqual(bad.returncode, 3, bad.stderr)

    def test_logs_carry_request_id_and_outcome_but_no_secrets(self):
        status, body = h.submit(self.node, h.make_csr_b64("logged"))
        rid = body["request-id"]

        def logged():
            return [l for l in self.node.log_lines() if l.get("event") == "api" and l.get("request_id") == rid]

        lines = h.wait_for(logged, timeout=10, what="the api log line")
        line = lines[0]
        self.assertEqual(line["outcome"], "issued")
        self.assertEqual(line["ca_config"], f"{h.DC}\\{h.CA}")
        self.assertEqual(line["client_pin"], self.pki.pin)
        self.assertEqual(line["node"], "node-a")
        text = (self.root / "node-a.log").read_text()
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn(self.pki.password, text)
        self.assertNotIn("MII", text, "no CSR or certificate bodies in logs")

        def access_logged():
            p = self.root / "node-a-access.log"
            return p.exists() and "POST /api/v1/certificate/request" in p.read_text()

        h.wait_for(access_logged, timeout=10, what="the access log line")
        access = (self.root / "node-a-access.log").read_text()
        self.assertIn("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip "
                      "cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken", access)
        self.assertIn(" jamf.example.test 127.0.0.1 Java-SDK - 200 0 0 ", access)


class LifecycleTest(unittest.TestCase):
    def test_sigterm_finishes_and_exits_zero(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            status, body = h.submit(node, h.make_csr_b64("before-stop"))
            self.assertEqual(status, 200)
            self.assertEqual(node.stop(), 0)
            # Restart: the request survives and IDs continue.
            node.start()
            status, got = h.retrieve(node, body["request-id"])
            self.assertEqual(got["request-status"]["status"], "CR_DISP_ISSUED")
            status, nxt = h.submit(node, h.make_csr_b64("after-restart"))
            self.assertEqual(nxt["request-id"], body["request-id"] + 1)
            self.assertEqual(node.stop(), 0)

    def test_sigterm_lets_an_in_flight_request_finish_and_refuses_new_connections(self):
        import signal
        import socket
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            body = json.dumps({"pkcs10": h.make_csr_b64("in-flight"), "template": "JamfDevice",
                               "config": {"dc": h.DC, "ca": h.CA}}).encode()
            raw = socket.create_connection(("127.0.0.1", node.port), timeout=15)
            s = h.ssl_context(pki).wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"POST /api/v1/certificate/request HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                      + body[:100])
            node.proc.send_signal(signal.SIGTERM)
            h.wait_for(lambda: any(l.get("event") == "stopping" for l in node.log_lines()), timeout=10,
                       what="the node to begin stopping")
            s.sendall(body[100:])
            data = h.read_response(s)
            s.close()
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
            self.assertIn(b"Connection: close", data)
            self.assertIn(b"CR_DISP_ISSUED", data)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", node.port), timeout=2).close()
            self.assertEqual(node.proc.wait(timeout=20), 0)

    def test_config_errors_are_all_reported_with_file_and_key(self):
        with h.TempRoot() as root:
            cfg = root / "bad.toml"
            cfg.write_text('[node]\nid = "Bad Id"\n[api]\nlisten = "x"\n[ca]\nbackend = "dcom"\n')
            out = h.run([h.ADCSC, "node", "--config", cfg], check=False)
            self.assertEqual(out.returncode, 2)
            for key in ["node.id", "node.data_dir", "api.listen", "api.cert_file", "api.client_pins", "ca.backend",
                        "ca.identity", "ca.allow"]:
                self.assertIn(f"{cfg}: {key}:", out.stderr)

    def test_pki_init_refuses_to_overwrite(self):
        with h.TempRoot() as root:
            h.Pki(root)
            out = h.run([h.ADCSC, "pki", "init", "--fqdn", "localhost", "--jamf-pro-dn", "j", "--out", root / "pki"],
                        check=False)
            self.assertNotEqual(out.returncode, 0)
            self.assertIn("--force", out.stderr)
            self.assertEqual(os.stat(root / "pki" / "server-key.pem").st_mode & 0o777, 0o600)
            self.assertEqual(os.stat(root / "pki" / "client-cert.pfx").st_mode & 0o777, 0o600)
            out = h.run(["keytool", "-list", "-storetype", "PKCS12", "-keystore", root / "pki" / "client-cert.pfx",
                         "-storepass", (root / "pki.pass").read_text().strip()], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
