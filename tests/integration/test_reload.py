"""Reload without a restart, on a real node: `adcsc ctl reload` (SIGHUP with the node's answer)
rotates the API identity and Jamf Pro's pinned client certificate with an overlap in which old
and new pins both hold; a configuration that does not load is refused before anything is sent,
one the node cannot use (a key that does not match its certificate) is refused by the node,
and either way the node keeps serving as before. A reload also applies the CA allowlist and
its signing policy (to the calls after it, and to the health probes), the administrators' pins
and the ops listener's identity, and names what changed but waits for a restart."""
import json
import ssl
import sys
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402


def version(node, ctx):
    try:
        status, _ = h.call(node, "GET", "/api/v1/version", ctx=ctx)
        return status
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return type(e).__name__


class Reload(unittest.TestCase):
    def test_rotate_the_api_identity_and_jamfs_pin_without_a_restart(self):
        with h.TempRoot() as root:
            old = h.Pki(root)
            new = h.Pki(root, name="pki-new")
            ops_port = h.free_port()
            node = h.Node(root, old, extra=f'\n[ops]\nlisten = "127.0.0.1:{ops_port}"\ntls = false\n'
                                           'probe_interval_ms = 200\n').start()
            try:
                pid = node.proc.pid
                old_client = h.ssl_context(old)
                self.assertEqual(version(node, old_client), 200)
                original = node.config.read_text()

                def certificates():
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{ops_port}/health/ready", timeout=5) as r:
                            return json.loads(r.read())["certificates"]
                    except urllib.error.HTTPError as e:
                        return json.loads(e.read())["certificates"]

                # Every certificate with its expiry: the API identity, its client CA, and Jamf
                # Pro's pinned certificate once it was presented.
                before = certificates()
                roles = {c["role"] for c in before}
                self.assertIn("api identity", roles)
                self.assertIn("api client CA", roles)
                self.assertIn("jamf client (pinned)", roles, before)
                self.assertTrue(all(c["state"] == "ok" and c["days_left"] > 300 for c in before), before)
                listed = h.run([h.ADCSC, "ctl", "certs", "--config", node.config], check=False)
                self.assertEqual(listed.returncode, 0, listed.stdout + listed.stderr)
                self.assertIn("api identity", listed.stdout)
                tight = h.run([h.ADCSC, "ctl", "certs", "--config", node.config, "--critical-days", "36500", "--json"],
                              check=False)
                self.assertEqual(tight.returncode, 1, "a certificate under the critical threshold: exit 1")
                self.assertEqual({c["state"] for c in json.loads(tight.stdout)}, {"critical"})
                both_cas = root / "client-cas.pem"
                both_cas.write_text(old.server_ca.read_text() + new.server_ca.read_text())

                # A file with a syntax error: refused before the node hears of it.
                node.config.write_text(original + "\n[api\n")
                bad = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                self.assertEqual(bad.returncode, 2, bad.stdout + bad.stderr)
                self.assertIn("not reloading", bad.stderr)

                # The overlap: the new identity serves, both Jamf identities are mapped.
                overlap = (original.replace(f'cert_file = "{old.dir}/adcs-proxy-ca.pem"',
                                            f'cert_file = "{new.dir}/adcs-proxy-ca.pem"')
                           .replace(f'key_file = "{old.dir}/server-key.pem"', f'key_file = "{new.dir}/server-key.pem"')
                           .replace(f'client_ca_file = "{old.dir}/adcs-proxy-ca.pem"', f'client_ca_file = "{both_cas}"')
                           .replace(f'client_pins = ["{old.pin}"]', f'client_pins = ["{old.pin}", "{new.pin}"]'))
                self.assertNotEqual(overlap, original)
                node.config.write_text(overlap)
                out = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("reloaded", out.stdout)
                self.assertIn("2 client pins", out.stdout)
                new_client = h.ssl_context(new)
                old_cert_new_trust = h.ssl_context(new, cert=old.client_cert, key=old.client_key)
                self.assertEqual(version(node, new_client), 200)
                self.assertEqual(version(node, old_cert_new_trust), 200, "the old pin still holds")
                api = [c for c in certificates() if c["role"] == "api identity"]
                self.assertEqual(len(api), 1)
                self.assertEqual(api[0]["source"], str(new.dir / "adcs-proxy-ca.pem"), "the health follows the reload")
                self.assertEqual(version(node, old_client), "SSLCertVerificationError", "the server identity changed")

                # A key that does not match its certificate: the node refuses and keeps serving.
                node.config.write_text(overlap.replace(f'key_file = "{new.dir}/server-key.pem"',
                                                       f'key_file = "{old.dir}/server-key.pem"'))
                refused = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                self.assertEqual(refused.returncode, 1, refused.stdout + refused.stderr)
                self.assertIn("refused", refused.stdout)
                self.assertEqual(version(node, new_client), 200)

                # The end of the overlap: only the new pin.
                node.config.write_text(overlap.replace(f'"{old.pin}", ', ""))
                out = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertEqual(version(node, new_client), 200)
                self.assertEqual(version(node, old_cert_new_trust), 403, "the old pin no longer maps")
                status, body = h.submit(node, h.make_csr_b64("after-rotation"), ctx=new_client)
                self.assertEqual(status, 200, body)

                self.assertEqual(node.proc.pid, pid)
                self.assertIsNone(node.proc.poll(), "one process throughout: no restart")
                self.assertEqual(node.stop(), 0)
                events = [l for l in node.log_lines() if l.get("event") == "config_reloaded"]
                self.assertEqual([e.get("outcome") for e in events], ["reloaded", "refused", "reloaded"])
            finally:
                node.stop()


