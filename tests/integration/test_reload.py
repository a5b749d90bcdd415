"""Reload without a restart, on a real node: `adcsc ctl reload` (SIGHUP with the node's answer)
rotates the API identity and Jamf Pro's pinned client certificate with an overlap in which old
and new pins both hold; a configuration that does not load is refused before anything is sent,
one the node cannot use (a key that does not match its certificate) is refused by the node,
and either way the node keeps serving as before."""
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
