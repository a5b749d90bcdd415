"""CA failover in a cluster of real node processes (docs/api.md, "Errors"; docs/reliability.md):
a node cut off from its CA (the ca-outage fault switch, `adcsc ctl fault ca-cut`) hands each
submit and retrieve to a peer that reaches the CA, so the client never sees an error and the
CA gets exactly one request per CSR; with every node cut off, the client gets what the
original connector answered: HTTP 200, INTERNAL_ERROR and its COMException message."""
import collections
import sys
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_cluster import Cluster  # noqa: E402

NODES = ["node-a", "node-b", "node-c"]
UNAVAILABLE = "The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)"


def ca_requests(emulator):
    """CN -> how many requests the CA holds for it."""
    counts = collections.Counter()
    for row in emulator.ctl("list")["requests"]:
        subject = row["subject"]
        counts[subject.split("CN=", 1)[1].split(",", 1)[0] if "CN=" in subject else subject] += 1
    return counts


def fault(node, action):
    out = h.run([h.ADCSC, "ctl", "fault", "--config", node.config, action], check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


class CaFailover(unittest.TestCase):
    def test_a_node_without_its_ca_serves_through_a_peer(self):
        with h.TempRoot() as root, Cluster(root, NODES, allow_fault_injection=True) as c:
            b = c.nodes["node-b"]
            # A request taken under submission before the cut, to be retrieved after it.
            st, body = h.submit(b, h.make_csr_b64("fo-pending"), template="Pending", dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION")
            pending_id = body["request-id"]

            self.assertIn("cut off from its CA", fault(b, "ca-cut"))
            ids = {}
            for i in range(5):
                cn = f"fo-{i}"
                st, body = h.submit(b, h.make_csr_b64(cn), dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
                ids[cn] = body["request-id"]
            # A Jamf retry of the same CSR on the same node: the same request, not a second.
            csr = h.make_csr_b64("fo-retried")
            answers = [h.submit(b, csr, dc=h.ICPR_DC) for _ in range(2)]
            self.assertEqual([st for st, _ in answers], [200, 200], answers)
            self.assertEqual(answers[0][1]["request-id"], answers[1][1]["request-id"])
            # The same CSR at once on the node without its CA and on one with it: one request.
            race_csr = h.make_csr_b64("fo-race")
            results = []

            def send(node):
                results.append(h.submit(node, race_csr, dc=h.ICPR_DC))

            threads = [threading.Thread(target=send, args=(c.nodes[n],)) for n in ("node-b", "node-b", "node-c")]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual([st for st, _ in results], [200] * 3, results)
            self.assertEqual(len({body["request-id"] for _, body in results}), 1, results)

            # Retrieves on the node without its CA: the settled ones from its store, the one
            # still pending (now approved) through a peer that asks the CA.
            c.emulator.ctl("approve", "--id", str(pending_id))
            st, body = h.retrieve(b, pending_id, dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
            self.assertTrue(body["x509"].startswith("MII"))
            for rid in ids.values():
                st, body = h.retrieve(b, rid, dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")

            # Exactly one CA request per CSR, and none of them from node-b.
            counts = ca_requests(c.emulator)
            for cn in [*ids, "fo-retried", "fo-race", "fo-pending"]:
                self.assertEqual(counts[cn], 1, (cn, counts))
            fault(b, "ca-heal")
            for node in c.nodes.values():
                self.assertEqual(node.stop(), 0)
            lines = b.log_lines()
            forwarded = [l for l in lines if l.get("endpoint") == "request" and l.get("forwarded_to")]
            self.assertGreaterEqual(len(forwarded), 5, lines)
            self.assertTrue(all(l["http_status"] == 200 for l in forwarded), forwarded)
            retrieved = [l for l in lines if l.get("endpoint") == "retrieve" and l.get("forwarded_to")]
            self.assertTrue(retrieved, lines)
            took = [l for n in ("node-a", "node-c") for l in c.nodes[n].log_lines()
                    if l.get("endpoint") == "request" and l.get("forwarded_by") == "node-b"]
            self.assertGreaterEqual(len(took), 5)
            self.assertTrue(all("forwarded_to" not in l for l in took), "one hop: a peer never forwards again")

    def test_with_no_node_reaching_the_ca_the_answer_is_the_originals(self):
        with h.TempRoot() as root, Cluster(root, NODES, allow_fault_injection=True) as c:
            st, body = h.submit(c.nodes["node-a"], h.make_csr_b64("all-before"), template="Pending", dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            pending_id = body["request-id"]
            for node in c.nodes.values():
                fault(node, "ca-cut")
            st, body = h.submit(c.nodes["node-b"], h.make_csr_b64("all-cut"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body, {"request-status": {
                "status": "INTERNAL_ERROR",
                "message": "System.Runtime.InteropServices.COMException - CCertRequest::Submit: " + UNAVAILABLE},
                "request-id": 0})
            st, body = h.retrieve(c.nodes["node-c"], pending_id, dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body, {"request-status": {
                "status": "INTERNAL_ERROR",
                "message": "System.Runtime.InteropServices.COMException - CCertRequest::RetrievePending: " +
                           UNAVAILABLE},
                "x509": None})
            self.assertEqual(ca_requests(c.emulator)["all-cut"], 0)
            # Healed, the client's retry goes through, once.
            fault(c.nodes["node-b"], "ca-heal")
            st, body = h.submit(c.nodes["node-b"], h.make_csr_b64("all-cut-2"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")


if __name__ == "__main__":
    unittest.main(verbosity=2)
