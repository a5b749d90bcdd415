"""Failover drills on the quickstart cluster, as an operator runs them: deploy/quickstart
brings up the ADCS emulator, three nodes, their agents and HAProxy (TLS termination with L7
retries) in a scratch directory; `adcsc drill` runs each scenario (kill, freeze, partition,
drain, ca-outage, ca-slow, rolling-restart) shortly against it, and each must meet its objectives (no lost
and no failed request, no duplicate CA request); `--down` stops everything. `--smoke` does the whole round by itself.
A second cluster runs its nodes under libfaketime (--clock-faults) for the gray faults: slow-disk, clock-jump,
link, and a short seeded soak (ADCSC_SOAK_S sets its length; tests/run --soak runs a long one)."""
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "deploy" / "quickstart.py"
WRAPPER = REPO / "deploy" / "quickstart"


def free_range():
    """A base port whose whole quickstart range (base .. base+42, the KDC's with --kerberos) is free."""
    for _ in range(50):
        # Below the ephemeral range (32768+), where other tests get their free ports.
        base = random.randrange(20000, 32000)
        ports = [base + d for d in (0, 1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33, 41, 42)]
        ok = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def drill(root, scenario, *extra):
    # A CA outage reaches the balancer through the node's CA probe (1 s), the agent's poll (1 s)
    # and HAProxy's agent-inter (1 s), or the HTTP check's fall 2 x inter 1 s: up to about 3 s,
    # so that drill holds its fault longer than the others.
    # A freeze is seen only after the HTTP check timed out twice (timeout check 2 s, fall 2:
    # 3.3-3.6 s measured), so it is held longer, with room for a loaded machine.
    hold_ms = {"ca-outage": "4500", "freeze": "6000"}.get(scenario, "2500")
    out = subprocess.run([str(h.ADCSC), "drill", "--config", str(root / "drill.toml"), "--scenario", scenario,
                          "--warmup-ms", "1500", "--hold-ms", hold_ms, "--tail-ms", "1500", "--json", *extra],
                         capture_output=True, text=True, timeout=240)
    return out


def pids_alive(root):
    alive = []
    for f in (root / "pids").glob("*.pid"):
        try:
            pid = int(f.read_text())
            os.kill(pid, 0)
            alive.append(f.stem)
        except (OSError, ValueError):
            pass
    return alive


