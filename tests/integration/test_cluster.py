"""A three-node cluster of real processes on loopback, replicating its request store over
gRPC with mutual TLS, in front of one ADCS emulator: a request submitted on one node is
retrievable from the others at once, from their own stores (the CA is stopped before the
retrieves, so nothing else could answer). And a fresh node joining a running cluster through
the bulk path (node/cluster/bulk_join.h), whole or after being killed mid-join."""
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

NODES = ["node-a", "node-b", "node-c"]


class Cluster:
    """PKI, one ADCS emulator and real nodes with [cluster] sections; everything stops on exit."""

    def __init__(self, root, node_ids=NODES, accounts=None, start=None, **cluster_options):
        """accounts: node ID -> the CA account it runs as (default: one shared account).
        start: the nodes to start at once (default all); start(node_id) starts another later."""
        self.root, self.node_ids, self.options = root, node_ids, cluster_options
        self.accounts = accounts or {}
        self.start_ids = node_ids if start is None else start

    def __enter__(self):
        self.pki = h.Pki(self.root)
        self.emulator = h.Emulator(self.root).start()
        sections = h.cluster_sections(self.root, self.node_ids, **self.options)
        self.nodes = {}
        for n in self.node_ids:
            account = self.accounts.get(n, "EXAMPLE\\svc-adcsc")
            self.nodes[n] = h.Node(self.root, self.pki, node_id=n,
                                   ca_section=h.icpr_ca_section(self.emulator, account=account),
                                   extra=sections[n])
            if n in self.start_ids:
                self.nodes[n].start()
        return self

    def __exit__(self, *exc):
        for node in self.nodes.values():
            node.stop()
        self.emulator.stop()

    def views(self, via="node-a"):
        """Every node's view (`adcsc ctl status --json`, asked on `via`), by node ID."""
        return h.cluster_views(self.nodes[via])

    def everywhere(self, ids):
        """True when every node answers every ID as issued (from its store, if the CA is down)."""
        return h.issued_everywhere([self.nodes[n] for n in self.node_ids], ids, dc=h.ICPR_DC)


ISSUED = 3  # RECORD_STATUS_ISSUED (proto/adcsc/store/v1/record.proto)


