"""Log files under logrotate: SIGHUP makes a node reopen its event and access logs (creating
them 0640 when logrotate moved them away) and never stops it."""
import re
import shutil
import signal
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402


class LogReopen(unittest.TestCase):
    def test_sighup_reopens_the_logs_and_never_stops_the_node(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            try:
                status, body = h.submit(node, h.make_csr_b64("before-rotation"))
                self.assertEqual(status, 200, body)
                log, access = root / "node-a.log", root / "node-a-access.log"
                h.wait_for(lambda: "/api/v1/certificate/request" in access.read_text(), what="the access log line")
                # What logrotate does: move the files away, then send SIGHUP.
                log.rename(root / "node-a.log.1")
                access.rename(root / "node-a-access.log.1")
                node.proc.send_signal(signal.SIGHUP)
                h.wait_for(lambda: log.exists() and access.exists(), what="the logs created again")
                self.assertEqual(log.stat().st_mode & 0o777, 0o640)
                self.assertEqual(access.stat().st_mode & 0o777, 0o640)
                status, body = h.submit(node, h.make_csr_b64("after-rotation"))
                self.assertEqual(status, 200, body)
                h.wait_for(lambda: "/api/v1/certificate/request" in access.read_text(), what="a line in the new log")
                self.assertTrue(access.read_text().startswith("#Software: adcsc"), "directives head the new file")
                h.wait_for(lambda: any(l.get("event") == "logs_reopened" for l in node.log_lines()),
                           what="logs_reopened in the new event log")
                self.assertIn('"event":"started"', (root / "node-a.log.1").read_text())
                # More SIGHUPs, with nothing rotated: still serving.
                for _ in range(3):
                    node.proc.send_signal(signal.SIGHUP)
                status, body = h.submit(node, h.make_csr_b64("after-more-sighups"))
                self.assertEqual(status, 200, body)
                self.assertIsNone(node.proc.poll(), "SIGHUP never stops a node")
                self.assertEqual(node.stop(), 0)
            finally:
                node.stop()

    @unittest.skipUnless(shutil.which("logrotate"), "logrotate not installed (deploy/install-deps installs it)")
    def test_logrotate_with_the_shipped_config_rotates_and_the_node_goes_on(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            try:
                status, body = h.submit(node, h.make_csr_b64("before-logrotate"))
                self.assertEqual(status, 200, body)
                access = root / "node-a-access.log"
                h.wait_for(lambda: "/api/v1/certificate/request" in access.read_text(), what="the access log line")
                # deploy/logrotate/adcsc as shipped, but for this directory, without the service
                # user, and signalling this node instead of the systemd unit.
                shipped = (h.REPO / "deploy" / "logrotate" / "adcsc").read_text()
                self.assertIn("/var/log/adcsc/*.log {", shipped)
                config = shipped.replace("/var/log/adcsc/*.log", f"{root}/*.log")
                config = re.sub(r"\n\s*su adcsc adcsc", "", config)
                config = re.sub(r"systemctl kill [^\n]*", f"kill -HUP {node.proc.pid}", config)
                (root / "logrotate.conf").write_text(config)
                run = subprocess.run(["logrotate", "-f", "-s", str(root / "logrotate.state"), str(root / "logrotate.conf")],
                                     capture_output=True, text=True)
                self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
                rotated = sorted(p.name for p in root.glob("node-a*.log-*"))
                self.assertEqual(len(rotated), 2, rotated)
                h.wait_for(lambda: access.exists() and (root / "node-a.log").exists(), what="the logs created again")
                status, body = h.submit(node, h.make_csr_b64("after-logrotate"))
                self.assertEqual(status, 200, body)
                h.wait_for(lambda: "/api/v1/certificate/request" in access.read_text(), what="a line in the new log")
                self.assertTrue(access.read_text().startswith("#Software: adcsc"))
                self.assertIsNone(node.proc.poll())
            finally:
                node.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