class Quickstart:
    """A foreground `deploy/quickstart` in tmp/quickstart, as an operator runs it: start() waits
    for its banner; stop_for_sure() (the tests' finally) brings down whatever is left."""

    def __init__(self, tmp, port, *extra):
        self.tmp, self.port, self.extra = tmp, port, extra
        self.root = tmp / "quickstart"
        self.out = tmp / "quickstart.out"
        self.log = None
        self.proc = None

    def start(self, test):
        if self.log:
            self.log.close()
        self.log = open(self.out, "w")
        self.proc = subprocess.Popen([sys.executable, str(QUICKSTART), "--dir", str(self.root), "--port",
                                      str(self.port), "--bin-dir", str(h.BIN), *self.extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        h.wait_for(lambda: "Press Ctrl-C" in self.out.read_text() or self.proc.poll() is not None,
                   timeout=120, what="the quickstart cluster " + " ".join(self.extra))
        test.assertIsNone(self.proc.poll(), self.out.read_text())
        return self.proc

    def stop_for_sure(self):
        if self.proc is not None and self.proc.poll() is None:
            subprocess.run([sys.executable, str(QUICKSTART), "--dir", str(self.root), "--port", str(self.port),
                            "--down"], capture_output=True, timeout=120)
            self.proc.terminate()
            self.proc.wait(timeout=30)
        if self.log:
            self.log.close()


class QuickstartCluster(unittest.TestCase):
    def test_every_scenario_meets_its_objectives(self):
        with h.TempRoot() as tmp:
            port = free_range()
            cluster = Quickstart(tmp, port)
            root = cluster.root
            try:
                qs = cluster.start(self)
                text = (tmp / "quickstart.out").read_text()
                self.assertIn(f"adcsc is running: https://localhost:{port}", text)
                self.assertIn("smoke: request", text)

                # A drill that cannot run says why and exits 2, before any traffic.
                bad = drill(root, "kill", "--node", "node-z")
                self.assertEqual(bad.returncode, 2, bad.stdout + bad.stderr)
                self.assertIn('node "node-z" is not in', bad.stderr)
                # With HAProxy terminating TLS, Jamf Pro's pin is HAProxy's: reload says so.
                bad = drill(root, "reload")
                self.assertEqual(bad.returncode, 2, bad.stdout + bad.stderr)
                self.assertIn('lb.mode = "tcp"', bad.stderr)

                for scenario in ("kill", "freeze", "partition", "drain", "ca-outage", "ca-slow", "rolling-restart"):
                    out = drill(root, scenario, "--node", "node-c")
                    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                    report = json.loads(out.stdout)
                    total = report["phases"][-1]
                    print(f"\n{scenario} drill: {total['sent']} requests, {total['failed']} failed, "
                          f"{report['acknowledged']} acknowledged, {report['lost']} lost, "
                          f"{report['duplicate_ca_requests']} duplicates, LB stopped using node-c after "
                          f"{report['lb_stopped_using_node']['ms']} ms, back after {report['node_back']['ms']} ms, "
                          f"converged after {report['replication_converged']['ms']} ms", file=sys.stderr)
                    self.assertTrue(report["passed"])
                    self.assertEqual(report["lost"], 0)
                    self.assertEqual(total["failed"], 0)
                    self.assertGreater(report["acknowledged"], 10)
                    self.assertEqual(report["duplicate_ca_requests"], 0)
                    self.assertEqual(report["nodes_checked"], ["node-a", "node-b", "node-c"])
                    self.assertIsNotNone(report["replication_converged"]["ms"])
                    if scenario in ("kill", "freeze", "drain", "ca-outage"):
                        # HAProxy's own word: DOWN after inter 1 s x fall 2 (a CA outage first
                        # needs a failed probe), DRAIN from the agent; UP again after rise 2.
                        self.assertIsNotNone(report["lb_stopped_using_node"]["ms"], report["events"])
                        self.assertIsNotNone(report["node_back"]["ms"], report["events"])
                    elif scenario in ("partition", "ca-slow"):
                        # A partitioned node keeps serving (on_quorum_loss = serve), and a slow
                        # CA is slow for every node: the node stays in the rotation.
                        self.assertEqual(report["node_back"]["how"], "it never left the rotation")
                    else:
                        phases = [p["phase"] for p in report["phases"]]
                        self.assertEqual(phases[1:4], ["restart node-a", "restart node-b", "restart node-c"])

                # Without HAProxy's stats socket the drill times the load balancer by the answers
                # the node signed (X-Adcsc-Node): a drained node's last and first answers.
                plain = root / "drill-no-stats.toml"
                plain.write_text("\n".join(l for l in (root / "drill.toml").read_text().splitlines()
                                           if not l.startswith("haproxy_stats_socket")) + "\n")
                out = subprocess.run([str(h.ADCSC), "drill", "--config", str(plain), "--scenario", "drain",
                                      "--warmup-ms", "1500", "--hold-ms", "3000", "--tail-ms", "4000", "--json"],
                                     capture_output=True, text=True, timeout=240)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                report = json.loads(out.stdout)
                self.assertEqual(report["lb_stopped_using_node"]["how"], "its last answer")
                self.assertLess(report["lb_stopped_using_node"]["ms"], 3000)
                self.assertEqual(report["node_back"]["how"], "its first answer after the restore")
                self.assertFalse(any(e["what"].startswith("load balancer:") for e in report["events"]))

                # Ctrl-C stops everything it started.
                qs.send_signal(signal.SIGINT)
                self.assertEqual(qs.wait(timeout=60), 0)
                self.assertEqual(pids_alive(root), [])

                # Again on the same directory (the PKI and data are kept), then --down from
                # another terminal: everything stops, and the foreground quickstart notices.
                qs = cluster.start(self)
                down = subprocess.run([str(WRAPPER), "--dir", str(root), "--port", str(port), "--down"],
                                      capture_output=True, text=True, timeout=120,
                                      env=dict(os.environ, ADCSC_BIN_DIR=str(h.BIN)))
                self.assertEqual(down.returncode, 0, down.stdout + down.stderr)
                self.assertIn("stopped haproxy", down.stdout)
                self.assertEqual(qs.wait(timeout=30), 0)
                self.assertEqual(pids_alive(root), [])
            finally:
                cluster.stop_for_sure()

    def test_gray_faults_and_a_short_soak_meet_their_objectives(self):
        with h.TempRoot() as tmp:
            cluster = Quickstart(tmp, free_range(), "--clock-faults")
            root = cluster.root
            try:
                qs = cluster.start(self)
                self.assertIn("clock = [", (root / "drill.toml").read_text())

                for scenario, hold in (("slow-disk", "6000"), ("clock-jump", "8000"), ("link", "10000")):
                    out = subprocess.run([str(h.ADCSC), "drill", "--config", str(root / "drill.toml"), "--scenario",
                                          scenario, "--node", "node-c", "--warmup-ms", "1500", "--hold-ms", hold,
                                          "--tail-ms", "1500", "--json"], capture_output=True, text=True, timeout=240)
                    self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                    report = json.loads(out.stdout)
                    by_phase = {p["phase"]: p for p in report["phases"]}
                    total = by_phase["total"]
                    print(f"\n{scenario} drill: {total['sent']} requests, {total['failed']} failed, "
                          f"{report['acknowledged']} acknowledged, {report['lost']} lost, "
                          f"{report['duplicate_ca_requests']} duplicates, fault p99 "
                          f"{max(p['p99_ms'] for n, p in by_phase.items() if n.startswith('fault'))} ms, "
                          f"converged after {report['replication_converged']['ms']} ms", file=sys.stderr)
                    self.assertTrue(report["passed"], out.stdout)
                    self.assertEqual(report["lost"], 0)
                    self.assertEqual(total["failed"], 0)
                    self.assertEqual(report["duplicate_ca_requests"], 0)
                    self.assertIsNotNone(report["replication_converged"]["ms"])
                    events = [e["what"] for e in report["events"]]
                    if scenario == "clock-jump":
                        self.assertIn("fault +300s", by_phase)
                        self.assertIn("fault -300s", by_phase)
                        self.assertIn("set node-c's clock right", events)
                        self.assertEqual((root / "clock" / "node-c.faketime").read_text().strip(), "+0")
                    if scenario == "link":
                        for step in ("loss", "delay", "one-way", "flap"):
                            self.assertGreater(by_phase[f"fault {step}"]["sent"], 0, step)
                        self.assertIn("heal node-c's peer links", events)
                    if scenario == "slow-disk":
                        self.assertIn("heal node-c's disk", events)
                    # Every switch is back: the node reports no fault.
                    status = subprocess.run([str(h.ADCSC), "ctl", "status", "--config",
                                             str(root / "node-c" / "node.toml")], capture_output=True, text=True,
                                            timeout=60)
                    self.assertNotIn("fault", status.stdout.split("node-c (")[1].split("\n")[0], status.stdout)

                # The soak: faults drawn from the seed strike one at a time; the report has the
                # schedule's seed, every fault, and the timeline.
                soak_s = os.environ.get("ADCSC_SOAK_S", "40")
                svg = tmp / "soak.svg"
                out = subprocess.run([str(h.ADCSC), "drill", "--config", str(root / "drill.toml"), "--scenario", "soak",
                                      "--duration", soak_s, "--seed", "7", "--soak-hold-min-ms", "3000",
                                      "--soak-hold-max-ms", "5000", "--soak-gap-min-ms", "2000", "--soak-gap-max-ms",
                                      "4000", "--warmup-ms", "1500", "--tail-ms", "1500", "--json", "--plot", str(svg)],
                                     capture_output=True, text=True, timeout=int(soak_s) * 4 + 300)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                report = json.loads(out.stdout)
                total = report["phases"][-1]
                print(f"\nsoak ({soak_s} s, seed 7): {len(report['faults'])} faults "
                      f"({', '.join(f['scenario'] + ' ' + f['target'] for f in report['faults'])}), "
                      f"{total['sent']} requests, {total['failed']} failed, {report['lost']} lost, "
                      f"{report['duplicate_ca_requests']} duplicates", file=sys.stderr)
                self.assertTrue(report["passed"], out.stdout)
                self.assertEqual(report["seed"], 7)
                self.assertGreaterEqual(len(report["faults"]), 2, report["events"])
                self.assertEqual(total["failed"], 0)
                self.assertEqual(report["lost"], 0)
                self.assertGreater(len(report["timeline"]), 5)
                self.assertEqual(sum(i["sent"] for i in report["timeline"]), total["sent"])
                if shutil.which("gnuplot"):
                    self.assertIn("<svg", svg.read_text(), out.stderr)
                qs.send_signal(signal.SIGINT)
                self.assertEqual(qs.wait(timeout=60), 0)
                self.assertEqual(pids_alive(root), [])
            finally:
                cluster.stop_for_sure()

    def test_reload_rotates_jamfs_pin_and_the_api_identity_under_load(self):
        """The reload drill (HAProxy passing TLS through, so the nodes meet Jamf Pro's certificate):
        every node's API identity and Jamf Pro's client identity rotate through `adcsc ctl reload`
        and back, under traffic, with no failed request and no restart."""
        with h.TempRoot() as tmp:
            cluster = Quickstart(tmp, free_range(), "--lb-mode", "tcp")
            root = cluster.root
            try:
                cluster.start(self)
                pids = {n: (root / "pids" / f"{n}.pid").read_text().strip() for n in ("node-a", "node-b", "node-c")}
                configs = {n: (root / n / "node.toml").read_text() for n in pids}
                out = subprocess.run([str(h.ADCSC), "drill", "--config", str(root / "drill.toml"), "--scenario",
                                      "reload", "--warmup-ms", "1500", "--hold-ms", "6000", "--tail-ms", "1500",
                                      "--rate", "20", "--json"], capture_output=True, text=True, timeout=240)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                report = json.loads(out.stdout)
                by_phase = {p["phase"]: p for p in report["phases"]}
                total = by_phase["total"]
                print(f"\nreload drill: {total['sent']} requests ({by_phase['overlap']['sent']} in the overlap, "
                      f"{by_phase['new pin only']['sent']} on the new pin only, {by_phase['rotate back']['sent']} "
                      f"rotating back), {total['failed']} failed, {report['lost']} lost, "
                      f"{report['duplicate_ca_requests']} duplicates", file=sys.stderr)
                self.assertTrue(report["passed"], out.stdout)
                self.assertEqual(total["failed"], 0)
                self.assertEqual(report["lost"], 0)
                self.assertGreater(by_phase["new pin only"]["sent"], 0)
                events = [e["what"] for e in report["events"]]
                for n in pids:
                    self.assertIn(f"{n} refuses Jamf Pro's old client identity", events)
                    self.assertIn(f"{n} accepts Jamf Pro's new client identity", events)
                self.assertFalse([e for e in events if "FAILED" in e], events)
                # No restart, and every node is back on its configuration as it was.
                for n, pid in pids.items():
                    self.assertEqual((root / "pids" / f"{n}.pid").read_text().strip(), pid)
                    self.assertEqual((root / n / "node.toml").read_text(), configs[n])
                    reloads = [json.loads(l) for l in (root / n / "node.log").read_text().splitlines()
                               if '"config_reloaded"' in l]
                    self.assertEqual([r["outcome"] for r in reloads], ["reloaded"] * 4, n)
            finally:
                cluster.stop_for_sure()

    def test_smoke_runs_a_kill_drill_and_stops_everything(self):
        with h.TempRoot() as tmp:
            root = tmp / "quickstart"
            port = free_range()
            out = subprocess.run([sys.executable, str(QUICKSTART), "--dir", str(root), "--port", str(port), "--bin-dir",
                                  str(h.BIN), "--smoke"], capture_output=True, text=True, timeout=280)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("scenario kill on node-c", out.stdout)
            self.assertIn("result: PASSED", out.stdout)
            self.assertEqual(pids_alive(root), [])
            # The PKI keeps its modes.
            self.assertEqual((root / "pki" / "jamf-identity.pem").stat().st_mode & 0o777, 0o600)
            self.assertEqual(root.stat().st_mode & 0o777, 0o700)


if __name__ == "__main__":
    unittest.main(verbosity=2)
