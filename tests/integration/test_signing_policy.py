"""The signing policy of a [[ca.allow]] entry on a real node in front of the ADCS emulator:
a CSR with a UPN SAN (the ESC1 request a stolen Jamf identity would send), one with a
foreign subject and one with an RSA key over the maximum are each answered CR_DISP_DENIED
with the rule named, logged at warn, counted in adcsc_policy_denials_total, and never reach
the CA (the emulator lists no request); a CSR inside the policy still issues."""
import json
import sys
import unittest
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")

# Jamf-like devices only: subjects CN=device-*, no UPN (the default), RSA at most 3072 bits.
POLICY = """subject_patterns = ["CN=device-*"]
max_rsa_bits = 3072
"""


def csr_b64(cn, key=None, sans=()):
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    import base64
    return base64.b64encode(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)).decode()


def upn(name):
    raw = name.encode()
    return x509.OtherName(UPN_OID, bytes([0x0C, len(raw)]) + raw)  # UTF8String, short form


class SigningPolicy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = h.TempRoot()
        root = cls.tmp.__enter__()
        pki = h.Pki(root)
        cls.emulator = h.Emulator(root).start()
        ca_section = h.icpr_ca_section(cls.emulator)
        allow = f'ca = "{h.CA}"\n'
        ca_section = ca_section.replace(allow, allow + POLICY, 1)
        cls.ops_port = h.free_port()
        ops = f'\n[ops]\nlisten = "127.0.0.1:{cls.ops_port}"\ntls = false\n'
        cls.node = h.Node(root, pki, ca_section=ca_section, extra=ops).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.emulator.stop()
        cls.tmp.__exit__(None, None, None)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def ca_requests(self):
        return self.emulator.ctl("list")["requests"]

    def assert_denied(self, pkcs10, rule, reason_part):
        status, body = h.submit(self.node, pkcs10, dc=h.ICPR_DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_DENIED", body)
        self.assertEqual(body["request-id"], 0, body)
        message = body["request-status"]["message"]
        self.assertTrue(message.startswith("Request denied by the connector's signing policy: "), message)
        self.assertIn(f"ca.allow[0].{rule}: ", message)
        self.assertIn(reason_part, message)

    def test_denied_csrs_never_reach_the_ca_and_an_allowed_one_issues(self):
        self.assert_denied(csr_b64("device-1", sans=[upn("administrator@corp.example")]), "san_upn",
                           'UPN SAN "administrator@corp.example" is not allowed')
        self.assert_denied(csr_b64("administrator"), "subject_patterns",
                           'subject "CN=administrator" matches no pattern')
        big = rsa.generate_private_key(65537, 4096)
        self.assert_denied(csr_b64("device-2", key=big), "max_rsa_bits",
                           "RSA key of 4096 bits is above the maximum of 3072")
        self.assertEqual(self.ca_requests(), [], "no denied CSR reached the CA")

        metrics = self.metrics()
        for rule in ("san_upn", "subject_patterns", "max_rsa_bits"):
            self.assertIn(f'adcsc_policy_denials_total{{rule="{rule}"}} 1', metrics)
        self.assertIn('adcsc_api_requests_total{endpoint="request",outcome="policy_denied"} 3', metrics)

        def denials():
            return [l for l in self.node.log_lines() if l.get("event") == "api" and "policy_rule" in l]
        h.wait_for(lambda: len(denials()) == 3, timeout=10, what="three policy denials in the event log")
        for line in denials():
            self.assertEqual(line["level"], "warn", line)
            self.assertEqual(line["outcome"], "policy_denied", line)
            self.assertEqual(line["request_id"], 0, line)
            self.assertNotIn("ca_ms", line, "no CA call was timed")
        self.assertEqual(sorted(l["policy_rule"] for l in denials()), ["max_rsa_bits", "san_upn", "subject_patterns"])

        # Inside the policy: a DNS SAN and a 3072-bit key are fine, and it issues.
        ok_key = rsa.generate_private_key(65537, 3072)
        status, body = h.submit(self.node, csr_b64("device-3", key=ok_key, sans=[x509.DNSName("device-3.example.test")]),
                                dc=h.ICPR_DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.assertEqual([r["request_id"] for r in self.ca_requests()], [body["request-id"]])


if __name__ == "__main__":
    unittest.main(verbosity=2)
