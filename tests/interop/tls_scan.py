"""A TLS scan of a real node's two listeners by Debian's testssl.sh (a scanner we did not
write): protocols, cipher categories and forward secrecy, the server's preferences and
defaults, the known vulnerabilities and the HTTP headers, on the API port (mutual TLS: it asks
for a client certificate but completes the handshake without one, so the scanner gets in and
is then refused) and on the ops port. Fails on any finding above LOW, printing each.

The node's server certificate is the kind an enterprise CA issues (an issuing CA of the test's
own, 397 days, with CRL and OCSP locations), so no finding is excused: the two that
`adcsc pki init`'s self-signed ten-year identity draws (cert_validityPeriod, cert_revocation)
are about that choice of certificate, not the listeners, and docs/security.md ("TLS scan")
says so.

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

# Findings (testssl ids) excused, with the reason. None: everything above LOW fails the test.
# The scanner is given the test CA (--add-ca) and the name in the certificate (localhost, at
# 127.0.0.1), so the chain and name checks count.
ACCEPTED = {}


def enterprise_identity(root: Path):
    """An issuing CA and a server certificate for localhost as an enterprise PKI would issue it:
    397 days, serverAuth, CRL distribution point and OCSP responder named (the scanner checks
    that revocation can be looked up; it does not fetch). Returns (chain, key, ca) paths."""
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
    import ipaddress
    now = datetime.datetime.utcnow() - datetime.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Example Issuing CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA384()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=397))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://pki.example.test/crl/issuing.crl")], None, None, None)]),
                critical=False)
            .add_extension(x509.AuthorityInformationAccess([x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://ocsp.example.test"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain, key_path, ca_path = root / "server-chain.pem", root / "server-key-enterprise.pem", root / "issuing-ca.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return chain, key_path, ca_path


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
    def scan(self, root, ca, name, port):
        out = root / f"testssl-{name}.json"
        started = time.monotonic()
        run = subprocess.run([TESTSSL, *SCAN_ARGS, "--add-ca", str(ca), "--jsonfile-pretty", str(out),
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
                mark = "accepted: " + ACCEPTED.get(f["id"], "") if f in accepted else ("FAIL" if f in bad else "")
                print(f"  {f.get('severity'):8} {f.get('id')}: {f.get('finding')}  {mark}", file=sys.stderr)
        self.assertEqual(bad, [], f"testssl findings above LOW on the {name} port")

    def test_api_and_ops_ports_have_no_finding_above_low(self):
        self.assertTrue(os.access(TESTSSL, os.X_OK), "testssl not installed (apt-get install testssl.sh)")
        with h.TempRoot() as root:
            pki = h.Pki(root)
            ops_port = h.free_port()
            chain, key, ca = enterprise_identity(root)
            # The scanner makes hundreds of handshakes without a client certificate, most of
            # them refused on purpose: its address is exempt from the per-source refusal
            # budget, which would otherwise close its connections at accept (and read as
            # ciphers "not offered"). The scan is about the TLS settings, not admission.
            node = h.Node(root, pki, extra=f'\n[ops]\nlisten = "127.0.0.1:{ops_port}"\n',
                          api_extra='source_limit_exempt = ["127.0.0.1"]')
            text = node.config.read_text()
            text = text.replace(f'cert_file = "{pki.dir}/adcs-proxy-ca.pem"', f'cert_file = "{chain}"')
            text = text.replace(f'key_file = "{pki.dir}/server-key.pem"', f'key_file = "{key}"')
            assert str(chain) in text and str(key) in text
            node.config.write_text(text)
            node.start()
            try:
                h.wait_for(lambda: port_open(ops_port), timeout=20, what="the ops listener")
                self.scan(root, ca, "api", node.port)
                self.scan(root, ca, "ops", ops_port)
            finally:
                node.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
