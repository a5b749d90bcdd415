"""Kerberos end to end: real nodes with [ca.icpr] auth = "kerberos" (or "negotiate") in front of
the ADCS emulator, against a throw-away MIT KDC (harness.Realm). The emulator of most tests
refuses NTLM (emulator.ntlm = false), so what works here worked with Kerberos.

Each failure is a clear answer and loses nothing: Jamf gets HTTP 200 INTERNAL_ERROR (503 with
api.ca_unreachable_status = 503) whose message names the Kerberos problem, the CA holds no
request for it, the node stays up, and once the cause is gone the client's retry is issued,
once. Covered: submit and retrieve at packet privacy with SPNEGO and raw krb5 (ca-ping shows
the mechanism); a stale keytab; a ticket that expires while the node runs (renewed before its
end); the KDC down (kerberos: an error naming the KDC; negotiate: NTLM instead); clock skew
between the node and the KDC (the KDC runs under faketime).

Not here: a bind below packet privacy. A node cannot be configured below privacy, so there is
no way to show the CA's refusal from the node; tests/unit/ca/icpr_backend_test.cc
(IcprBackendKerberosTest.BelowPacketPrivacyTheCaSaysAccessDenied) binds with Kerberos at packet
integrity against the same emulator and gets E_ACCESSDENIED.
"""
import re
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
import kdc as kdc_fixture  # noqa: E402

DC = h.ICPR_DC
SVC = "EXAMPLE\\svc-adcsc"
STALE = "EXAMPLE\\stale"        # its keytab is made stale by the test that uses it
RENEWER = "EXAMPLE\\renewer"    # short-lived tickets
ACCOUNTS = {SVC: "Correct-Horse-1", STALE: "Stale-Pass-3", RENEWER: "Renew-Pass-4"}
TICKET_LIFE_S = 10
RENEW_MARGIN_S = 5


def ca_ping(node):
    return h.run([h.ADCSC, "ctl", "ca-ping", "--config", node.config, "--dc", DC, "--ca", h.CA], check=False)


def message(body):
    return body["request-status"]["message"]


