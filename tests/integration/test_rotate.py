"""Certificate lifecycle on real processes: two clustered nodes in front of the ADCS emulator,
set up with `adcsc pki init`. `adcsc pki rotate` makes the successors; its config lines and
`adcsc ctl reload` put every node in the overlap, where the old and the new Jamf Pro client
identity both enrol, and Java's default trust manager (Jamf Pro's stack) with a trust store of
only the old adcs-proxy-ca.cer still trusts the renewed server certificate; once the overlap's
`until` has passed, the old
identity gets 403 with a log line that says why and the new one enrols. Meanwhile the CA's own
certificate, learned from an issuance's chain (node-a) or named in ca.allow[].ca_cert_file
(node-b, whose file also holds a certificate 3 days from expiry), is reported, and `adcsc ctl
status` shows every node's certificates with the worst state, exiting 4 for the critical one."""
import datetime
import json
import re
import shutil
import ssl
import sys
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

NODES = ["node-a", "node-b"]

# Jamf Pro's side of the TLS handshake: Java's default PKIX trust manager over a trust store that
# holds only the server certificate uploaded to Jamf Pro, the client identity from a .pfx, and
# default host name verification. Prints the HTTP status, or the exception.
JAVA_CLIENT = r"""
import java.io.FileInputStream;
import java.net.URL;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import javax.net.ssl.*;

public class JamfTrust {
  public static void main(String[] a) throws Exception {
    KeyStore trust = KeyStore.getInstance("PKCS12");
    trust.load(null, null);
    try (FileInputStream in = new FileInputStream(a[1])) {
      trust.setCertificateEntry("adcs-proxy-ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    KeyStore identity = KeyStore.getInstance("PKCS12");
    try (FileInputStream in = new FileInputStream(a[2])) { identity.load(in, a[3].toCharArray()); }
    KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
    kmf.init(identity, a[3].toCharArray());
    SSLContext ctx = SSLContext.getInstance("TLS");
    ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
    HttpsURLConnection c = (HttpsURLConnection) new URL("https://localhost:" + a[0] + "/api/v1/version").openConnection();
    c.setSSLSocketFactory(ctx.getSocketFactory());
    c.setRequestProperty("User-Agent", "Java-SDK");
    try {
      System.out.println(c.getResponseCode());
    } catch (Exception e) {
      System.out.println(e.getClass().getName() + ": " + e.getMessage());
    }
  }
}
"""


def client_context(trusted_pem, cert, key):
    """Python's ssl (OpenSSL) as a client: trusts `trusted_pem`, presents cert/key."""
    ctx = ssl.create_default_context(cafile=str(trusted_pem))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def java_client(root, node, trusted_cer, pfx, password):
    """What Jamf Pro's Java stack answers: the HTTP status, or the exception it threw."""
    source = root / "JamfTrust.java"
    source.write_text(JAVA_CLIENT)
    out = h.run(["java", source, node.port, trusted_cer, pfx, password], check=False)
    return (out.stdout.strip() or out.stderr.strip()).splitlines()[-1]
API_KEYS = ("cert_file", "key_file", "client_ca_file", "client_pins")


def with_api_lines(config_text, lines):
    """The config with its [api] identity keys replaced by `lines` (the [api] body of the
    snippet `pki rotate` printed). Only the [api] section is touched: [cluster] has keys of the
    same names."""
    out, section, skipping = [], None, False
    for line in config_text.splitlines():
        header = re.match(r"^\s*\[+([^\]]+)\]+\s*$", line)
        if header:
            section = header.group(1).strip()
            out.append(line)
            if section == "api":
                out.extend(lines)
            continue
        if skipping:
            skipping = not line.strip().startswith("]")
            continue
        key = line.split("=", 1)[0].strip()
        if section == "api" and key in API_KEYS:
            skipping = key == "client_pins" and "]" not in line
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def snippet_api_lines(snippet):
    lines = snippet.splitlines()
    return [l for l in lines[lines.index("[api]") + 1:]]


