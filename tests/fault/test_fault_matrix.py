"""The fault matrix of issue 13: real `adcsc node` and ADCS emulator processes on loopback, each
fault made real (a full tmpfs under the data dir, SIGKILL at each step of a submit, the
emulator losing its answer after it took a request, the same CSR sent to two nodes at once, a
denial then a fix, a damaged index). For every CSR it counts the requests the CA itself holds
(the emulator's own list, by subject) and asserts exactly one, or none where the node refused
before calling the CA; and it retrieves every request ID the node acknowledged.

At the end it prints the matrix as the table in docs/reliability.md.
Run: python3 tests/fault/test_fault_matrix.py  (as root: the disk-full case mounts a tmpfs)
"""
import collections
import contextlib
import errno
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import harness as h  # noqa: E402

TWO_NODE_CSRS = 100   # CSRs sent to two nodes at once
PARALLEL_PAIRS = 10   # of those, in flight together
MATRIX = []           # rows for the printed table


def record(fault, behaviour, per_csr, lost):
    MATRIX.append((fault, behaviour, per_csr, lost))


def ca_requests(emulator):
    """CN -> how many requests the CA holds for it."""
    counts = collections.Counter()
    for row in emulator.ctl("list")["requests"]:
        subject = row["subject"]
        cn = subject.split("CN=", 1)[1].split(",", 1)[0] if "CN=" in subject else subject
        counts[cn] += 1
    return counts


def ops_section(port, min_free_bytes=None):
    store = f"\n[store]\nmin_free_bytes = {min_free_bytes}\n" if min_free_bytes is not None else ""
    return f"""
[ops]
listen = "127.0.0.1:{port}"
tls = false
probe_interval_ms = 200
{store}"""


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@contextlib.contextmanager
def single_node():
    """(root, pki, emulator, node): a node (not started) on the ADCS emulator, stopped after."""
    with h.TempRoot() as root:
        pki = h.Pki(root)
        emulator = h.Emulator(root).start()
        node = h.Node(root, pki, ca_section=h.icpr_ca_section(emulator))
        try:
            yield root, pki, emulator, node
        finally:
            node.stop()
            emulator.stop()


def three_nodes(root, pki, emulator, extra=lambda node_id: ""):
    """node-a, node-b and node-c (not started) of one cluster on `emulator`; `extra(id)`: more TOML."""
    ids = ["node-a", "node-b", "node-c"]
    sections = h.cluster_sections(root, ids)
    return {n: h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(emulator), extra=sections[n] + extra(n))
            for n in ids}


def submit_or_error(node, csr, template="JamfDevice"):
    """(status, body), or (None, error text) when the connection broke (the node died)."""
    try:
        return h.submit(node, csr, template=template, dc=h.ICPR_DC)
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e)


def retrievable(test, node, ids):
    for rid in ids:
        status, body = h.retrieve(node, rid, dc=h.ICPR_DC)
        test.assertEqual(status, 200, f"request {rid}: {body}")
        test.assertIn(body["request-status"]["status"], ("CR_DISP_ISSUED", "CR_DISP_UNDER_SUBMISSION"), body)


