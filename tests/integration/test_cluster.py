"""A three-node cluster of real processes on loopback, replicating its request store over
gRPC with mutual TLS, in front of one ADCS emulator: a request submitted on one node is
retrievable from the others at once, from their own stores (the CA is stopped before the
retrieves, so nothing else could answer)."""
import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

NODES = ["node-a", "node-b", "node-c"]


class ClusterReplication(unittest.TestCase):
    def test_submit_on_one_node_retrieve_on_the_others_without_the_ca(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            # Quorum 3: when node-a answers, every node holds the record durably.
            sections = h.cluster_sections(root, NODES, write_quorum=3)
            nodes = {n: h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator),
                               extra=sections[n]).start() for n in NODES}
            try:
                ids = []
                for i in range(5):
                    status, body = h.submit(nodes["node-a"], h.make_csr_b64(f"cluster-{i}"), dc=h.ICPR_DC)
                    self.assertEqual(status, 200, body)
                    self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
                    ids.append(body["request-id"])
                # Every node's view, asked from node-c with its own identity.
                out = h.run([h.ADCSC, "ctl", "status", "--config", nodes["node-c"].config], check=False)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                for n in NODES:
                    self.assertIn(f"{n} (127.0.0.1:", out.stdout)
                self.assertIn("node-a=5", out.stdout)  # node-a's five writes, seen in the vectors
                out = h.run([h.ADCSC, "ctl", "status", "--config", nodes["node-a"].config, "--json"], check=False)
                views = json.loads(out.stdout)
                self.assertEqual(sorted(v["from"]["nodeId"] for v in views), NODES)
                self.assertEqual(int(views[0]["quorumWrites"]), 5)
                emulator.stop()
                for n in ["node-b", "node-c"]:
                    for rid in ids:
                        status, body = h.retrieve(nodes[n], rid, dc=h.ICPR_DC)
                        self.assertEqual(status, 200, (n, rid, body))
                        self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
                        self.assertTrue(body["x509"].startswith("MII"))
                for n in ["node-b", "node-c"]:
                    self.assertEqual(nodes[n].stop(), 0)  # flushes the log
                    sources = [l.get("source") for l in nodes[n].log_lines() if l.get("endpoint") == "retrieve"]
                    self.assertEqual(sources, ["store"] * len(ids), n)
            finally:
                for node in nodes.values():
                    node.stop()
                emulator.stop()

    def test_two_node_cluster_serves_with_one_node_down_and_catches_up(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            pair = ["node-a", "node-b"]
            sections = h.cluster_sections(root, pair)  # quorum: a majority of 2 = 2; policy serve
            nodes = {n: h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator),
                               extra=sections[n]).start() for n in pair}
            try:
                nodes["node-b"].stop()
                out = h.run([h.ADCSC, "ctl", "status", "--config", nodes["node-a"].config], check=False)
                self.assertEqual(out.returncode, 1, out.stdout)  # node-b does not answer
                self.assertIn("node-b (127.0.0.1:", out.stdout)
                self.assertIn("UNREACHABLE", out.stdout)
                # A Raft store would stop here; this one answers (under-replicated, by policy).
                status, body = h.submit(nodes["node-a"], h.make_csr_b64("while-b-is-down"), dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                rid = body["request-id"]
                nodes["node-b"].start()
                emulator.stop()
                # node-b catches up by itself (anti-entropy), then answers from its own store.
                def caught_up():
                    st, b = h.retrieve(nodes["node-b"], rid, dc=h.ICPR_DC)
                    return st == 200 and b["request-status"]["status"] == "CR_DISP_ISSUED"
                h.wait_for(caught_up, timeout=20, what="node-b to catch up")
            finally:
                for node in nodes.values():
                    node.stop()
                emulator.stop()

    def test_kill9_during_submits_then_restart_catches_up(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            sections = h.cluster_sections(root, NODES)  # majority quorum (2 of 3), policy serve
            nodes = {n: h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator),
                               extra=sections[n]).start() for n in NODES}
            try:
                acked = []
                for i in range(30):
                    target = nodes[NODES[i % 3]] if i < 10 else nodes[NODES[i % 2]]  # c is gone after 10
                    if i == 10:
                        nodes["node-c"].kill9()
                    status, body = h.submit(target, h.make_csr_b64(f"kill-{i}"), dc=h.ICPR_DC)
                    self.assertEqual(status, 200, body)
                    acked.append(body["request-id"])
                nodes["node-c"].start()
                emulator.stop()  # from here on only the replicated stores can answer

                def everywhere():
                    for n in NODES:
                        for rid in acked:
                            st, b = h.retrieve(nodes[n], rid, dc=h.ICPR_DC)
                            if st != 200 or b["request-status"]["status"] != "CR_DISP_ISSUED":
                                return False
                    return True
                h.wait_for(everywhere, timeout=30, what="every acknowledged ID on all three nodes")
            finally:
                for node in nodes.values():
                    node.stop()
                emulator.stop()

    def test_partitioned_node_keeps_serving_and_the_cluster_converges_after_healing(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            proxies = []

            def through_proxy(node, peer, port):
                # Every link from or to node-c goes through a proxy the test can cut.
                if "node-c" not in (node, peer):
                    return port
                proxy = h.TcpProxy(port)
                proxies.append(proxy)
                return proxy.port
            sections = h.cluster_sections(root, NODES, peer_address=through_proxy)
            nodes = {n: h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator),
                               extra=sections[n]).start() for n in NODES}
            try:
                for p in proxies:
                    p.set_cut(True)
                acked = []
                for i in range(10):  # traffic on both sides of the partition
                    for n in ("node-a", "node-c"):
                        status, body = h.submit(nodes[n], h.make_csr_b64(f"part-{n}-{i}"), dc=h.ICPR_DC)
                        self.assertEqual(status, 200, body)
                        acked.append(body["request-id"])
                # The partition was real: node-c reaches nobody, and its writes had no quorum.
                out = h.run([h.ADCSC, "ctl", "status", "--config", nodes["node-c"].config, "--json"], check=False)
                self.assertEqual(out.returncode, 1, out.stdout)
                views = {v["from"]["nodeId"]: v for v in json.loads(out.stdout)}
                self.assertEqual(int(views["node-c"].get("underReplicatedWrites", 0)), 10, views["node-c"])
                self.assertIn("error", views["node-a"])
                for p in proxies:
                    p.set_cut(False)
                emulator.stop()

                def converged():
                    for n in NODES:
                        for rid in acked:
                            st, b = h.retrieve(nodes[n], rid, dc=h.ICPR_DC)
                            if st != 200 or b["request-status"]["status"] != "CR_DISP_ISSUED":
                                return False
                    return True
                h.wait_for(converged, timeout=30, what="the cluster to converge after the partition heals")
            finally:
                for node in nodes.values():
                    node.stop()
                for p in proxies:
                    p.close()
                emulator.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
