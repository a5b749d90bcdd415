"""CA administration over DCOM (MS-CSRA ICertAdminD2) on real processes. CaAdminThroughTheNode: a
two-node cluster, `adcsc ctl revoke|approve|deny --node` through node-a's admin channel (pinned
administrator certificate): the outcome is in the replicated store at once, so node-b answers
CR_DISP_REVOKED / ISSUED / DENIED even with the CA stopped; each action is logged with the
administrator's pin and counted in /metrics; an answer lost mid-call (the CA acted, the
connection dropped) records nothing. CaAdmin: `adcsc ctl ca-info`,
`revoke`, `approve` and `deny` with a node's configuration against the ADCS emulator, then what
MS-ICPR answers afterwards (a fresh node retrieves CR_DISP_REVOKED, the node retrieves the
approved or denied request), an account without the Officer right refused with the CA's
Access is denied, a CA outside ca.allow refused before anything is sent, the emulator's counts
by operation, and an independent DCOM client (impacket) against the emulator: packet privacy
works, packet integrity is refused (IF_ENFORCEENCRYPTICERTADMIN).
Runs over NTLM, or Kerberos under ADCSC_TEST_CA_AUTH=kerberos (harness.py)."""
import ssl
import sys
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

DC = h.ICPR_DC


# MS-CSRA 3.1.4.1.8 RevokeCertificate, declared with impacket's NDR types for the independent
# client below (impacket has no MS-CSRA module; its request() finds the answer's class by name
# in this module).
try:
    from impacket.dcerpc.v5.dcomrt import DCOMANSWER, DCOMCALL
    from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, ULONG
    from impacket.dcerpc.v5.ndr import NDRSTRUCT

    class FILETIME(NDRSTRUCT):
        structure = (("dwLowDateTime", DWORD), ("dwHighDateTime", DWORD))

    class RevokeCertificate(DCOMCALL):
        opnum = 10
        structure = (("pwszAuthority", LPWSTR), ("pwszSerialNumber", LPWSTR), ("Reason", DWORD),
                     ("FileTime", FILETIME))

    class RevokeCertificateResponse(DCOMANSWER):
        structure = (("ErrorCode", ULONG),)
except ImportError:  # python3-impacket is a test dependency (deploy/install-deps)
    RevokeCertificate = None


def ctl(node, *args):
    return h.run([h.ADCSC, "ctl", *args, "--config", node.config, "--dc", DC, "--ca", h.CA], check=False)


