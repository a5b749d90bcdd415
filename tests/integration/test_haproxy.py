"""A real HAProxy 2.6 (Debian's) in front of three clustered nodes, with the shipped TCP
pass-through configuration (deploy/haproxy/adcsc-tcp.cfg) and an adcsc-lb-agent per node:
requests are spread round-robin; a drained node gets no new requests within an agent
interval; a node killed with kill -9 is marked down within inter x fall; resume brings the
drained node back. Prints the detection times it measured."""
import csv
import io
import os
import socket
import subprocess
import sys
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_ops import ops_section, pin_of, set_mode, LB_AGENT  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TCP_CFG = REPO / "deploy" / "haproxy" / "adcsc-tcp.cfg"
NODES = ["node-a", "node-b", "node-c"]


class HAProxy:
    def __init__(self, root, config, env):
        self.stats = root / "haproxy.sock"
        extra = root / "haproxy-stats.cfg"  # the test's own window into HAProxy: its stats socket
        extra.write_text(f"global\n    stats socket {self.stats} mode 600 level admin\n")
        self.log = open(root / "haproxy.log", "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(config), "-f", str(extra)],
                                     env=dict(os.environ, **env), stdout=self.log, stderr=self.log)
        h.wait_for(lambda: self.stats.exists(), timeout=20, what="haproxy's stats socket")

    def status(self):
        """{server: status} of the backend, as HAProxy sees it (UP, DOWN, DRAIN, MAINT, ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.stats))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "adcsc_nodes" and r["svname"] != "BACKEND"}

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


class TcpPassThrough(unittest.TestCase):
    def test_round_robin_drain_kill_and_resume(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            admin_cert, admin_key = pki.issue_client(root, "ops-admin")
            emulator = h.Emulator(root).start()
            sections = h.cluster_sections(root, NODES)
            ops_ports = {n: h.free_port() for n in NODES}
            agent_ports = {n: h.free_port() for n in NODES}
            nodes, agents, proxy = {}, {}, None
            try:
                for n in NODES:
                    nodes[n] = h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator),
                                      extra=sections[n] + ops_section(ops_ports[n], admin_ca=pki.server_ca,
                                                                      admin_pins=[pin_of(admin_cert)])).start()
                    agents[n] = subprocess.Popen(
                        [str(LB_AGENT), "--node-url", f"https://localhost:{ops_ports[n]}", "--ca-file",
                         str(pki.server_ca), "--listen", f"127.0.0.1:{agent_ports[n]}", "--interval-ms", "200",
                         "--stale-ms", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                lb_port = h.free_port()
                env = {"ADCSC_BIND": f"127.0.0.1:{lb_port}", "ADCSC_OPS_CA": str(pki.server_ca),
                       "ADCSC_OPS_SNI": "localhost"}
                for i, n in enumerate(NODES, 1):
                    env[f"ADCSC_NODE{i}"] = f"127.0.0.1:{nodes[n].port}"
                    env[f"ADCSC_OPS{i}"] = str(ops_ports[n])
                    env[f"ADCSC_AGENT{i}"] = str(agent_ports[n])
                proxy = HAProxy(root, TCP_CFG, env)
                servers = {"node1": "node-a", "node2": "node-b", "node3": "node-c"}
                h.wait_for(lambda: set(proxy.status().values()) == {"UP"}, timeout=30, what="all three nodes UP")

                lb = h.Node.__new__(h.Node)  # the load balancer, addressed like a node by the helpers
                lb.port, lb.pki = lb_port, pki

                def traffic(count, tag):
                    ids = []
                    for i in range(count):
                        st, body = h.submit(lb, h.make_csr_b64(f"{tag}-{i}"), dc=h.ICPR_DC)
                        self.assertEqual(st, 200, body)
                        ids.append(body["request-id"])
                    return ids

                def served_by():
                    counts = {}
                    for n in NODES:
                        counts[n] = sum(1 for l in nodes[n].log_lines()
                                        if l.get("event") == "api" and l.get("endpoint") == "request")
                    return counts

                # Round-robin: nine submits, three per node (counted from the nodes' JSON logs,
                # which are written in the background: hence the waits).
                traffic(9, "rr")
                h.wait_for(lambda: served_by() == {n: 3 for n in NODES}, timeout=10, what="3 submits per node")

                # Drain node-b: out of rotation within an agent interval, its answers unchanged.
                out = set_mode("drain", ops_ports["node-b"], admin_cert, admin_key, pki)
                self.assertEqual(out.returncode, 0, out.stderr)
                started = time.monotonic()
                h.wait_for(lambda: proxy.status()["node2"].startswith("DRAIN"), timeout=10, what="node2 drained")
                drain_s = time.monotonic() - started
                before = served_by()
                traffic(6, "drain")
                h.wait_for(lambda: served_by()["node-a"] + served_by()["node-c"] ==
                           before["node-a"] + before["node-c"] + 6, timeout=10, what="the six on node-a and node-c")
                self.assertEqual(served_by()["node-b"], before["node-b"], "a drained node gets no new requests")

                # kill -9 node-c: marked down within inter x fall (2 s) plus a check's time.
                nodes["node-c"].kill9()
                started = time.monotonic()
                h.wait_for(lambda: proxy.status()["node3"].startswith("DOWN"), timeout=10, what="node3 DOWN")
                down_s = time.monotonic() - started
                ids = traffic(4, "after-kill")  # everything goes to node-a now, and succeeds
                self.assertEqual(len(ids), 4)

                # Resume node-b: back in rotation.
                out = set_mode("resume", ops_ports["node-b"], admin_cert, admin_key, pki)
                self.assertEqual(out.returncode, 0, out.stderr)
                started = time.monotonic()
                h.wait_for(lambda: proxy.status()["node2"] == "UP", timeout=10, what="node2 UP again")
                resume_s = time.monotonic() - started
                before = served_by()
                traffic(4, "resumed")
                h.wait_for(lambda: served_by()["node-b"] > before["node-b"], timeout=10,
                           what="a resumed node to get requests again")
                print(f"\nhaproxy (tcp pass-through): drain seen in {drain_s:.2f} s, kill -9 marked down in "
                      f"{down_s:.2f} s (inter 1 s x fall 2), resume back in {resume_s:.2f} s", file=sys.stderr)
                self.assertLess(down_s, 5)
            finally:
                if proxy:
                    proxy.stop()
                for a in agents.values():
                    a.terminate()
                    a.wait(timeout=10)
                for n in nodes.values():
                    n.stop()
                emulator.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
