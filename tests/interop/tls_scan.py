"""A TLS scan of a real node's two listeners by Debian's testssl.sh (a scanner we did not
write): protocols, cipher categories and forward secrecy, the server's preferences and
defaults, the known vulnerabilities and the HTTP headers, on the API port (mutual TLS: it asks
for a client certificate but completes the handshake without one, so the scanner gets in and
is then refused) and on the ops port. Fails on any finding above LOW, printing each.

A few findings come from the test PKI or the scanner's setting, not from our TLS settings;
ACCEPTED lists them, each with its reason (docs/security.md, "TLS scan").

Run by hand: ADCSC_BIN_DIR=build/bin /usr/bin/python3 tests/interop/tls_scan.py
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import harness as h  # noqa: E402

TESTSSL = shutil.which("testssl") or "/usr/bin/testssl"  # Debian package testssl.sh (3.0.8)
FAILING = {"MEDIUM", "HIGH", "CRITICAL"}

# Findings (testssl ids) that are about the test PKI, not about the listeners' TLS settings.
# Everything else above LOW fails the test. The scanner is given the test CA (--add-ca) and
# the name in the certificate (localhost, at 127.0.0.1), so the chain and name checks count.
ACCEPTED = {
    # The private PKI has no CRL or OCSP responder: a client is revoked by removing its pin,
    # and the server identity is pinned by Jamf Pro.
    "cert_revocation": "the private PKI has no CRL or OCSP responder; a client is revoked by removing its pin",
    # `adcsc pki init` makes the server identity valid for ten years: Jamf Pro is given this
    # very certificate as its trust anchor, so each renewal is a change in Jamf Pro. The 398/825-day limits testssl applies are the CA/Browser
    # Forum's, for certificates publicly trusted by browsers.
    "cert_validityPeriod": "the self-signed identity Jamf Pro pins is a trust anchor, valid ten years",
}

SCAN_ARGS = [
    "--quiet", "--color", "0", "--warnings", "off", "--sneaky", "--ip", "127.0.0.1", "--openssl", "/usr/bin/openssl",
    "--connect-timeout", "5", "--openssl-timeout", "10",
    # what to scan: protocols, cipher categories, forward secrecy, server preference,
    # server defaults (certificate, session resumption), the vulnerabilities, HTTP headers
    "--protocols", "--std", "--fs", "--server-preference", "--server-defaults", "--vulnerable", "--headers",
]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def findings(json_path):
    """Every finding of a --jsonfile-pretty report: dicts with id, severity, finding."""
    report = json.loads(Path(json_path).read_text())
    out = []
    for result in report.get("scanResult", []):
        for section, items in result.items():
            if isinstance(items, list):
                out.extend(dict(item, section=section) for item in items if isinstance(item, dict))
    return out


class TlsScan(unittest.TestCase):
    def scan(self, root, pki, name, port):
        out = root / f"testssl-{name}.json"
        started = time.monotonic()
        run = subprocess.run([TESTSSL, *SCAN_ARGS, "--add-ca", str(pki.server_ca), "--jsonfile-pretty", str(out),
                              f"localhost:{port}"],
                             capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
        self.assertTrue(out.exists(), f"testssl wrote no report (exit {run.returncode}):\n{run.stdout[-3000:]}"
                        f"\n{run.stderr[-2000:]}")
        all_findings = findings(out)
        self.assertTrue(any(f.get("id") == "TLS1_2" for f in all_findings), "the scan saw no protocols")
        bad, accepted = [], []
        for f in all_findings:
            if f.get("severity") not in FAILING:
                continue
            (accepted if f.get("id") in ACCEPTED else bad).append(f)
        print(f"\n== testssl {name} port 127.0.0.1:{port}: {len(all_findings)} findings, {took:.0f} s", file=sys.stderr)
        for f in sorted(all_findings, key=lambda f: f.get("id", "")):
            if f.get("severity") in ("LOW", *FAILING):
                mark = "accepted: " + ACCEPTED[f["id"]] if f in accepted else ("FAIL" if f in bad else "")
                print(f"  {f.get('severity'):8} {f.get('id')}: {f.get('finding')}  {mark}", file=sys.stderr)
        self.assertEqual(bad, [], f"testssl findings above LOW on the {name} port")

    def test_api_and_ops_ports_have_no_finding_above_low(self):
        self.assertTrue(os.access(TESTSSL, os.X_OK), "testssl not installed (apt-get install testssl.sh)")
        with h.TempRoot() as root:
            pki = h.Pki(root)
            ops_port = h.free_port()
            node = h.Node(root, pki, extra=f'\n[ops]\nlisten = "127.0.0.1:{ops_port}"\n').start()
            try:
                h.wait_for(lambda: port_open(ops_port), timeout=20, what="the ops listener")
                self.scan(root, pki, "api", node.port)
                self.scan(root, pki, "ops", ops_port)
            finally:
                node.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
