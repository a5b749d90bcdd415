"""End to end over MS-ICPR: a real node with backend = "icpr" in front of the ADCS emulator
(endpoint mapper + ICertPassage, NTLMv2 at packet privacy), driven through the Jamf API.
Covers issued, pending -> approve -> retrieve, denied, a template the account may not enroll
for, a retrieve by another identity, the CA going down and coming back, and `adcsc ctl ca-ping`."""
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

DC = h.ICPR_DC


class IcprEndToEnd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.pki = h.Pki(cls.root)
        # NTLM whatever ADCSC_TEST_CA_AUTH says: its wrong-password case is NTLM's (test_kerberos.py
        # has Kerberos's failures).
        cls.emulator = h.Emulator(cls.root, kerberos=False).start()
        cls.node = h.Node(cls.root, cls.pki, ca_section=h.icpr_ca_section(cls.emulator)).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.emulator.stop()
        cls._root_ctx.__exit__(None, None, None)

    def test_issued_then_retrieved(self):
        status, body = h.submit(self.node, h.make_csr_b64("icpr-issued"), dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
        rid = body["request-id"]
        self.assertGreater(rid, 0)
        status, body = h.retrieve(self.node, rid, dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
        self.assertTrue(body["x509"].startswith("MII"), body)
        # The CA recorded it under the service account, as ADCS would.
        rows = self.emulator.ctl("list")["requests"]
        self.assertIn(("EXAMPLE\\svc-adcsc", "issued"),
                      [(r["requester"], r["disposition"]) for r in rows if r["request_id"] == rid])

    def test_pending_then_approved(self):
        status, body = h.submit(self.node, h.make_csr_b64("icpr-pending"), template="Pending", dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION")
        rid = body["request-id"]
        status, body = h.retrieve(self.node, rid, dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION", body)
        self.assertEqual(self.emulator.ctl("approve", "--id", str(rid))["disposition"], "issued")
        status, body = h.retrieve(self.node, rid, dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
        self.assertTrue(body["x509"])

    def test_denied_by_policy(self):
        status, body = h.submit(self.node, h.make_csr_b64("icpr-denied"), template="Denied", dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_DENIED")

    def test_template_not_permitted(self):
        status, body = h.submit(self.node, h.make_csr_b64("icpr-restricted"), template="Restricted", dc=DC)
        # As the original answered a CA error: 200, INTERNAL_ERROR, request-id 0.
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "INTERNAL_ERROR")
        self.assertEqual(body["request-id"], 0)
        self.assertTrue(body["request-status"]["message"].startswith(
            "System.Runtime.InteropServices.COMException - CCertRequest::Submit: "), body)
        self.assertIn("0x80094012", body["request-status"]["message"])
        self.assertIn("CERTSRV_E_TEMPLATE_DENIED", body["request-status"]["message"])

    def test_other_identity_may_not_retrieve(self):
        status, body = h.submit(self.node, h.make_csr_b64("icpr-mine"), dc=DC)
        rid = body["request-id"]
        other = h.Node(self.root, self.pki, node_id="node-other",
                       ca_section=h.icpr_ca_section(self.emulator, account="EXAMPLE\\other")).start()
        try:
            status, body = h.retrieve(other, rid, dc=DC)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["request-status"]["status"], "INTERNAL_ERROR")
            self.assertIn("CCertRequest::RetrievePending: Access is denied.", body["request-status"]["message"])
            self.assertIn("0x80070005", body["request-status"]["message"])
        finally:
            other.stop()

    def test_wrong_password_is_access_denied(self):
        section = h.icpr_ca_section(self.emulator)
        bad = self.root / "wrong.pass"
        bad.write_text("not-the-password\n")
        bad.chmod(0o600)
        section = section.replace(str(self.emulator.secret_file("EXAMPLE\\svc-adcsc")), str(bad))
        node = h.Node(self.root, self.pki, node_id="node-badpw", ca_section=section).start()
        try:
            status, body = h.submit(node, h.make_csr_b64("icpr-badpw"), dc=DC)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["request-status"]["status"], "INTERNAL_ERROR")
            self.assertIn("0x80070005", body["request-status"]["message"])
        finally:
            node.stop()

    def test_ca_ping(self):
        out = h.run([h.ADCSC, "ctl", "ca-ping", "--config", self.node.config, "--dc", DC, "--ca", h.CA], check=False)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"ICertPassage on port {self.emulator.icpr_port}", out.stdout)
        self.assertIn("CA ping: OK", out.stdout)
        out = h.run([h.ADCSC, "ctl", "ca-ping", "--config", self.node.config, "--dc", DC, "--ca", "Not-This-CA"],
                    check=False)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)  # not in the allowlist

    def test_zz_ca_down_then_back(self):
        self.emulator.stop()
        try:
            status, body = h.submit(self.node, h.make_csr_b64("icpr-down"), dc=DC)
            # Unreachable, and no other node to ask: the original's answer, as in its
            # troubleshooting table (Jamf Pro logs "INTERNAL_ERROR: <message>").
            self.assertEqual(status, 200, body)
            self.assertEqual(body, {"request-status": {
                "status": "INTERNAL_ERROR",
                "message": "System.Runtime.InteropServices.COMException - CCertRequest::Submit: The RPC server is "
                           "unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"}, "request-id": 0})
            out = h.run([h.ADCSC, "ctl", "ca-ping", "--config", self.node.config, "--dc", DC, "--ca", h.CA],
                        check=False)
            self.assertEqual(out.returncode, 1)
            self.assertIn("2. endpoint mapper", out.stdout)
            self.assertIn("FAILED", out.stdout)
        finally:
            self.emulator.start()
        status, body = h.submit(self.node, h.make_csr_b64("icpr-back"), dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")


if __name__ == "__main__":
    unittest.main(verbosity=2)
