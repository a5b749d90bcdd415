"""The bad-input matrix: every case gets its documented status and JSON body, and the node
keeps serving afterwards. Runs against a real node on loopback."""
import base64
import datetime
import json
import socket
import ssl
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402


class BadInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="adcsc-bad-")
        cls.root = Path(cls.tmp.name)
        cls.pki = h.Pki(cls.root)
        cls.other_pki = h.Pki(cls.root, name="other")
        cls.node = h.Node(cls.root, cls.pki, header_timeout_ms=1500).start()

    @classmethod
    def tearDownClass(cls):
        code = cls.node.stop()
        cls.tmp.cleanup()
        assert code == 0, f"node exit code {code}"

    def tearDown(self):
        # After every case the node still answers a good request.
        status, body = h.call(self.node, "GET", "/api/v1/version")
        self.assertEqual(status, 200, "node stopped serving after a bad input")

    def expect(self, result, status, code, fragment):
        got_status, body = result
        self.assertEqual(got_status, status, body)
        self.assertIsInstance(body, dict, body)
        self.assertEqual(body["request-status"]["status"], code, body)
        self.assertIn(fragment, body["request-status"]["message"])

    def post(self, path, payload=None, raw=None, ctx=None):
        return h.call(self.node, "POST", path, payload, raw_body=raw, ctx=ctx)

    # --- client certificates -------------------------------------------------------------
    def test_no_client_certificate_is_403_7(self):
        # As IIS answers 403.7, rather than an opaque handshake failure.
        ctx = h.ssl_context(self.pki, no_client_cert=True)
        self.expect(h.call(self.node, "GET", "/api/v1/version", ctx=ctx), 403, "FORBIDDEN",
                    "403.7 Client certificate required")

    def test_a_refused_client_is_not_invited_to_send_its_body(self):
        # Expect: 100-continue from a client without a certificate: the 403 comes instead of
        # "100 Continue", and the connection closes after it.
        ctx = h.ssl_context(self.pki, no_client_cert=True)
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"POST /api/v1/certificate/request HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
                data = h.read_response(s)
                rest = s.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 403"), data)
        self.assertNotIn(b"100 Continue", data)
        self.assertIn(b"403.7", data)
        self.assertEqual(rest, b"", "the connection stays open after a refusal")

    def test_untrusted_client_certificate_is_403(self):
        ctx = h.ssl_context(self.pki, cert=self.other_pki.client_cert, key=self.other_pki.client_key)
        self.expect(h.call(self.node, "GET", "/api/v1/version", ctx=ctx), 403, "FORBIDDEN", "403.16 Client certificate is untrusted")

    def test_trusted_but_unpinned_client_certificate_is_403(self):
        cert, key = self.pki.issue_client(self.root, "unpinned")
        ctx = h.ssl_context(self.pki, cert=cert, key=key)
        self.expect(h.call(self.node, "GET", "/api/v1/version", ctx=ctx), 403, "FORBIDDEN", "403.12 Client certificate is not mapped")

    def test_expired_client_certificate_is_403(self):
        now = datetime.datetime.utcnow()
        cert, key = self.pki.issue_client(self.root, "expired", not_before=now - datetime.timedelta(days=60),
                                          not_after=now - datetime.timedelta(days=1))
        ctx = h.ssl_context(self.pki, cert=cert, key=key)
        self.expect(h.call(self.node, "GET", "/api/v1/version", ctx=ctx), 403, "FORBIDDEN", "403.17 Client certificate has expired")

    # --- JSON ------------------------------------------------------------------------------
    def test_malformed_json(self):
        self.expect(self.post("/api/v1/certificate/request", raw='{"pkcs10": '), 400, "BAD_REQUEST",
                    "not valid JSON")

    def test_wrong_json_types(self):
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": 12, "template": "JamfDevice", "config": {"dc": h.DC, "ca": h.CA}}),
                    400, "BAD_REQUEST", '"pkcs10" must be a string')
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": "A", "template": "JamfDevice", "config": [h.DC, h.CA]}),
                    400, "BAD_REQUEST", '"config" must be an object')

    def test_missing_fields(self):
        self.expect(self.post("/api/v1/certificate/request", {"template": "JamfDevice", "config": {"dc": h.DC,
                                                                                                  "ca": h.CA}}),
                    400, "BAD_REQUEST", 'missing field "pkcs10"')
        self.expect(self.post("/api/v1/certificate/retrieve", {"request-id": 1}), 400, "BAD_REQUEST",
                    'missing field "config"')

    def test_ten_mib_body_is_413(self):
        ctx = h.ssl_context(self.pki)
        with socket.create_connection(("127.0.0.1", self.node.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                # The node answers as soon as it has read the headers (it does not read a body
                # it will refuse) and then closes, so the body is not sent here.
                s.sendall(b"POST /api/v1/certificate/request HTTP/1.1\r\nHost: localhost\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n")
                data = h.read_response(s)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head)
        self.assertEqual(json.loads(body)["request-status"]["status"], "PAYLOAD_TOO_LARGE")

    def test_invalid_base64(self):
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": "MIIB$$$$", "template": "JamfDevice", "config": {"dc": h.DC, "ca": h.CA}}),
                    400, "BAD_REQUEST", "pkcs10")

    def test_csr_with_broken_signature(self):
        der = bytearray(base64.b64decode(h.make_csr_b64("tampered")))
        der[-5] ^= 0x5A
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": base64.b64encode(bytes(der)).decode(), "template": "JamfDevice",
                               "config": {"dc": h.DC, "ca": h.CA}}),
                    400, "BAD_REQUEST", "signature")

    def test_ca_config_not_in_allowlist(self):
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": h.make_csr_b64(), "template": "JamfDevice",
                               "config": {"dc": "attacker.example.net", "ca": h.CA}}),
                    400, "BAD_REQUEST", "not allowed")
        self.expect(self.post("/api/v1/certificate/request",
                              {"pkcs10": h.make_csr_b64(), "template": "WebServer", "config": {"dc": h.DC, "ca": h.CA}}),
                    400, "BAD_REQUEST", "not allowed")

    def test_bad_request_ids(self):
        for rid, fragment in [(0, "positive"), (-3, "positive"), ("9 5", "string of decimal digits"),
                              ("0x5f", "string of decimal digits"), ("4294967296", "out of range"),
                              (2 ** 40, "out of range"), (1.5, "integer"), (True, "JSON number")]:
            with self.subTest(rid=rid):
                self.expect(self.post("/api/v1/certificate/retrieve", {"request-id": rid,
                                                                       "config": {"dc": h.DC, "ca": h.CA}}),
                            400, "BAD_REQUEST", fragment)

    def test_a_request_id_as_a_string_of_digits_is_read_as_the_original_did(self):
        status, body = h.submit(self.node, h.make_csr_b64("string-id"))
        self.assertEqual(status, 200, body)
        status, body = self.post("/api/v1/certificate/retrieve",
                                 {"request-id": str(body["request-id"]), "config": {"dc": h.DC, "ca": h.CA}})
        self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_ISSUED"), body)

    def test_unknown_path_and_wrong_method(self):
        self.expect(h.call(self.node, "GET", "/api/v2/anything"), 404, "NOT_FOUND", "no such endpoint")
        self.expect(h.call(self.node, "DELETE", "/api/v1/certificate/request"), 405, "METHOD_NOT_ALLOWED", "POST")

    def test_slow_client_that_never_finishes_headers_is_cut_off(self):
        ctx = h.ssl_context(self.pki)
        raw = socket.create_connection(("127.0.0.1", self.node.port), timeout=15)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"POST /api/v1/certificate/request HTTP/1.1\r\nHost: local")
        started = time.monotonic()
        # Other clients are served meanwhile.
        status, _ = h.call(self.node, "GET", "/api/v1/version")
        self.assertEqual(status, 200)
        data = s.recv(1024)  # blocks until the server gives up on us (header_timeout_ms = 1500)
        elapsed = time.monotonic() - started
        s.close()
        self.assertEqual(data, b"", "the server closes the connection without a response")
        self.assertLess(elapsed, 14, "cut off by the header timeout, not by the test's socket timeout")

        def logged():
            return any(l.get("event") == "slow_client" for l in self.node.log_lines())

        h.wait_for(logged, timeout=10, what="the slow_client log line")


if __name__ == "__main__":
    unittest.main(verbosity=2)