class FaultMatrix(unittest.TestCase):
    def test_disk_full(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            mnt = root / "small-disk"
            mnt.mkdir()
            mounted = h.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mnt], check=False)
            if mounted.returncode != 0:
                emulator.stop()
                self.skipTest(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
            node = None
            try:
                ops = h.free_port()
                node = h.Node(root, pki, ca_section=h.icpr_ca_section(emulator),
                              extra=ops_section(ops, min_free_bytes=1024 * 1024))
                node.config.write_text(node.config.read_text().replace(str(node.data_dir), str(mnt / "data")))
                node.start()
                h.wait_for(lambda: ready(ops)[0] == 200, what="ready")
                # Fill the volume to the last byte (unbuffered: every byte that fits is written).
                fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    for chunk in (1 << 20, 65536, 4096, 512, 1):
                        try:
                            while True:
                                os.write(fd, b"\0" * chunk)
                        except OSError as e:
                            self.assertEqual(e.errno, errno.ENOSPC)
                finally:
                    os.close(fd)
                # Under store.min_free_bytes: the balancer is told before writes fail.
                h.wait_for(lambda: ready(ops)[0] == 503, what="not ready on a full disk")
                self.assertIn("min_free_bytes", ready(ops)[1])

                csrs = {f"fm-disk-{i}": h.make_csr_b64(f"fm-disk-{i}") for i in range(40)}
                answers = {cn: submit_or_error(node, csr) for cn, csr in csrs.items()}
                refused_before_ca = [cn for cn, (st, b) in answers.items()
                                     if st == 500 and "nothing was sent to the CA" in json.dumps(b)]
                accepted_unrecorded = [cn for cn, (st, b) in answers.items()
                                       if st == 500 and "could not be recorded" in json.dumps(b)]
                self.assertTrue(refused_before_ca, f"no submit was refused before the CA call: {answers}")
                for cn in refused_before_ca:
                    self.assertIn("store.db", json.dumps(answers[cn][1]), "the error names the store")
                    self.assertEqual(ca_requests(emulator)[cn], 0, f"{cn} reached the CA")
                self.assertEqual(node.proc.poll(), None, "the node survived the full disk")

                (mnt / "filler").unlink()
                h.wait_for(lambda: ready(ops)[0] == 200, timeout=30, what="ready again once space returns")
                acked = {}
                for cn, csr in csrs.items():
                    status, body = h.submit(node, csr, dc=h.ICPR_DC)
                    self.assertEqual(status, 200, f"{cn}: {body}")
                    if answers[cn][0] == 200:
                        self.assertEqual(body["request-id"], answers[cn][1]["request-id"], cn)
                    acked[cn] = body["request-id"]
                counts = ca_requests(emulator)
                for cn in csrs:
                    self.assertEqual(counts[cn], 1, f"{cn}: {counts[cn]} CA requests")
                retrievable(self, node, acked.values())
                record("disk full (8 MiB tmpfs filled to the last byte)",
                       f"not ready (free < store.min_free_bytes); {len(refused_before_ca)} of {len(csrs)} submits "
                       f"refused before the CA call (500, names the store), {len(accepted_unrecorded)} taken by the "
                       "CA but not recorded (500); all answered with one request each once space returned",
                       "1 (0 while refused)", 0)
            finally:
                if node:
                    node.stop()
                h.run(["umount", "-l", mnt], check=False)
                emulator.stop()

    def test_kill9_at_each_step_of_a_submit(self):
        with single_node() as (root, pki, emulator, node):
            node.start()
            expected = {"before-intent": 0, "after-intent": 0, "after-ca": 1, "after-record": 1}
            for point, at_ca_when_killed in expected.items():
                cn = f"fm-kill-{point}"
                csr = h.make_csr_b64(cn)
                node.stop()
                node.start(env={"ADCSC_CRASH_POINT": point})
                status, body = submit_or_error(node, csr)
                self.assertIsNone(status, f"{point}: the node answered {body} instead of dying")
                node.proc.wait(timeout=20)
                self.assertEqual(node.proc.returncode, -9, f"{point}: killed by SIGKILL")
                self.assertEqual(ca_requests(emulator)[cn], at_ca_when_killed, point)
                node.start()
                status, body = h.submit(node, csr, dc=h.ICPR_DC)
                self.assertEqual(status, 200, f"{point}: {body}")
                self.assertEqual(ca_requests(emulator)[cn], 1, f"{point}: CA requests for the retried CSR")
                retrievable(self, node, [body["request-id"]])
                record(f"kill -9 {point.replace('-', ' ')}",
                       {"before-intent": "nothing durable, nothing sent; the retry submits",
                        "after-intent": "the retry searches the CA (nothing), then submits once",
                        "after-ca": "the CA has it; found by the search at restart or on the retry",
                        "after-record": "the retry is answered from the store"}[point], "1", 0)

    def test_lost_answers(self):
        with single_node() as (root, pki, emulator, node):
            node.start()
            for knob, what in (("fault_after_accept", "unsigned RPC fault after the CA took the request"),
                               ("drop_after_accept", "connection dropped after the CA took the request")):
                cn = f"fm-{knob}"
                emulator.ctl("set", knob, "1")
                status, body = h.submit(node, h.make_csr_b64(cn), dc=h.ICPR_DC)
                self.assertEqual(status, 200, f"{knob}: {body}")
                self.assertEqual(emulator.ctl("stats")[knob], 0, "the knob was used")
                self.assertEqual(ca_requests(emulator)[cn], 1, knob)
                retrievable(self, node, [body["request-id"]])
                record(what, "outcome unknown: found at the CA by public key, answered with its ID", "1", 0)

    def test_same_csr_on_two_nodes_at_once(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            nodes = three_nodes(root, pki, emulator)
            try:
                for n in nodes.values():
                    n.start()
                answers = {}
                lock = threading.Lock()

                def one_csr(i):
                    cn = f"fm-twice-{i}"
                    csr = h.make_csr_b64(cn)
                    barrier = threading.Barrier(2)
                    got = []

                    def send(node):
                        ctx = h.ssl_context(pki)
                        barrier.wait()
                        got.append(h.submit(node, csr, ctx=ctx, dc=h.ICPR_DC))
                    pair = [threading.Thread(target=send, args=(nodes[n],)) for n in ("node-a", "node-b")]
                    for t in pair:
                        t.start()
                    for t in pair:
                        t.join(timeout=60)
                    with lock:
                        answers[cn] = got

                for start in range(0, TWO_NODE_CSRS, PARALLEL_PAIRS):
                    batch = [threading.Thread(target=one_csr, args=(i,))
                             for i in range(start, min(start + PARALLEL_PAIRS, TWO_NODE_CSRS))]
                    for t in batch:
                        t.start()
                    for t in batch:
                        t.join(timeout=120)
                counts = ca_requests(emulator)
                acked = set()
                for cn, got in answers.items():
                    self.assertEqual(len(got), 2, cn)
                    for status, body in got:
                        self.assertEqual(status, 200, f"{cn}: {body}")
                    self.assertEqual(got[0][1]["request-id"], got[1][1]["request-id"], f"{cn}: two request IDs")
                    self.assertEqual(counts[cn], 1, f"{cn}: {counts[cn]} CA requests")
                    acked.add(got[0][1]["request-id"])
                self.assertEqual(len(answers), TWO_NODE_CSRS)
                retrievable(self, nodes["node-c"], sorted(acked))
                record(f"same CSR on two nodes at once (x{TWO_NODE_CSRS})",
                       "one lease holder submits; the other waits and answers with its request ID", "1", 0)
            finally:
                for n in nodes.values():
                    n.stop()
                emulator.stop()

    def test_denied_then_fixed(self):
        with single_node() as (root, pki, emulator, node):
            node.start()
            cn = "fm-denied"
            csr = h.make_csr_b64(cn)
            status, body = h.submit(node, csr, template="Pending", dc=h.ICPR_DC)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_UNDER_SUBMISSION", body)
            first = body["request-id"]
            emulator.ctl("deny", "--id", str(first))
            status, body = h.retrieve(node, first, dc=h.ICPR_DC)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_DENIED", body)
            # The CA admin fixes what made them deny it; the same CSR must reach the CA again.
            status, body = h.submit(node, csr, template="Pending", dc=h.ICPR_DC)
            self.assertEqual(status, 200, body)
            second = body["request-id"]
            self.assertNotEqual(second, first, "the denial was not reused")
            self.assertEqual(ca_requests(emulator)[cn], 2, "the retry made exactly one new CA request")
            emulator.ctl("approve", "--id", str(second))
            status, body = h.retrieve(node, second, dc=h.ICPR_DC)
            self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
            status, body = h.submit(node, csr, template="Pending", dc=h.ICPR_DC)
            self.assertEqual(body["request-id"], second, "an issued answer is reused")
            self.assertEqual(ca_requests(emulator)[cn], 2)
            record("denied, then fixed at the CA", "the denial is not reused: the retry reaches the CA once",
                   "1 per submit after the denial", 0)


def damage_root_page(db, name):
    """Garbage over the root page of table or index `name` (no node has the file open)."""
    import sqlite3
    c = sqlite3.connect(db)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    root = c.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (name,)).fetchone()[0]
    page_size = c.execute("PRAGMA page_size").fetchone()[0]
    c.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x5a" * page_size)


class DamagedStore(unittest.TestCase):
    def test_a_damaged_index_is_rebuilt_and_a_damaged_table_stops_the_node(self):
        with single_node() as (root, pki, emulator, node):
            node.start()
            csrs = {f"fm-index-{i}": h.make_csr_b64(f"fm-index-{i}") for i in range(10)}
            acked = {}
            for cn, csr in csrs.items():
                status, body = h.submit(node, csr, dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                acked[cn] = body["request-id"]
            self.assertEqual(node.stop(), 0)
            db = node.data_dir / "store.db"
            damage_root_page(db, "requests_dedupe")

            node.start()
            lines = [l for l in node.log_lines() if l.get("event") == "store_integrity"]
            self.assertTrue(any(l.get("outcome") == "damaged" for l in lines), lines)
            self.assertTrue(any(l.get("outcome") == "repaired" for l in lines), lines)
            kept = list(node.data_dir.glob("store.db.damaged-*"))
            self.assertTrue(kept, "the damaged file is kept")
            # Dedupe answers from the rebuilt index: every retry gets its request, none a new one.
            for cn, csr in csrs.items():
                status, body = h.submit(node, csr, dc=h.ICPR_DC)
                self.assertEqual(body["request-id"], acked[cn], cn)
            counts = ca_requests(emulator)
            for cn in csrs:
                self.assertEqual(counts[cn], 1, cn)
            retrievable(self, node, acked.values())
            record("damaged index (garbage over the dedupe index's root page)",
                   "found by quick_check at start, store rebuilt from its tables (damaged file kept); "
                   "retries deduplicated", "1", 0)

            # A single node whose table is damaged cannot be rebuilt: it refuses to start and
            # says what to do (a cluster node rebuilds from its peers, below).
            self.assertEqual(node.stop(), 0)
            damage_root_page(db, "requests")
            proc = subprocess.run([str(h.ADCSC), "node", "--config", str(node.config)], capture_output=True,
                                  text=True, timeout=60)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn("A damaged store", proc.stderr)
            self.assertIn(str(db), proc.stderr)
            record("damaged table on a single node (garbage over the requests table's root page)",
                   "refuses to start; the message names the file and the runbook", "0 (not serving)", 0)


def held_in_store(node, request_id):
    """Whether `node`'s own store holds the request (read-only, beside the running node)."""
    import sqlite3
    c = sqlite3.connect(f"file:{node.data_dir / 'store.db'}?mode=ro", uri=True, timeout=5)
    try:
        return c.execute("SELECT COUNT(*) FROM requests WHERE request_id = ?", (request_id,)).fetchone()[0] > 0
    finally:
        c.close()


class DamagedClusterStore(unittest.TestCase):
    def test_a_cluster_node_with_damaged_tables_rebuilds_from_its_peers(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            emulator = h.Emulator(root).start()
            ops = h.free_port()
            nodes = three_nodes(root, pki, emulator, lambda n: ops_section(ops) if n == "node-b" else "")
            try:
                for n in nodes.values():
                    n.start()
                h.wait_for(lambda: ready(ops)[0] == 200, what="node-b ready")
                b = nodes["node-b"]
                csrs = {f"fm-peers-{i}": h.make_csr_b64(f"fm-peers-{i}") for i in range(10)}
                acked = {}
                # Pending, then approved and retrieved on node-b: two of node-b's own mutations
                # per record, so a rebuilt node-b that numbered its writes from what it copied
                # back (one per record) would reuse sequences its peers hold.
                for cn, csr in csrs.items():
                    status, body = h.submit(b, csr, template="Pending", dc=h.ICPR_DC)
                    self.assertEqual(status, 200, body)
                    acked[cn] = body["request-id"]
                    emulator.ctl("approve", "--id", str(body["request-id"]))
                    status, body = h.retrieve(b, acked[cn], dc=h.ICPR_DC)
                    self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", body)
                self.assertEqual(b.stop(), 0)
                damage_root_page(b.data_dir / "store.db", "requests")

                b.start()
                h.wait_for(lambda: ready(ops)[0] == 200, timeout=60, what="node-b ready after copying its peers")
                h.wait_for(lambda: any(l.get("event") == "store_integrity" and l.get("outcome") == "rebuilding"
                                       for l in b.log_lines()), what="the rebuild logged")
                # Every record came back from the peers into node-b's own store before it was
                # ready, and retries get their requests.
                for cn, rid in acked.items():
                    self.assertTrue(held_in_store(b, rid), f"{cn}: request {rid} not back in node-b's store")
                for cn, csr in csrs.items():
                    status, body = h.submit(b, csr, template="Pending", dc=h.ICPR_DC)
                    self.assertEqual(body["request-id"], acked[cn], f"{cn}: {body}")
                counts = ca_requests(emulator)
                for cn in csrs:
                    self.assertEqual(counts[cn], 1, cn)
                # Its new writes are numbered after what the peers hold, so they replicate.
                status, body = h.submit(b, h.make_csr_b64("fm-peers-new"), dc=h.ICPR_DC)
                self.assertEqual(status, 200, body)
                fresh = body["request-id"]
                for peer in ("node-a", "node-c"):
                    h.wait_for(lambda: held_in_store(nodes[peer], fresh), timeout=30,
                               what=f"request {fresh} written on node-b to reach {peer}'s store")
                retrievable(self, nodes["node-a"], acked.values())
                record("damaged table on a cluster node (garbage over the requests table's root page)",
                       "starts empty, marked; takes its own sequence past what every peer holds, copies a full "
                       "snapshot before it is ready; its new writes replicate", "1", 0)
            finally:
                for n in nodes.values():
                    n.stop()
                emulator.stop()


def print_matrix():
    if not MATRIX:
        return
    print("\n| Fault | What the node does | CA requests per CSR | Lost IDs |")
    print("|---|---|---|---|")
    for fault, behaviour, per_csr, lost in MATRIX:
        print(f"| {fault} | {behaviour} | {per_csr} | {lost} |")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    print_matrix()
    sys.exit(0 if result.wasSuccessful() else 1)