def preload(cluster, node_ids, count, origin="node-a", first_id=1_000_000):
    """Gives a running cluster `count` issued records of `origin`'s without `count` trips through
    the CA: the nodes stop, the records go into their stores as the replicated state would leave
    them (`origin` holds them as its own mutations, logged; the others hold them with the vector
    saying so, their log compacted), and the nodes start again. Returns the IDs."""
    for n in node_ids:
        cluster.nodes[n].stop()
    ca_config = h.ICPR_DC + "\\" + h.CA  # CaConfigKey(dc, ca)
    now_ms = int(time.time() * 1000)
    ids = list(range(first_id, first_id + count))
    rows = []
    for i, rid in enumerate(ids):
        cert = hashlib.sha256(rid.to_bytes(8, "big")).digest() * 47  # 1,504 bytes, a certificate's size
        csr = hashlib.sha256(b"csr" + rid.to_bytes(8, "big")).digest()
        rows.append((ca_config, rid, ISSUED, 3, "Issued", cert, csr, "JamfDevice", "EXAMPLE\\svc-adcsc", origin,
                     now_ms, now_ms, (now_ms << 16) + i, 0))
    for n in node_ids:
        db = sqlite3.connect(cluster.nodes[n].data_dir / "store.db")
        with db:
            db.executemany("INSERT INTO requests (ca_config, request_id, status, disposition, message, "
                           "certificate_der, csr_sha256, template_name, requester, node_id, created_ms, "
                           "updated_ms, hlc, hresult) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            held = db.execute("SELECT sequence FROM version_vector WHERE origin = ?", (origin,)).fetchone()
            last = (held[0] if held else 0) + count
            if n == origin:
                db.executemany("INSERT INTO mutations (origin, sequence, hlc, record, ca_config, request_id) "
                               "VALUES (?, ?, ?, x'', ?, ?)",
                               [(origin, last - count + 1 + i, r[12], ca_config, r[1]) for i, r in enumerate(rows)])
            db.execute("INSERT INTO version_vector (origin, sequence) VALUES (?, ?) "
                       "ON CONFLICT (origin) DO UPDATE SET sequence = excluded.sequence", (origin, last))
        db.close()
    for n in node_ids:
        cluster.nodes[n].start()
    return ids


def store_rows(node):
    """Every record in `node`'s store as (key, status, hlc, certificate digest), read-only."""
    db = sqlite3.connect(f"file:{node.data_dir / 'store.db'}?mode=ro", uri=True)
    try:
        return sorted((r[0], r[1], r[2], r[3], hashlib.sha256(r[4]).hexdigest()) for r in db.execute(
            "SELECT ca_config, request_id, status, hlc, certificate_der FROM requests"))
    finally:
        db.close()


def join_lines(node):
    return [l for l in node.log_lines() if l.get("event") == "store_join" and l.get("phase") != "progress"]


class ClusterReplication(unittest.TestCase):
    def test_submit_on_one_node_retrieve_on_the_others_without_the_ca(self):
        # Quorum 3: when node-a answers, every node holds the record durably.
        with h.TempRoot() as root, Cluster(root, write_quorum=3) as c:
            ids = []
            for i in range(5):
                status, body = h.submit(c.nodes["node-a"], h.make_csr_b64(f"cluster-{i}"), dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
                ids.append(body["request-id"])
            # Every node's view, asked from node-c with its own identity.
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-c"].config], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            for n in NODES:
                self.assertIn(f"{n} (127.0.0.1:", out.stdout)
            self.assertIn("node-a=5", out.stdout)  # node-a's five writes, seen in the vectors
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-a"].config, "--json"], check=False)
            views = json.loads(out.stdout)
            self.assertEqual(sorted(v["from"]["nodeId"] for v in views), NODES)
            self.assertEqual(int(views[0]["quorumWrites"]), 5)
            c.emulator.stop()
            for n in ["node-b", "node-c"]:
                for rid in ids:
                    status, body = h.retrieve(c.nodes[n], rid, dc=h.ICPR_DC)
                    self.assertEqual(status, 200, (n, rid, body))
                    self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
                    self.assertTrue(body["x509"].startswith("MII"))
            for n in ["node-b", "node-c"]:
                self.assertEqual(c.nodes[n].stop(), 0)  # flushes the log
                sources = [l.get("source") for l in c.nodes[n].log_lines() if l.get("endpoint") == "retrieve"]
                self.assertEqual(sources, ["store"] * len(ids), n)

    def test_two_node_cluster_serves_with_one_node_down_and_catches_up(self):
        # Quorum: a majority of 2 = 2; policy serve.
        with h.TempRoot() as root, Cluster(root, ["node-a", "node-b"]) as c:
            c.nodes["node-b"].stop()
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-a"].config], check=False)
            self.assertEqual(out.returncode, 1, out.stdout)  # node-b does not answer
            self.assertIn("node-b (127.0.0.1:", out.stdout)
            self.assertIn("UNREACHABLE", out.stdout)
            # A Raft store would stop here; this one answers (under-replicated, by policy).
            status, body = h.submit(c.nodes["node-a"], h.make_csr_b64("while-b-is-down"), dc=h.ICPR_DC)
            self.assertEqual(status, 200, body)
            rid = body["request-id"]
            c.nodes["node-b"].start()
            c.emulator.stop()
            # node-b catches up by itself (anti-entropy), then answers from its own store.
            h.wait_for(lambda: c.everywhere([rid]), timeout=20, what="node-b to catch up")

    def test_kill9_during_submits_then_restart_catches_up(self):
        # Majority quorum (2 of 3), policy serve.
        with h.TempRoot() as root, Cluster(root) as c:
            acked = []
            for i in range(30):
                if i == 10:
                    c.nodes["node-c"].kill9()
                target = c.nodes[NODES[i % 3]] if i < 10 else c.nodes[NODES[i % 2]]  # node-c is gone after 10
                status, body = h.submit(target, h.make_csr_b64(f"kill-{i}"), dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                acked.append(body["request-id"])
            c.nodes["node-c"].start()
            c.emulator.stop()  # from here on only the replicated stores can answer
            h.wait_for(lambda: c.everywhere(acked), timeout=30, what="every acknowledged ID on all three nodes")

    def test_a_submit_cut_short_by_a_kill_is_found_at_the_ca_not_sent_twice(self):
        """node-c dies after the CA recorded its submit but before the answer came back; the
        client's retry on node-b gets that request's ID, and the CA holds one request, not two."""
        with h.TempRoot() as root, Cluster(root) as c:
            # A little traffic first, so the cluster knows some request IDs.
            for i in range(3):
                st, body = h.submit(c.nodes[NODES[i]], h.make_csr_b64(f"before-{i}"), dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)
            c.emulator.ctl("set", "submit_reply_latency_ms", "10000")
            csr = h.make_csr_b64("cut-short")

            def on_ca():
                return [r for r in c.emulator.ctl("list")["requests"] if "cut-short" in r["subject"]]

            def doomed_submit():
                try:
                    h.submit(c.nodes["node-c"], csr, dc=h.ICPR_DC)
                except Exception:  # noqa: BLE001 - node-c is killed mid-call: no answer is the point
                    pass

            lost = threading.Thread(target=doomed_submit, daemon=True)
            lost.start()
            h.wait_for(lambda: len(on_ca()) == 1, timeout=20, what="the CA to record node-c's submit")
            c.nodes["node-c"].kill9()
            c.emulator.ctl("set", "submit_reply_latency_ms", "0")
            st, body = h.submit(c.nodes["node-b"], csr, dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-id"], on_ca()[0]["request_id"])
            self.assertEqual(len(on_ca()), 1, "the retry must not reach the CA as a second request")
            self.assertEqual(c.nodes["node-b"].stop(), 0)  # flushes the log
            lines = [l for l in c.nodes["node-b"].log_lines() if l.get("endpoint") == "request"]
            self.assertEqual(lines[-1].get("deduplicated"), "ca-search", lines[-1])
            self.assertEqual(lines[-1].get("recovered_for_node"), "node-c", lines[-1])
            # node-a learnt the recovered record too (node-b recorded it on a quorum).
            st, body = h.retrieve(c.nodes["node-a"], on_ca()[0]["request_id"], dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")

    def test_partitioned_node_keeps_serving_and_the_cluster_converges_after_healing(self):
        proxies = []

        def through_proxy(node, peer, port):
            # Every link from or to node-c goes through a proxy the test can cut.
            if "node-c" not in (node, peer):
                return port
            proxy = h.TcpProxy(port)
            proxies.append(proxy)
            return proxy.port
        with h.TempRoot() as root, Cluster(root, peer_address=through_proxy) as c:
            try:
                for p in proxies:
                    p.set_cut(True)
                acked = []
                for i in range(10):  # traffic on both sides of the partition
                    for n in ("node-a", "node-c"):
                        status, body = h.submit(c.nodes[n], h.make_csr_b64(f"part-{n}-{i}"), dc=h.ICPR_DC)
                        self.assertEqual(status, 200, body)
                        acked.append(body["request-id"])
                # The partition was real: node-c reaches nobody, and its writes had no quorum.
                out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-c"].config, "--json"], check=False)
                self.assertEqual(out.returncode, 1, out.stdout)
                views = {v["from"]["nodeId"]: v for v in json.loads(out.stdout)}
                self.assertEqual(int(views["node-c"].get("underReplicatedWrites", 0)), 10, views["node-c"])
                for peer in views["node-c"]["peers"]:  # its ten writes wait for both peers
                    self.assertEqual(int(peer.get("lagMutations", 0)), 10, peer)
                    self.assertGreater(int(peer.get("lagMs", 0)), 0, peer)
                self.assertIn("error", views["node-a"])
                for p in proxies:
                    p.set_cut(False)
                c.emulator.stop()
                h.wait_for(lambda: c.everywhere(acked), timeout=30,
                           what="the cluster to converge after the partition heals")
            finally:
                for p in proxies:
                    p.close()

    def test_fault_switch_cuts_a_node_off_and_heals_it(self):
        with h.TempRoot() as root, Cluster(root, ["node-a", "node-b"], allow_fault_injection=True) as c:
            ctl = [h.ADCSC, "ctl", "fault", "--config", c.nodes["node-b"].config]
            out = h.run(ctl + ["cut"], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("cut off from its peers", out.stdout)
            status = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-b"].config], check=False)
            self.assertEqual(status.returncode, 0, status.stdout)  # the operator still reaches every node
            self.assertIn("CUT OFF", status.stdout)
            ids = []
            for n in ("node-a", "node-b"):  # both sides keep serving Jamf
                st, body = h.submit(c.nodes[n], h.make_csr_b64(f"fault-{n}"), dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)
                ids.append(body["request-id"])
            # The cut was real: node-a's write reached nobody, and node-b answers no peer (the
            # operator on node-a included: it signs as node-a).
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-a"].config, "--json"], check=False)
            views = {v["from"]["nodeId"]: v for v in json.loads(out.stdout)}
            self.assertEqual(int(views["node-a"].get("underReplicatedWrites", 0)), 1, views["node-a"])
            self.assertIn("cut off", views["node-b"].get("error", ""), views["node-b"])
            out = h.run(ctl + ["heal"], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            # The CA switch: node-b's CA calls fail at once while node-a's go through, so
            # node-b hands its submit to node-a (test_ca_failover.py has the details); healing
            # restores them.
            out = h.run(ctl + ["ca-cut"], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("cut off from its CA", out.stdout)
            st, body = h.submit(c.nodes["node-b"], h.make_csr_b64("fault-ca-b"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
            ids.append(body["request-id"])
            st, body = h.submit(c.nodes["node-a"], h.make_csr_b64("fault-ca-a"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            ids.append(body["request-id"])
            status = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-b"].config], check=False)
            self.assertIn("CUT OFF from its CA", status.stdout)
            out = h.run(ctl + ["ca-heal"], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("CA reachable", out.stdout)
            st, body = h.submit(c.nodes["node-b"], h.make_csr_b64("fault-ca-b2"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            ids.append(body["request-id"])
            c.emulator.stop()
            h.wait_for(lambda: c.everywhere(ids), timeout=20, what="both nodes to hold both requests after healing")
        # Refused where it is not allowed, with the key to set.
        with h.TempRoot() as root, Cluster(root, ["node-a", "node-b"]) as c:
            off = h.run([h.ADCSC, "ctl", "fault", "--config", c.nodes["node-a"].config, "cut"], check=False)
            self.assertEqual(off.returncode, 1, off.stdout)
            self.assertIn("allow_fault_injection", off.stderr)

    def test_mixed_identities_forward_a_retrieve_to_the_submitters_node(self):
        # Per-host accounts: the CA lets only the submitting account retrieve a request.
        accounts = {"node-a": "EXAMPLE\\svc-adcsc", "node-b": "EXAMPLE\\other"}
        with h.TempRoot() as root, Cluster(root, ["node-a", "node-b"], accounts=accounts, write_quorum=2) as c:
            ids = []
            for i in range(2):
                status, body = h.submit(c.nodes["node-a"], h.make_csr_b64(f"mixed-{i}"), template="Pending",
                                        dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION")
                ids.append(body["request-id"])

            # The CA manager approves both; node-b, running as another account, has node-a ask
            # the CA for the first.
            for rid in ids:
                c.emulator.ctl("approve", "--id", str(rid))
            status, body = h.retrieve(c.nodes["node-b"], ids[0], dc=h.ICPR_DC)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
            self.assertTrue(body["x509"].startswith("MII"))

            # With node-a gone, nobody may retrieve the other request as its submitter: node-b
            # tries as itself, the CA refuses, and the error says why.
            self.assertEqual(c.nodes["node-a"].stop(), 0)
            status, body = h.retrieve(c.nodes["node-b"], ids[1], dc=h.ICPR_DC)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["request-status"]["status"], "INTERNAL_ERROR")
            message = body["request-status"]["message"]
            self.assertIn("was submitted as EXAMPLE\\svc-adcsc", message)
            self.assertIn("this node runs as EXAMPLE\\other", message)

            self.assertEqual(c.nodes["node-b"].stop(), 0)
            retrieves = [l for l in c.nodes["node-b"].log_lines() if l.get("endpoint") == "retrieve"]
            forwarded = [l for l in retrieves if l.get("source") == "forwarded"]
            self.assertTrue(forwarded, retrieves)
            self.assertTrue(all(l.get("forwarded_to") == "node-a" for l in forwarded), forwarded)
            on_a = [l for l in c.nodes["node-a"].log_lines() if l.get("event") == "forwarded_retrieve"]
            self.assertTrue(on_a and all(l["peer"] == "node-b" for l in on_a), on_a)


class BulkJoin(unittest.TestCase):
    """A fresh node joins a running cluster through the bulk path: one stream of a peer's whole
    store, written into a new file before the node opens it."""
    PRELOADED = 20_000

    def assert_joined_everything(self, c, fresh, announced):
        # The log is flushed within a second.
        lines = h.wait_for(lambda: join_lines(c.nodes[fresh]), timeout=10, what=f"{fresh} to log its join")
        self.assertEqual([l["outcome"] for l in lines], ["joined"], lines)
        self.assertEqual(lines[0]["peer"], "node-a", lines)  # the first peer in its configuration
        self.assertEqual(lines[0]["records"], announced, lines)
        data_dir = c.nodes[fresh].data_dir
        self.assertFalse((data_dir / "store.db.joining").exists())
        # Every record, byte for byte the peer's, and a vector that covers the peers at once.
        self.assertEqual(store_rows(c.nodes[fresh]), store_rows(c.nodes["node-a"]))
        views = c.views()
        self.assertEqual(int(views[fresh]["records"]), announced, views[fresh])
        for origin, seq in views["node-a"]["versionVector"]["entries"].items():
            self.assertGreaterEqual(int(views[fresh]["versionVector"]["entries"].get(origin, 0)), int(seq))

    def replicates_as_usual(self, c, fresh, earlier):
        """After the join the fresh node takes part like any other: a submit on it and one on a
        peer reach every node, answered from the stores with the CA stopped."""
        more = []
        for n in (fresh, "node-a"):
            st, body = h.submit(c.nodes[n], h.make_csr_b64(f"after-join-{n}"), dc=h.ICPR_DC)
            self.assertEqual(st, 200, body)
            more.append(body["request-id"])
        c.emulator.stop()
        h.wait_for(lambda: c.everywhere(earlier + more), timeout=30, what="every request on every node")

    def test_a_fresh_node_joins_through_the_bulk_path_then_replicates_as_usual(self):
        with h.TempRoot() as root, Cluster(root, start=["node-a", "node-b"]) as c:
            preload(c, ["node-a", "node-b"], self.PRELOADED)
            earlier = []
            for n in ("node-a", "node-b"):
                st, body = h.submit(c.nodes[n], h.make_csr_b64(f"before-join-{n}"), dc=h.ICPR_DC)
                self.assertEqual(st, 200, body)
                earlier.append(body["request-id"])
            h.wait_for(lambda: all(int(c.views()[n].get("records", 0)) == self.PRELOADED + 2
                                   for n in ("node-a", "node-b")), timeout=20, what="node-a and node-b to hold both")
            c.nodes["node-c"].start()
            self.assert_joined_everything(c, "node-c", self.PRELOADED + 2)
            self.replicates_as_usual(c, "node-c", earlier)
            # A restart finds a store that holds records: no second join.
            c.nodes["node-c"].stop()
            c.nodes["node-c"].start()
            self.assertEqual(c.nodes["node-c"].stop(), 0)  # flushes the log
            self.assertEqual(len(join_lines(c.nodes["node-c"])), 1)

    def test_a_node_killed_mid_join_starts_over_and_ends_with_every_record(self):
        with h.TempRoot() as root, Cluster(root, start=["node-a", "node-b"]) as c:
            preload(c, ["node-a", "node-b"], self.PRELOADED)
            fresh = c.nodes["node-c"]
            # Killed (SIGKILL, as kill -9) once half the records are written.
            with self.assertRaises(RuntimeError):
                fresh.start(env={"ADCSC_CRASH_POINT": "mid-join"})
            self.assertEqual(fresh.proc.returncode, -9)
            partial = fresh.data_dir / "store.db.joining"
            self.assertTrue(partial.exists() and partial.stat().st_size > 1 << 20, "a partial join file")
            self.assertFalse((fresh.data_dir / "store.db").exists(), "no store: the join had not finished")
            self.assertEqual(join_lines(fresh), [])
            # Started again, it throws the partial file away and joins from the start.
            fresh.start()
            self.assert_joined_everything(c, "node-c", self.PRELOADED)
            self.replicates_as_usual(c, "node-c", [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
