"""Log files under logrotate: SIGHUP makes a node reopen its event and access logs (creating
them 0640 when logrotate moved them away) and never stops it."""
import signal
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