class Rotate(unittest.TestCase):
    def test_rotate_with_an_overlap_then_refuse_the_old_identity(self):
        with h.TempRoot() as root:
            old = h.Pki(root)
            emulator = h.Emulator(root).start()
            sections = h.cluster_sections(root, NODES)
            ops_port = h.free_port()
            ops = f'\n[ops]\nlisten = "127.0.0.1:{ops_port}"\ntls = false\nprobe_interval_ms = 200\n'
            nodes = {}
            try:
                # node-b is also given a file for the CA (ca.allow[].ca_cert_file): the emulator's
                # CA certificate and, above it, one that expires in 3 days (critical).
                ca_cert_file = root / "node-b-ca-certs.pem"
                short, _ = old.issue_client(root, "Short-Lived-Root",
                                            not_after=datetime.datetime.utcnow() + datetime.timedelta(days=3))
                ca_cert_file.write_text((emulator.dir / "data" / "ca" / "ca-cert.pem").read_text() + short.read_text())
                for n in NODES:
                    ca_section = h.icpr_ca_section(emulator)
                    if n == "node-b":
                        ca_section = ca_section.replace('san_dns = [', f'ca_cert_file = "{ca_cert_file}"\nsan_dns = [', 1)
                    nodes[n] = h.Node(root, old, node_id=n, ca_section=ca_section,
                                      extra=sections[n] + (ops if n == "node-a" else ""),
                                      api_extra="refusal_log_interval_s = 0").start()  # log every refusal
                a, b = nodes["node-a"], nodes["node-b"]
                old_client = h.ssl_context(old)

                def enrol(node, ctx, cn):
                    try:
                        status, body = h.submit(node, h.make_csr_b64(cn), ctx=ctx, dc=h.ICPR_DC)
                    except (ssl.SSLError, ConnectionError, OSError) as e:
                        return type(e).__name__, None
                    return status, body

                def certificates():
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/health/ready", timeout=5) as r:
                            return json.loads(r.read())["certificates"]
                    except urllib.error.HTTPError as e:
                        return json.loads(e.read())["certificates"]

                # The CA's certificate: unknown until an answer brought its chain.
                self.assertNotIn("ca certificate", {c["role"] for c in certificates()})
                status, body = enrol(a, old_client, "before-rotation")
                self.assertEqual(status, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                ca_certs = [c for c in certificates() if c["role"] == "ca certificate"]
                self.assertEqual(len(ca_certs), 1, certificates())
                self.assertIn(h.CA, ca_certs[0]["subject"])
                self.assertIn(f"{h.ICPR_DC}\\{h.CA}", ca_certs[0]["source"])
                self.assertEqual(ca_certs[0]["state"], "ok")
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/metrics", timeout=5).read().decode()
                self.assertIn('adcsc_certificate_expiry_seconds{role="ca certificate"', metrics)

                # pki rotate: refuses to overwrite, then writes the successors.
                new_dir, password_file = root / "pki-2", root / "pki-2.pass"
                refused = h.run([h.ADCSC, "pki", "rotate", "--from", old.dir, "--out", old.dir], check=False)
                self.assertEqual(refused.returncode, 2, refused.stdout + refused.stderr)
                out = h.run([h.ADCSC, "pki", "rotate", "--from", old.dir, "--out", new_dir, "--overlap-days", "14",
                             "--password-file", password_file], check=False)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                password = password_file.read_text().strip()
                self.assertNotIn(password, out.stdout, "the password went to its file only")
                self.assertEqual((new_dir / "client-cert.pfx").stat().st_mode & 0o777, 0o600)
                self.assertEqual((new_dir / "server-key.pem").stat().st_mode & 0o777, 0o600)
                again = h.run([h.ADCSC, "pki", "rotate", "--from", old.dir, "--out", new_dir], check=False)
                self.assertEqual(again.returncode, 2, "never overwrites")
                self.assertIn("refusing to overwrite", again.stderr)
                new_pin = (new_dir / "client-cert.pin").read_text().strip()
                snippet = (new_dir / "api-rotation.toml").read_text()
                self.assertIn(snippet, out.stdout)
                self.assertRegex(snippet, r'\{ pin = "' + old.pin + r'", until = \d{4}-\d\d-\d\dT00:00:00Z \}')
                new_key = root / "new-client-key.pem"
                h.run(["openssl", "pkcs12", "-in", new_dir / "client-cert.pfx", "-nocerts", "-nodes", "-passin",
                       f"pass:{password}", "-out", new_key])
                new_client = h.ssl_context(old, cert=new_dir / "client-cert.pem", key=new_key)
                self.assertEqual(enrol(a, new_client, "new-before-reload")[0], 403, "not mapped yet")

                # The overlap, on every node: the snippet's lines, then a reload.
                originals = {n: node.config.read_text() for n, node in nodes.items()}
                for n, node in nodes.items():
                    node.config.write_text(with_api_lines(originals[n], snippet_api_lines(snippet)))
                    r = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    self.assertIn("2 client pins (1 until the end of an overlap)", r.stdout)
                # Python's ssl (OpenSSL) matches a self-signed certificate exactly: from here on
                # these clients trust the renewed file (Jamf Pro, in Java, is checked below).
                old_client = client_context(new_dir / "adcs-proxy-ca.pem", old.client_cert, old.client_key)
                new_client = client_context(new_dir / "adcs-proxy-ca.pem", new_dir / "client-cert.pem", new_key)
                for node in (a, b):
                    for ctx, cn in ((old_client, "old-in-overlap"), (new_client, "new-in-overlap")):
                        status, body = enrol(node, ctx, f"{cn}-{node.node_id}")
                        self.assertEqual(status, 200, (node.node_id, cn, body))
                        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                # The renewed server certificate is what the nodes present now, and Jamf Pro's
                # Java stack, still holding the old adcs-proxy-ca.cer, trusts it (same key, same
                # name) with the old and the new client identity; the uploaded renewed one works too.
                served = ssl.get_server_certificate(("127.0.0.1", a.port))
                self.assertEqual(served.strip(), (new_dir / "adcs-proxy-ca.pem").read_text().strip())
                if shutil.which("java") is None:  # deploy/install-deps installs OpenJDK 17
                    print("java not installed: the Jamf Pro (Java) trust check is skipped", file=sys.stderr)
                else:
                    self.assertEqual(java_client(root, a, old.dir / "adcs-proxy-ca.cer", old.pfx, old.password), "200")
                    self.assertEqual(java_client(root, b, old.dir / "adcs-proxy-ca.cer", new_dir / "client-cert.pfx",
                                                 password), "200")
                    self.assertEqual(java_client(root, b, new_dir / "adcs-proxy-ca.cer", new_dir / "client-cert.pfx",
                                                 password), "200")
                pinned = [c for c in certificates() if c["role"] == "jamf client (pinned)"]
                self.assertEqual(len(pinned), 2, pinned)
                self.assertEqual(sum(1 for c in pinned if "mapped_until_ms" in c), 1, pinned)
                listed = h.run([h.ADCSC, "ctl", "certs", "--config", a.config], check=False)
                self.assertEqual(listed.returncode, 0, listed.stdout + listed.stderr)
                self.assertRegex(listed.stdout, r"jamf client pin\s+overlap\s+1[34] days\s+sha256:" + old.pin)

                # ctl status: every node's certificates.
                status_json = h.run([h.ADCSC, "ctl", "status", "--config", a.config, "--json"], check=False)
                self.assertEqual(status_json.returncode, 4, "every node answered, one has a critical certificate: "
                                 + status_json.stdout + status_json.stderr)
                infos = {i["from"]["nodeId"]: i for i in json.loads(status_json.stdout)}
                self.assertEqual(set(infos), set(NODES))
                for n in NODES:
                    self.assertTrue(infos[n].get("certificatesReported"), infos[n])
                    roles = {c["role"] for c in infos[n]["certificates"]}
                    self.assertTrue({"api identity", "api client CA", "cluster identity", "cluster CA",
                                     "jamf client (pinned)"} <= roles, (n, roles))
                self.assertIn("ca certificate", {c["role"] for c in infos["node-a"]["certificates"]})
                # node-b's from its file and from its answers: the same certificate, listed once.
                b_ca = [c for c in infos["node-b"]["certificates"] if c["role"] == "ca certificate"]
                self.assertEqual([c["source"] for c in b_ca], [str(ca_cert_file)] * 2, b_ca)
                self.assertEqual(int(b_ca[0]["notAfterUnixMs"]), ca_certs[0]["not_after_ms"])  # proto JSON: int64 as a string
                self.assertEqual([c["state"] for c in b_ca], ["ok", "critical"], b_ca)
                listed_b = h.run([h.ADCSC, "ctl", "certs", "--config", b.config], check=False)
                self.assertRegex(listed_b.stdout, r"ca certificate\s+ok\s+\d+ days\s+CN=" + h.CA)
                self.assertEqual(listed_b.returncode, 1, "a critical certificate: exit 1")
                status_text = h.run([h.ADCSC, "ctl", "status", "--config", b.config], check=False)
                self.assertEqual(status_text.returncode, 4, status_text.stdout + status_text.stderr)
                self.assertEqual(status_text.stdout.count("  certificates: "), 2, status_text.stdout)
                self.assertIn("worst ok", status_text.stdout)  # node-a
                self.assertIn("worst CRITICAL", status_text.stdout)  # node-b
                self.assertRegex(status_text.stdout, r"\n    CRITICAL\s+ca certificate\s+[0-9] days\s+CN=Short-Lived-Root")

                # The end of the overlap (an `until` already past), on every node.
                for node in nodes.values():
                    text = re.sub(r"until = \S+ \}", "until = 2020-01-01T00:00:00Z }", node.config.read_text())
                    node.config.write_text(text)
                    r = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                for node in (a, b):
                    status, body = enrol(node, old_client, f"old-after-{node.node_id}")
                    self.assertEqual(status, 403, body)
                    self.assertIn("overlap ended at 2020-01-01T00:00:00Z", json.dumps(body))
                    status, body = enrol(node, new_client, f"new-after-{node.node_id}")
                    self.assertEqual(status, 200, body)
                    self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                refusals = [l for l in a.log_lines() if l.get("event") == "client_refused"
                            and l.get("client_pin") == old.pin]
                self.assertTrue(any("overlap ended" in l.get("reason", "") for l in refusals), refusals)
                listed = h.run([h.ADCSC, "ctl", "certs", "--config", a.config], check=False)
                self.assertRegex(listed.stdout, r"jamf client pin\s+ended")
                for node in nodes.values():
                    self.assertIsNone(node.proc.poll(), "one process throughout: no restart")
            finally:
                for node in nodes.values():
                    node.stop()
                emulator.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