class Kerberos(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not kdc_fixture.installed():
            raise unittest.SkipTest(f"MIT krb5kdc is not installed ({kdc_fixture.KRB5KDC}; deploy/install-deps)")
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.realm = h.Realm()
        cls.kdc = cls.realm.kdc
        cls.pki = h.Pki(cls.root)
        cls.emulator = h.Emulator(cls.root, accounts=ACCOUNTS, kerberos=cls.realm, ntlm=False).start()

    @classmethod
    def tearDownClass(cls):
        cls.emulator.stop()
        cls.realm.close()
        cls._root_ctx.__exit__(None, None, None)

    def setUp(self):
        self.nodes = []

    def tearDown(self):
        for node in self.nodes:
            node.stop()
        if self.kdc.proc is None:  # a test that stopped the KDC and failed before restarting it
            self.kdc.restart()

    def node(self, node_id, emulator=None, api_extra="", **section):
        emulator = emulator or self.emulator
        section.setdefault("auth", "kerberos")
        node = h.Node(self.root, self.pki, node_id=node_id, api_extra=api_extra,
                      ca_section=h.icpr_ca_section(emulator, **section)).start()
        self.nodes.append(node)
        return node

    def on_ca(self, cn, emulator=None):
        """The CA's requests for this CN."""
        return [r for r in (emulator or self.emulator).ctl("list")["requests"] if f"CN={cn}" in r["subject"]]

    def assert_refused_and_nothing_at_the_ca(self, node, cn, status, body, *fragments):
        """A failed submit: the original's form, request-id 0, the fragments in its message, no
        request at the CA for `cn`, and the node still answering."""
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "INTERNAL_ERROR", body)
        self.assertEqual(body["request-id"], 0, body)
        self.assertTrue(message(body).startswith(
            "System.Runtime.InteropServices.COMException - CCertRequest::Submit: "), body)
        for fragment in fragments:
            self.assertIn(fragment, message(body))
        self.assertEqual(self.on_ca(cn), [])
        self.assertIsNone(node.proc.poll(), "the node must stay up")

    # (a) ------------------------------------------------------------------------------------
    def test_submit_and_retrieve_at_privacy_with_spnego_and_krb5(self):
        # SPNEGO from the service account's keytab; raw krb5 from its password file.
        for mechanism, credential, shown in (("spnego", "keytab", "negotiate/kerberos"),
                                             ("krb5", "password", "kerberos")):
            with self.subTest(mechanism=mechanism):
                before = self.emulator.ctl("stats")
                node = self.node(f"node-{mechanism}", mechanism=mechanism, credential=credential)
                ping = ca_ping(node)
                self.assertEqual(ping.returncode, 0, ping.stdout + ping.stderr)
                self.assertIn(f"Authentication: kerberos ({mechanism})", ping.stdout)
                self.assertIn(f"at packet privacy ... OK, mechanism {shown}", ping.stdout)
                self.assertRegex(ping.stdout, rf"CA ping: OK \(\d+ ms, mechanism {re.escape(shown)}\)")

                cn = f"krb-{mechanism}"
                status, body = h.submit(node, h.make_csr_b64(cn), dc=DC)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                rid = body["request-id"]
                status, body = h.retrieve(node, rid, dc=DC)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                self.assertTrue(body["x509"].startswith("MII"), body)
                # The CA saw the Kerberos caller svc-adcsc@ADCSC.TEST as the NTLM account.
                self.assertEqual([(r["request_id"], r["requester"]) for r in self.on_ca(cn)], [(rid, SVC)])
                after = self.emulator.ctl("stats")
                # ca-ping's call and the submit (a settled request's retrieve is the node's store's).
                self.assertGreaterEqual(after["kerberos_calls"] - before["kerberos_calls"], 2)
                self.assertEqual(after["ntlm_calls"], 0)

    # (c) ------------------------------------------------------------------------------------
    def test_stale_keytab_is_a_clear_error_and_a_fresh_keytab_fixes_it_without_a_restart(self):
        keytab = self.realm.keytab(STALE)
        self.kdc.kadmin(f"cpw -randkey {self.realm.principal(STALE)}")  # the KDC's key moves on
        node = self.node("node-stale", account=STALE)
        csr = h.make_csr_b64("krb-stale")
        status, body = h.submit(node, csr, dc=DC)
        self.assert_refused_and_nothing_at_the_ca(
            node, "krb-stale", status, body, f"from keytab {keytab}",
            "the password or the client keytab's key does not match the account's", "re-export the keytab")
        ping = ca_ping(node)
        self.assertEqual(ping.returncode, 1, ping.stdout + ping.stderr)
        self.assertRegex(ping.stdout, r"3\. connect to .* and bind \(kerberos\) at packet privacy \.\.\. FAILED")
        self.assertIn("re-export the keytab", ping.stdout)
        self.assertIn("check: Kerberos from this host: the keytab/password/ccache in ca.icpr", ping.stdout)
        self.assertIn("CA ping: FAILED", ping.stdout)

        # The keytab is re-exported with the KDC's key: the client's retry is issued, once.
        self.kdc.export_keytab(self.realm.principal(STALE), keytab)
        status, body = h.submit(node, csr, dc=DC)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.assertEqual(len(self.on_ca("krb-stale")), 1)

    # (d) ------------------------------------------------------------------------------------
    def test_an_expiring_ticket_is_renewed_before_its_end_and_submits_go_on(self):
        principal = self.realm.principal(RENEWER)
        self.kdc.set_max_ticket_life(principal, TICKET_LIFE_S)
        # No pooled connections: every submit binds again, so every bind after the first
        # ticket's end needs a ticket from a renewed TGT.
        node = self.node("node-renew", account=RENEWER,
                         icpr_extra=f"ticket_renew_margin_s = {RENEW_MARGIN_S}\nmax_idle_connections = 0")
        started = time.monotonic()  # before the first TGT: it ends at least TICKET_LIFE_S later
        status, body = h.submit(node, h.make_csr_b64("renew-0"), dc=DC)
        first_done = time.monotonic()  # after the first TGT: it ends at most TICKET_LIFE_S later
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        first_tgts = self.kdc.issued_tgts(principal)
        self.assertGreaterEqual(first_tgts, 1, self.kdc.log())
        ids, renewed_at = [body["request-id"]], []

        def submitted_past_the_first_tickets_end():
            status, body = h.submit(node, h.make_csr_b64(f"renew-{len(ids)}"), dc=DC)
            self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_ISSUED"), body)
            ids.append(body["request-id"])
            if not renewed_at and self.kdc.issued_tgts(principal) > first_tgts:
                renewed_at.append(time.monotonic())
            return renewed_at and time.monotonic() > first_done + TICKET_LIFE_S + 1

        h.wait_for(submitted_past_the_first_tickets_end, timeout=TICKET_LIFE_S + 20,
                   what="submits past the first ticket's end, with a renewed TGT")
        self.assertLess(renewed_at[0], started + TICKET_LIFE_S,
                        f"renewed {renewed_at[0] - started:.1f} s after start: not before the first ticket's end")
        self.assertEqual(len({r["request_id"] for r in self.emulator.ctl("list")["requests"]} & set(ids)), len(ids))
        status, body = h.retrieve(node, ids[0], dc=DC)  # a request from the first ticket's time
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)

    # (e) ------------------------------------------------------------------------------------
    def test_kdc_down_is_an_error_naming_the_kdc_and_the_retry_works_once_it_is_back(self):
        self.kdc.stop()  # before the nodes ever had a ticket
        node = self.node("node-nokdc", icpr_extra="max_idle_connections = 0")
        node503 = self.node("node-nokdc-503", api_extra="ca_unreachable_status = 503")
        csr = h.make_csr_b64("kdc-down")
        status, body = h.submit(node, csr, dc=DC)
        self.assert_refused_and_nothing_at_the_ca(
            node, "kdc-down", status, body, "A security package specific error occurred. 0x80070721 (WIN32: 1825 RPC_S_SEC_PKG_ERROR)",
            "cannot reach the KDC for realm ADCSC.TEST", "check krb5.conf")
        status, body = h.submit(node503, h.make_csr_b64("kdc-down-503"), dc=DC)
        self.assertEqual(status, 503, body)
        self.assertEqual(body["request-status"]["status"], "SERVICE_UNAVAILABLE", body)
        self.assertIn("cannot reach the KDC for realm ADCSC.TEST", message(body))
        self.assertEqual(self.on_ca("kdc-down-503"), [])
        ping = ca_ping(node)
        self.assertEqual(ping.returncode, 1, ping.stdout)
        self.assertIn("cannot reach the KDC for realm ADCSC.TEST", ping.stdout)

        self.kdc.restart()
        status, body = h.submit(node, csr, dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.assertEqual(len(self.on_ca("kdc-down")), 1)
        # Down again once the node holds its tickets: a new bind still works from them.
        self.kdc.stop()
        status, body = h.submit(node, h.make_csr_b64("kdc-down-after-tickets"), dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.kdc.restart()
        node.stop()
        lines = [line for line in node.log_lines() if line.get("endpoint") == "request"]
        self.assertEqual([line["outcome"] for line in lines], ["ca_unavailable", "issued", "issued"], lines)
        self.assertIn("cannot reach the KDC", lines[0]["error"])

    def test_kdc_down_with_negotiate_falls_back_to_ntlm(self):
        # A CA that still takes NTLM; the node may use it (negotiate, with the password file).
        emulator = h.Emulator(self.root, name="emulator-ntlm", accounts=ACCOUNTS, kerberos=self.realm,
                              ntlm=True).start()
        try:
            self.kdc.stop()
            node = self.node("node-negotiate", emulator=emulator, auth="negotiate", credential="password",
                             icpr_extra="max_idle_connections = 0")
            status, body = h.submit(node, h.make_csr_b64("fallback"), dc=DC)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
            self.assertEqual(len(self.on_ca("fallback", emulator)), 1)
            stats = emulator.ctl("stats")
            self.assertEqual((stats["ntlm_calls"], stats["kerberos_calls"]), (1, 0), stats)
            ping = ca_ping(node)
            self.assertEqual(ping.returncode, 0, ping.stdout)
            self.assertIn("Authentication: negotiate: kerberos (spnego)", ping.stdout)
            self.assertRegex(ping.stdout, r"CA ping: OK \(\d+ ms, mechanism ntlm\)")

            # With the KDC back, negotiate is Kerberos again.
            self.kdc.restart()
            status, body = h.submit(node, h.make_csr_b64("fallback-over"), dc=DC)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
            self.assertEqual(emulator.ctl("stats")["kerberos_calls"], 1)
            self.assertRegex(ca_ping(node).stdout, r"CA ping: OK \(\d+ ms, mechanism negotiate/kerberos\)")
        finally:
            emulator.stop()

    # (f) ------------------------------------------------------------------------------------
    def test_clock_skew_with_the_kdc_says_check_ntp(self):
        if not kdc_fixture.faketime_installed():
            self.skipTest(f"needs {kdc_fixture.LIBFAKETIME} (Debian package libfaketime; deploy/install-deps)")
        self.kdc.stop()
        self.kdc.restart(clock_offset="+1h")  # the KDC an hour ahead of this host (and of the CA)
        try:
            # kdc_timesync = 0: the node trusts its own clock, so the KDC's reply is an hour off.
            strict = self.node("node-skew", krb5_conf=self.kdc.krb5_conf_variant("strict", kdc_timesync=0))
            csr = h.make_csr_b64("skew")
            status, body = h.submit(strict, csr, dc=DC)
            self.assert_refused_and_nothing_at_the_ca(strict, "skew", status, body,
                                                      "clock skew too great", "check NTP")
            ping = ca_ping(strict)
            self.assertEqual(ping.returncode, 1, ping.stdout)
            self.assertIn("clock skew too great between this host and the KDC/CA: check NTP", ping.stdout)
            # MIT's default (kdc_timesync = 1) follows the KDC's clock: the ticket then starts an
            # hour ahead of the CA's clock, and the CA refuses it; the answer says so.
            following = self.node("node-skew-sync")
            status, body = h.submit(following, h.make_csr_b64("skew-sync"), dc=DC)
            self.assert_refused_and_nothing_at_the_ca(following, "skew-sync", status, body,
                                                      "the CA did not accept our Kerberos ticket", "clock skew")
        finally:
            self.kdc.stop()
            self.kdc.restart()
        # The clocks agree again: the retry is issued, once.
        status, body = h.submit(strict, csr, dc=DC)
        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
        self.assertEqual(len(self.on_ca("skew")), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