class CaAdmin(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.pki = h.Pki(cls.root)
        cls.emulator = h.Emulator(cls.root).start()
        cls.node = h.Node(cls.root, cls.pki, ca_section=h.icpr_ca_section(cls.emulator)).start()

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.emulator.stop()
        cls._root_ctx.__exit__(None, None, None)

    def submit(self, cn, template="JamfDevice"):
        status, body = h.submit(self.node, h.make_csr_b64(cn), template=template, dc=DC)
        self.assertEqual(status, 200, body)
        return body["request-id"], body["request-status"]["status"]

    def row(self, rid):
        return [r for r in self.emulator.ctl("list")["requests"] if r["request_id"] == rid][0]

    def test_ca_info_shows_name_and_validity(self):
        out = ctl(self.node, "ca-info")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"CA {h.CA} (", out.stdout)
        self.assertRegex(out.stdout, r"valid: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ to \d{4}-")

    def test_revoke_by_request_id_and_a_fresh_node_retrieves_revoked(self):
        rid, status = self.submit("admin-revoke")
        self.assertEqual(status, "CR_DISP_ISSUED")
        out = ctl(self.node, "revoke", "--request-id", str(rid), "--reason", "key-compromise")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"(request {rid}) revoked (key-compromise)", out.stdout)
        row = self.row(rid)
        self.assertEqual(row["disposition"], "revoked")
        self.assertEqual(row["revocation_reason"], "key-compromise")
        # A node that never saw the request asks the CA, which answers revoked.
        fresh = h.Node(self.root, self.pki, node_id="node-fresh", ca_section=h.icpr_ca_section(self.emulator)).start()
        try:
            status, body = h.retrieve(fresh, rid, dc=DC)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_REVOKED", body)
        finally:
            fresh.stop()

    def test_a_serial_must_be_written_as_the_ca_writes_it(self):
        rid, _ = self.submit("admin-serial")
        serial = self.row(rid)["serial"]
        self.assertTrue(serial)
        upper = serial.upper()
        if upper != serial:
            out = ctl(self.node, "revoke", "--serial", upper, "--reason", "superseded")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("The parameter is incorrect. 0x80070057", out.stderr)
        out = ctl(self.node, "revoke", "--serial", serial, "--reason", "certificate-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(self.row(rid)["revocation_reason"], "certificate-hold")
        out = ctl(self.node, "revoke", "--serial", serial, "--reason", "release-from-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(self.row(rid)["disposition"], "issued")

    def test_approve_then_the_node_retrieves_issued(self):
        rid, status = self.submit("admin-approve", template="Pending")
        self.assertEqual(status, "CR_DISP_UNDER_SUBMISSION")
        out = ctl(self.node, "approve", "--request-id", str(rid))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"request {rid} is now CR_DISP_ISSUED", out.stdout)
        status, body = h.retrieve(self.node, rid, dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.assertTrue(body["x509"])

    def test_deny_then_the_node_retrieves_denied(self):
        rid, _ = self.submit("admin-deny", template="Pending")
        out = ctl(self.node, "deny", "--request-id", str(rid))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        status, body = h.retrieve(self.node, rid, dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_DENIED", body)
        # Not pending any more: the CA says so.
        out = ctl(self.node, "approve", "--request-id", str(rid))
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("CERTSRV_E_BAD_REQUESTSTATUS", out.stderr)

    def test_an_account_without_the_officer_right_is_refused(self):
        rid, _ = self.submit("admin-no-officer")
        other = h.Node(self.root, self.pki, node_id="node-other",
                       ca_section=h.icpr_ca_section(self.emulator, account="EXAMPLE\\other")).start()
        try:
            out = ctl(other, "revoke", "--request-id", str(rid), "--reason", "superseded")
            # The request is the service account's: the other account cannot even read it.
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            serial = self.row(rid)["serial"]
            out = ctl(other, "revoke", "--serial", serial, "--reason", "superseded")
            self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
            self.assertIn("Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)", out.stderr)
            self.assertEqual(self.row(rid)["disposition"], "issued")
            out = ctl(other, "ca-info")  # reading needs no Officer right
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        finally:
            other.stop()

    def test_a_ca_outside_the_allowlist_is_refused_here(self):
        out = h.run([h.ADCSC, "ctl", "revoke", "--config", self.node.config, "--dc", DC, "--ca", "Not-This-CA",
                     "--serial", "01"], check=False)
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn("is not in ca.allow", out.stderr)

    def test_zz_the_emulator_counts_admin_calls_by_operation(self):
        stats = self.emulator.ctl("stats")
        calls = stats["admin_calls"]
        for op in ("RemoteCreateInstance", "RevokeCertificate", "ResubmitRequest", "DenyRequest", "GetCAProperty",
                   "RemRelease"):
            self.assertGreater(calls.get(op, 0), 0, (op, calls))
        self.assertGreater(stats["admin_refused"], 0)

    @unittest.skipIf(h.ca_auth() == "kerberos", "the impacket client logs on with NTLM")
    @unittest.skipIf(RevokeCertificate is None, "python3-impacket is not installed")
    def test_impacket_as_an_independent_client_privacy_and_integrity(self):
        from impacket.dcerpc.v5 import dcomrt, transport
        from impacket.dcerpc.v5.dcomrt import ORPCTHIS
        from impacket.dcerpc.v5.dtypes import NULL
        from impacket.dcerpc.v5.rpcrt import RPC_C_AUTHN_LEVEL_PKT_INTEGRITY, RPC_C_AUTHN_LEVEL_PKT_PRIVACY
        from impacket.uuid import generate, string_to_bin, uuidtup_to_bin

        iid = "7fe0d935-dda6-443f-85d0-1cfb58fe41dd"
        password = self.emulator.accounts["EXAMPLE\\svc-adcsc"]

        def revoke(serial, level):
            t = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{self.emulator.epm_port}]")
            t.set_credentials("svc-adcsc", password, "EXAMPLE")
            activator = t.get_dce_rpc()
            activator.set_auth_level(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
            activator.connect()
            iface = dcomrt.IRemoteSCMActivator(activator).RemoteCreateInstance(
                string_to_bin("d99e6e73-fc88-11d0-b498-00a0c90312f3"), string_to_bin(iid))
            activator.disconnect()
            port = None
            for binding in iface.get_cinstance().get_string_bindings():
                if binding["wTowerId"] == 7 and "[" in binding["aNetworkAddr"]:
                    port = int(binding["aNetworkAddr"].split("[")[1].rstrip("]\x00"))
            self.assertEqual(port, self.emulator.dcom_port)
            e = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]")
            e.set_credentials("svc-adcsc", password, "EXAMPLE")
            dce = e.get_dce_rpc()
            dce.set_auth_level(level)
            dce.connect()
            dce.bind(uuidtup_to_bin((iid, "0.0")))
            req = RevokeCertificate()
            orpc = ORPCTHIS()
            orpc["cid"] = generate()
            orpc["extensions"] = NULL
            orpc["flags"] = 0
            req["ORPCthis"] = orpc
            req["pwszAuthority"] = h.CA + "\x00"
            req["pwszSerialNumber"] = serial + "\x00"
            req["Reason"] = 4
            req["FileTime"]["dwLowDateTime"] = 0
            req["FileTime"]["dwHighDateTime"] = 0
            answer = dce.request(req, uuid=iface.get_iPid(), checkError=False)
            dce.disconnect()
            return answer["ErrorCode"]

        rid, _ = self.submit("admin-impacket")
        serial = self.row(rid)["serial"]
        self.assertEqual(revoke(serial, RPC_C_AUTHN_LEVEL_PKT_INTEGRITY), 0x80070005)
        self.assertEqual(self.row(rid)["disposition"], "issued")
        self.assertEqual(revoke(serial, RPC_C_AUTHN_LEVEL_PKT_PRIVACY), 0)
        self.assertEqual(self.row(rid)["disposition"], "revoked")
        self.assertEqual(self.row(rid)["revocation_reason"], "superseded")



def pin_of(cert_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).fingerprint(hashes.SHA256()).hex()


class CaAdminThroughTheNode(unittest.TestCase):
    NODES = ("node-a", "node-b")

    @classmethod
    def setUpClass(cls):
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.pki = h.Pki(cls.root)
        cls.emulator = h.Emulator(cls.root).start()
        cls.admin_cert, cls.admin_key = cls.pki.issue_client(cls.root, "ops-admin")
        cls.ops_port = h.free_port()
        ops = (f'\n[ops]\nlisten = "127.0.0.1:{cls.ops_port}"\ntls = true\nprobe_interval_ms = 200\n'
               f'admin_ca_file = "{cls.pki.server_ca}"\nadmin_pins = ["{pin_of(cls.admin_cert)}"]\n')
        # Quorum 2: when node-a answers the administrator, node-b holds the outcome.
        sections = h.cluster_sections(cls.root, cls.NODES, write_quorum=2)
        cls.nodes = {}
        for n in cls.NODES:
            cls.nodes[n] = h.Node(cls.root, cls.pki, node_id=n, ca_section=h.icpr_ca_section(cls.emulator),
                                  extra=sections[n] + (ops if n == "node-a" else "")).start()

    @classmethod
    def tearDownClass(cls):
        for node in cls.nodes.values():
            node.stop()
        cls.emulator.stop()
        cls._root_ctx.__exit__(None, None, None)

    def ctl(self, *args, ca=h.CA):
        return h.run([h.ADCSC, "ctl", *args, "--node", f"localhost:{self.ops_port}", "--cert", self.admin_cert,
                      "--key", self.admin_key, "--ca-file", self.pki.server_ca, "--dc", DC, "--ca", ca], check=False)

    def submit(self, cn, template="JamfDevice"):
        status, body = h.submit(self.nodes["node-a"], h.make_csr_b64(cn), template=template, dc=DC)
        self.assertEqual(status, 200, body)
        return body["request-id"]

    def status_on(self, node, rid):
        status, body = h.retrieve(self.nodes[node], rid, dc=DC)
        self.assertEqual(status, 200, body)
        return body["request-status"]["status"]

    def test_revoke_then_every_node_answers_revoked(self):
        rid = self.submit("node-revoke")
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_ISSUED")  # both now hold it as issued
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "cessation-of-operation")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("the CA now answers CR_DISP_REVOKED", out.stdout)
        self.assertIn("recorded in the cluster's store: yes", out.stdout)
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_REVOKED", n)
        # Logged with the administrator's pin (the log is written behind the answer: wait for it).
        def logged():
            return [l for l in self.nodes["node-a"].log_lines() if l.get("event") == "ca_admin"
                    and l.get("request_id") == rid]
        h.wait_for(logged, timeout=10, what="the ca_admin log line")
        lines = logged()
        self.assertEqual(lines[-1]["admin_pin"], pin_of(self.admin_cert))
        self.assertEqual(lines[-1]["outcome"], "ok")
        self.assertEqual(lines[-1]["reason"], "cessation-of-operation")

    def emulator_row(self, rid):
        return [r for r in self.emulator.ctl("list")["requests"] if r["request_id"] == rid][0]

    def metrics_of_node_a(self):
        ctx = ssl.create_default_context(cafile=str(self.pki.server_ca))
        with urllib.request.urlopen(f"https://localhost:{self.ops_port}/metrics", context=ctx, timeout=10) as r:
            return r.read().decode()

    def test_hold_then_release_and_every_node_follows(self):
        rid = self.submit("node-hold")
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_ISSUED", n)
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "certificate-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_REVOKED", n)
        # Released (named by serial this time): the store moves back from revoked to issued.
        out = self.ctl("revoke", "--serial", self.emulator_row(rid)["serial"], "--reason", "release-from-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"request {rid}", out.stdout)
        self.assertIn("the CA now answers CR_DISP_ISSUED", out.stdout)
        self.assertIn("recorded in the cluster's store: yes", out.stdout)
        self.assertEqual(self.emulator_row(rid)["disposition"], "issued")
        for n in self.NODES:
            status, body = h.retrieve(self.nodes[n], rid, dc=DC)
            self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_ISSUED"), (n, body))
            self.assertTrue(body.get("x509"), (n, body))

    def test_revoke_by_serial_alone_is_recorded_and_takes_effect_on_its_date(self):
        rid = self.submit("node-serial")
        self.assertEqual(self.status_on("node-b", rid), "CR_DISP_ISSUED")
        serial = self.emulator_row(rid)["serial"]
        out = self.ctl("revoke", "--serial", serial, "--reason", "superseded", "--date", "2026-11-01T08:00:00Z")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn(f"request {rid} certificate {serial} done", out.stdout)
        self.assertIn("recorded in the cluster's store: yes", out.stdout)
        row = self.emulator_row(rid)
        self.assertEqual((row["disposition"], row["revocation_reason"]), ("revoked", "superseded"))
        self.assertEqual(row["revoked_unix_millis"], 1793520000000)  # 2026-11-01T08:00:00Z
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_REVOKED", n)
        out = self.ctl("revoke", "--serial", serial, "--date", "last tuesday")
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn("is not an RFC 3339 time", out.stderr)

    def test_y_a_release_from_hold_waits_until_every_node_speaks_protocol_3(self):
        rid = self.submit("node-hold-mixed")
        self.assertEqual(self.status_on("node-b", rid), "CR_DISP_ISSUED")
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "certificate-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        # node-b comes back as a node of the previous release would (protocol 2 merges by rank
        # alone and would keep the certificate revoked).
        self.assertEqual(self.nodes["node-b"].stop(), 0)
        self.nodes["node-b"].start(env={"ADCSC_TEST_ONLY_CLUSTER_PROTOCOL": "2;1"})
        h.wait_for(lambda: 'adcsc_peer_cluster_protocol{peer="node-b"} 2' in self.metrics_of_node_a(), timeout=30,
                   what="node-a to hear node-b's protocol 2")
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "release-from-hold")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("peer node-b speaks cluster protocol 2", out.stderr)
        self.assertIn("upgrade every node first", out.stderr)
        self.assertEqual(self.emulator_row(rid)["disposition"], "revoked", "nothing was sent to the CA")
        self.assertEqual(self.nodes["node-b"].stop(), 0)
        self.nodes["node-b"].start()
        h.wait_for(lambda: 'adcsc_peer_cluster_protocol{peer="node-b"} 3' in self.metrics_of_node_a(), timeout=30,
                   what="node-a to hear node-b's protocol 3")
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "release-from-hold")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_ISSUED", n)

    def test_approve_and_deny_then_node_b_answers_them(self):
        approve = self.submit("node-approve", template="Pending")
        deny = self.submit("node-deny", template="Pending")
        out = self.ctl("approve", "--request-id", str(approve))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("the CA now answers CR_DISP_ISSUED", out.stdout)
        out = self.ctl("deny", "--request-id", str(deny))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertIn("the CA now answers CR_DISP_DENIED", out.stdout)
        self.assertEqual(self.status_on("node-b", approve), "CR_DISP_ISSUED")
        self.assertEqual(self.status_on("node-b", deny), "CR_DISP_DENIED")

    def test_refusals(self):
        out = self.ctl("revoke", "--serial", "00ff", ca="Not-This-CA")
        self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
        self.assertIn("is not in ca.allow", out.stderr)
        out = self.ctl("revoke", "--serial", "00ff")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("0x80070057", out.stderr)
        # Without the administrator's certificate: the admin channel's generic refusal.
        out = h.run([h.ADCSC, "ctl", "revoke", "--node", f"localhost:{self.ops_port}", "--cert", self.pki.client_cert,
                     "--key", self.pki.client_key, "--ca-file", self.pki.server_ca, "--dc", DC, "--ca", h.CA,
                     "--serial", "00ff"], check=False)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("403", out.stderr)

    def test_an_answer_lost_mid_call_records_nothing(self):
        rid = self.submit("node-lost")
        self.assertEqual(self.status_on("node-b", rid), "CR_DISP_ISSUED")
        # The CA revokes, then the connection drops before its answer: the node never heard.
        self.emulator.ctl("set", "drop_admin_after_apply", "1")
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "key-compromise")
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn("0x800706be", out.stderr)  # RPC_S_CALL_FAILED
        self.assertEqual([r for r in self.emulator.ctl("list")["requests"] if r["request_id"] == rid][0]
                         ["disposition"], "revoked")
        # Nothing half-written: the store still says what it knew.
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_ISSUED", n)
        # The operator runs it again: the CA updates the revocation, the store records it.
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "key-compromise")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_REVOKED", n)

    def test_zz_metrics_count_and_the_store_answers_without_the_ca(self):
        rid = self.submit("node-last")
        out = self.ctl("revoke", "--request-id", str(rid), "--reason", "superseded")
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        text = self.metrics_of_node_a()
        self.assertRegex(text, r'adcsc_ca_admin_actions_total\{operation="revoke",outcome="ok"\} [1-9]')
        self.assertRegex(text, r'adcsc_ca_admin_actions_total\{operation="revoke",outcome="ca_error"\} [1-9]')
        self.emulator.stop()
        for n in self.NODES:
            self.assertEqual(self.status_on(n, rid), "CR_DISP_REVOKED", n)


if __name__ == "__main__":
    unittest.main()
