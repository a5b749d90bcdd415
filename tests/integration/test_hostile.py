"""A hostile network in front of the API port, tried as an attacker would, against real node
processes: more unmapped connections than the cap while a Jamf-like client runs (every pair must
succeed), a flood of refused requests with 8 KiB User-Agents (log growth per 10,000 refusals,
bounded and printed), and a log volume that fills up (the API keeps answering)."""
import json
import os
import signal
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
import hostile  # noqa: E402


def issued(body):
    """The request ID of an answer that says CR_DISP_ISSUED, else None."""
    if not isinstance(body, dict) or body.get("request-status", {}).get("status") != "CR_DISP_ISSUED":
        return None
    return body.get("request-id")


def jamf_pairs(node, count, deadline_s=120):
    """`count` request+retrieve pairs on new connections, as Jamf Pro makes them; returns the
    failures as (step, status, body)."""
    failures = []
    end = time.monotonic() + deadline_s
    for i in range(count):
        if time.monotonic() > end:
            failures.append(("deadline", 0, f"only {i} pairs in {deadline_s} s"))
            break
        status, body = h.submit(node, h.make_csr_b64(f"device-{i}"))
        if status != 200 or issued(body) is None:
            failures.append(("request", status, body))
            continue
        status, body = h.retrieve(node, body["request-id"])
        if status != 200 or body.get("request-status", {}).get("status") != "CR_DISP_ISSUED" or not body.get("x509"):
            failures.append(("retrieve", status, body))
    return failures


def last_access_line(root, node_id="node-a"):
    lines = (root / f"{node_id}-access.log").read_text().splitlines()
    return lines[-1] if lines else ""


def log_bytes(root, node_id="node-a"):
    return sum((root / name).stat().st_size for name in (f"{node_id}.log", f"{node_id}-access.log"))


class LockOut(unittest.TestCase):
    def test_more_unmapped_connections_than_the_cap_never_lock_jamf_out(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            cert, key = hostile.make_stranger(root)
            # A small node so that the attack is many times its cap: 64 connections, 8 of them
            # kept for mapped clients, 8 per source.
            node = h.Node(root, pki, header_timeout_ms=5000,
                          api_extra="max_connections = 64\nreserved_connections = 8\n"
                                    "max_connections_per_source = 8").start()
            attack = hostile.HostileLoad(node.port, cert, key, holders=240, per_source=8, flood=3000,
                                         flood_sources=4, seconds=180).start()
            try:
                h.wait_for(lambda: attack.opened.value >= 240, timeout=60, what="the holders to open their connections")
                failures = jamf_pairs(node, 50)
                self.assertEqual(failures, [], "every Jamf pair succeeds under the attack")
                self.assertIsNone(node.proc.poll())
                refused = [l for l in node.log_lines() if l.get("event") in ("connection_refused", "client_refused")]
                print(f"\nlock-out: holders opened {attack.opened.value} connections, flood sent "
                      f"{attack.attempts.value} (answered 403: {attack.answered.value}, closed unanswered: "
                      f"{attack.cut_off.value}); {len(refused)} refusal lines in the event log", file=sys.stderr)
                self.assertGreater(attack.opened.value, 64, "the attack held more connections than the cap")
            finally:
                attack.stop()
                node.stop()


class Flood(unittest.TestCase):
    def test_log_growth_per_10000_refused_requests_is_bounded(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            cert, key = hostile.make_stranger(root)
            node = h.Node(root, pki).start()
            try:
                status, body = h.submit(node, h.make_csr_b64("before-the-flood"))
                self.assertEqual(status, 200, body)
                h.wait_for(lambda: "/api/v1/certificate/request" in (root / "node-a-access.log").read_text(),
                           what="the access log line")
                before = log_bytes(root)
                attack = hostile.HostileLoad(node.port, cert, key, flood=10000, flood_sources=8, flood_procs=2,
                                             seconds=240).start()
                try:
                    self.assertTrue(attack.flood_done(240), "the flood finished its 10,000 requests")
                finally:
                    attack.stop()
                self.assertEqual(attack.attempts.value, 10000)
                status, body = h.submit(node, h.make_csr_b64("after-the-flood"))
                self.assertEqual(status, 200, body)
                h.wait_for(lambda: last_access_line(root).split(" ")[4:5] == ["/api/v1/certificate/request"]
                           and " 200 " in last_access_line(root), what="the last request's access-log line")
                grown = log_bytes(root) - before
                lines = node.log_lines()
                refusals = [l for l in lines if l.get("event") in ("client_refused", "connection_refused")]
                suppressed = sum(l.get("suppressed", 0) for l in refusals)
                longest = max(len(line) for line in (root / "node-a-access.log").read_text().splitlines())
                print(f"\nflood: 10,000 refused requests with an 8 KiB User-Agent grew node.log + access.log by "
                      f"{grown / 1e6:.2f} MB ({grown / 10000:.0f} bytes per refused request); "
                      f"answered 403: {attack.answered.value}, closed at accept: {attack.cut_off.value}; "
                      f"{len(refusals)} refusal lines in the event log (suppressed count reported: {suppressed}); "
                      f"longest access-log line {longest} bytes", file=sys.stderr)
                # Before admission and throttling: 43 MB per 5,000. The bound: what the refusal
                # budget lets through (answered 403s, an access-log line each, fields cut to 512
                # bytes) plus a line per source per interval.
                self.assertLess(grown, 3_000_000)
                self.assertLess(longest, 3000)
                self.assertGreater(attack.cut_off.value, attack.answered.value,
                                   "most of the flood was closed at accept by the refusal budget")
                for line in refusals:
                    self.assertLess(len(json.dumps(line)), 3000)
                self.assertIsNone(node.proc.poll())
            finally:
                node.stop()


@unittest.skipUnless(os.geteuid() == 0, "mounting a small tmpfs needs root")
class FullLogVolume(unittest.TestCase):
    def test_a_full_log_volume_never_stops_the_api(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            logs = root / "logs"
            logs.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(logs)], check=True)
            try:
                node = h.Node(root, pki)
                text = node.config.read_text()
                text = text.replace(f'file = "{root}/node-a.log"', f'file = "{logs}/node-a.log"')
                text = text.replace(f'access_log = "{root}/node-a-access.log"',
                                    f'access_log = "{logs}/node-a-access.log"')
                node.config.write_text(text)
                node.start()
                try:
                    # Fill the volume to the last byte.
                    subprocess.run(["dd", "if=/dev/zero", f"of={logs}/filler", "bs=4k"], capture_output=True)
                    self.assertLess(os.statvfs(logs).f_bavail, 1)
                    failures = jamf_pairs(node, 30)
                    self.assertEqual(failures, [], "the API answers with its log volume full")
                    node.proc.send_signal(signal.SIGHUP)
                    failures = jamf_pairs(node, 5)
                    self.assertEqual(failures, [], "and after a SIGHUP on the full volume")
                    # Room again: the logs go on.
                    os.unlink(logs / "filler")
                    status, body = h.submit(node, h.make_csr_b64("after-room"))
                    self.assertEqual(status, 200, body)
                    h.wait_for(lambda: "after-room" in (logs / "node-a.log").read_text()
                               or "/api/v1/certificate/request" in (logs / "node-a-access.log").read_text()[-4096:],
                               what="log lines after room was made")
                    self.assertIsNone(node.proc.poll())
                finally:
                    node.stop()
            finally:
                subprocess.run(["umount", "-l", str(logs)], check=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