def pin_of(cert_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).fingerprint(hashes.SHA256()).hex()


def ops_call(port, ctx, method, path, body=None):
    """(status, parsed JSON) of an ops-listener call over TLS."""
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={} if body is None else {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5, context=ctx) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


class ReloadPolicyAndPins(unittest.TestCase):
    def test_the_allowlist_its_policy_the_admin_pins_and_the_ops_identity_reload(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            other = h.Pki(root, name="pki-ops")
            admin_a, admin_a_key = pki.issue_client(root, "admin-a")
            admin_b, admin_b_key = pki.issue_client(root, "admin-b")
            ops_port = h.free_port()
            ops = (f'\n[ops]\nlisten = "127.0.0.1:{ops_port}"\ntls = true\nprobe_interval_ms = 200\n'
                   f'admin_ca_file = "{pki.server_ca}"\nadmin_pins = ["{pin_of(admin_a)}"]\n')
            node = h.Node(root, pki, extra=ops).start()
            try:
                pid = node.proc.pid
                original = node.config.read_text()

                def ops_ctx(trust, cert=None, key=None):
                    ctx = ssl.create_default_context(cafile=str(trust.server_ca))
                    ctx.check_hostname = False
                    if cert:
                        ctx.load_cert_chain(str(cert), str(key))
                    return ctx

                def reload(text, expect=0):
                    node.config.write_text(text)
                    out = h.run([h.ADCSC, "ctl", "reload", "--config", node.config], check=False)
                    self.assertEqual(out.returncode, expect, out.stdout + out.stderr)
                    return out.stdout

                def disposition(cn, dc=h.DC):
                    status, body = h.submit(node, h.make_csr_b64(cn), dc=dc)
                    return status, body

                # Before: no signing policy on the entry, one CA, administrator A.
                status, body = disposition("laptop-1")
                self.assertEqual(status, 200, body)
                self.assertNotIn("signing policy", json.dumps(body))
                self.assertEqual(ops_call(ops_port, ops_ctx(pki, admin_b, admin_b_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 403)
                self.assertEqual(ops_call(ops_port, ops_ctx(pki, admin_a, admin_a_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 200)
                second_dc = "ca02.example.test"
                status, body = disposition("device-0", dc=second_dc)
                self.assertEqual(status, 400, body)

                # The reload: a policy on the entry, a second CA, administrator B instead of A,
                # the ops listener on another identity, and a changed listener (later).
                policy = 'subject_patterns = ["CN=device-*"]\n'
                allow = f'[[ca.allow]]\ndc = "{h.DC}"\nca = "{h.CA}"\n'
                self.assertIn(allow, original)
                changed = (original.replace(allow, f'[[ca.allow]]\ndc = "{second_dc}"\nca = "{h.CA}"\n'
                                                   f'templates = ["JamfDevice"]\n\n' + allow + policy)
                           .replace(pin_of(admin_a), pin_of(admin_b))
                           .replace("[ops]\n", f'[ops]\ncert_file = "{other.dir}/adcs-proxy-ca.pem"\n'
                                                f'key_file = "{other.dir}/server-key.pem"\n')
                           .replace("header_timeout_ms = 2000", "header_timeout_ms = 2000\nmax_connections = 999"))
                said = reload(changed)
                self.assertIn("2 allowlisted CAs", said)
                self.assertIn("1 admin pins", said)
                self.assertIn("applied only at the next restart: api.max_connections", said)

                status, body = disposition("laptop-2")
                self.assertEqual(status, 200, body)
                self.assertIn("signing policy", json.dumps(body), "the new policy applies to calls after the reload")
                status, body = disposition("device-2")
                self.assertEqual(status, 200, body)
                self.assertNotIn("signing policy", json.dumps(body))
                status, body = disposition("device-3", dc=second_dc)
                self.assertEqual(status, 200, body)

                # The health probes follow: the new CA is pinged and listed.
                def ca_checks(trust):
                    _, report = ops_call(ops_port, ops_ctx(trust), "GET", "/health/ready")
                    return {c["name"] for c in report["checks"] if c["name"].startswith("ca ")}
                h.wait_for(lambda: ca_checks(other) == {f"ca {h.DC}\\{h.CA}", f"ca {second_dc}\\{h.CA}"}, timeout=20,
                           what="both CAs in the health report")

                # The ops listener presents the new identity; the admin channel takes B, not A.
                with self.assertRaises(urllib.error.URLError) as refused:
                    ops_call(ops_port, ops_ctx(pki), "GET", "/health/ready")
                self.assertIsInstance(refused.exception.reason, ssl.SSLCertVerificationError)
                self.assertEqual(ops_call(ops_port, ops_ctx(other, admin_a, admin_a_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 403, "A's pin is gone")
                self.assertEqual(ops_call(ops_port, ops_ctx(other, admin_b, admin_b_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 200, "B's pin holds")

                # An admin CA file that does not exist: refused, and B still holds.
                reload(changed.replace(f'admin_ca_file = "{pki.server_ca}"', 'admin_ca_file = "/nonexistent.pem"'),
                       expect=2)
                self.assertEqual(ops_call(ops_port, ops_ctx(other, admin_b, admin_b_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 200)

                # Back to the first file: the policy and the second CA are gone again.
                reload(original)
                status, body = disposition("laptop-3")
                self.assertEqual(status, 200, body)
                self.assertNotIn("signing policy", json.dumps(body))
                status, body = disposition("device-4", dc=second_dc)
                self.assertEqual(status, 400, body)
                h.wait_for(lambda: ca_checks(pki) == {f"ca {h.DC}\\{h.CA}"}, timeout=20,
                           what="the removed CA leaves the health report")
                self.assertEqual(ops_call(ops_port, ops_ctx(pki, admin_a, admin_a_key), "POST", "/admin/mode",
                                          {"mode": "active"})[0], 200)
                self.assertEqual(node.proc.pid, pid)
                self.assertIsNone(node.proc.poll(), "one process throughout: no restart")
            finally:
                node.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
