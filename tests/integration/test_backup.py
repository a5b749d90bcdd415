"""Online backup and restore on real processes: `adcsc ctl backup` copies node-c's store while
submits run on every node; node-c then loses its disk (killed, data directory deleted), and
`adcsc node restore` puts the backup back: every acknowledged request — including those made
after the backup — is retrievable from node-c again from its own store (the CA is stopped),
and node-c's next writes do not reuse a sequence number its peers hold. A backup of another
node, a damaged file and a store already in place are refused with clear messages; a single
node restores too."""
import shutil
import sqlite3
import sys
import threading
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_cluster import NODES, Cluster  # noqa: E402


class BackupAndRestore(unittest.TestCase):
    def test_backup_under_load_then_restore_after_a_lost_disk(self):
        with h.TempRoot() as root, Cluster(root) as c:
            acked, errors, stop = [], [], threading.Event()
            lock = threading.Lock()

            def load(node_id, prefix):
                i = 0
                while not stop.is_set() and i < 400:
                    status, body = h.submit(c.nodes[node_id], h.make_csr_b64(f"{prefix}-{i}"), dc=h.ICPR_DC)
                    with lock:
                        (acked if status == 200 else errors).append(body["request-id"] if status == 200 else body)
                    i += 1

            workers = [threading.Thread(target=load, args=(n, f"load-{n}")) for n in NODES]
            for w in workers:
                w.start()
            h.wait_for(lambda: len(acked) >= 30, timeout=60, what="30 submits before the backup")
            backup = root / "node-c-backup.db"
            out = h.run([h.ADCSC, "ctl", "backup", "--config", c.nodes["node-c"].config, "--out", backup], check=False)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertIn("node node-c:", out.stdout)
            self.assertEqual(backup.stat().st_mode & 0o777, 0o600)
            with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as db:
                self.assertEqual(db.execute("PRAGMA integrity_check").fetchone()[0], "ok")
                in_backup = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            self.assertGreater(in_backup, 0)
            # Never over an existing file.
            again = h.run([h.ADCSC, "ctl", "backup", "--config", c.nodes["node-c"].config, "--out", backup], check=False)
            self.assertEqual(again.returncode, 2, again.stderr)
            self.assertIn("exists", again.stderr)
            # More writes after the backup, node-c's own among them.
            before = len(acked)
            h.wait_for(lambda: len(acked) >= before + 30, timeout=60, what="30 submits after the backup")
            stop.set()
            for w in workers:
                w.join(timeout=120)
            self.assertEqual(errors, [])

            # Not under a running node, even with --replace: the node holds its data directory.
            busy = h.run([h.ADCSC, "node", "restore", "--config", c.nodes["node-c"].config, "--from", backup,
                          "--replace"], check=False)
            self.assertEqual(busy.returncode, 2, busy.stdout + busy.stderr)
            self.assertIn("an adcsc node runs on", busy.stderr)
            self.assertFalse(list(c.nodes["node-c"].data_dir.glob("store.db.replaced-*")))

            # node-c loses its disk.
            c.nodes["node-c"].kill9()
            shutil.rmtree(c.nodes["node-c"].data_dir)

            # Refused: a backup of another node, a damaged file.
            other = root / "node-a-backup.db"
            self.assertEqual(h.run([h.ADCSC, "ctl", "backup", "--config", c.nodes["node-a"].config, "--out", other],
                                   check=False).returncode, 0)
            wrong = h.run([h.ADCSC, "node", "restore", "--config", c.nodes["node-c"].config, "--from", other],
                          check=False)
            self.assertEqual(wrong.returncode, 2, wrong.stdout + wrong.stderr)
            self.assertIn("is a backup of node 'node-a', not of 'node-c'", wrong.stderr)
            damaged = root / "damaged.db"
            damaged.write_bytes(backup.read_bytes()[:4096] + b"\0" * 4096)
            bad = h.run([h.ADCSC, "node", "restore", "--config", c.nodes["node-c"].config, "--from", damaged],
                        check=False)
            self.assertEqual(bad.returncode, 2, bad.stdout + bad.stderr)
            self.assertFalse((c.nodes["node-c"].data_dir / "store.db").exists())

            restored = h.run([h.ADCSC, "node", "restore", "--config", c.nodes["node-c"].config, "--from", backup],
                             check=False)
            self.assertEqual(restored.returncode, 0, restored.stdout + restored.stderr)
            self.assertIn("copies every record its peers hold", restored.stdout)
            self.assertEqual((c.nodes["node-c"].data_dir / "store.db").stat().st_mode & 0o777, 0o600)
            # A store in place is not overwritten.
            twice = h.run([h.ADCSC, "node", "restore", "--config", c.nodes["node-c"].config, "--from", backup],
                          check=False)
            self.assertEqual(twice.returncode, 2, twice.stderr)
            self.assertIn("--replace", twice.stderr)

            c.nodes["node-c"].start()
            c.emulator.stop()  # only the stores can answer from here on
            h.wait_for(lambda: all(
                h.retrieve(c.nodes["node-c"], rid, dc=h.ICPR_DC)[1].get("request-status", {}).get("status")
                == "CR_DISP_ISSUED" for rid in acked), timeout=60, what="every acknowledged ID on the restored node-c")
            print(f"\nbackup/restore: {len(acked)} acknowledged under load ({before} before the backup, "
                  f"{in_backup} records in it), every one retrievable from the restored node-c", file=sys.stderr)
            # node-c numbers its writes after everything its peers hold of it: its sequence
            # continues past the highest node-c mutation on node-a, not from the backup's.
            with sqlite3.connect(f"file:{c.nodes['node-a'].data_dir / 'store.db'}?mode=ro", uri=True) as db:
                peer_high = db.execute("SELECT sequence FROM version_vector WHERE origin = 'node-c'").fetchone()[0]
            with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as db:
                row = db.execute("SELECT sequence FROM version_vector WHERE origin = 'node-c'").fetchone()
                backup_high = row[0] if row else 0
            self.assertGreater(peer_high, backup_high, "node-c wrote after the backup")
            with sqlite3.connect(f"file:{c.nodes['node-c'].data_dir / 'store.db'}?mode=ro", uri=True) as db:
                own = db.execute("SELECT sequence FROM version_vector WHERE origin = 'node-c'").fetchone()[0]
                pending = db.execute("SELECT COUNT(*) FROM meta WHERE key = 'rebuild_from_peers'").fetchone()[0]
            self.assertGreaterEqual(own, peer_high)
            self.assertEqual(pending, 0, "the restore was completed from the peers")

    def test_two_nodes_never_share_a_data_directory(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            first = h.Node(root, pki).start()
            try:
                second = h.run([h.ADCSC, "node", "--config", first.config], check=False)
                self.assertEqual(second.returncode, 1, second.stdout + second.stderr)
                self.assertIn("an adcsc node runs on", second.stderr)
                status, body = h.submit(first, h.make_csr_b64("still-serving"))
                self.assertEqual(status, 200, body)
            finally:
                first.stop()

    def test_a_single_node_restores_its_backup(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            try:
                ids = []
                for i in range(5):
                    status, body = h.submit(node, h.make_csr_b64(f"single-{i}"))
                    self.assertEqual(status, 200, body)
                    ids.append(body["request-id"])
                backup = root / "single.db"
                out = h.run([h.ADCSC, "ctl", "backup", "--config", node.config, "--out", backup], check=False)
                self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
                self.assertIn("5 records", out.stdout)
                node.stop()
                moved = h.run([h.ADCSC, "node", "restore", "--config", node.config, "--from", backup, "--replace"],
                              check=False)
                self.assertEqual(moved.returncode, 0, moved.stdout + moved.stderr)
                self.assertIn("single node has no peers", moved.stdout)
                self.assertTrue(list(node.data_dir.glob("store.db.replaced-*")), "the old store is kept aside")
                node.start()
                for rid in ids:
                    status, body = h.retrieve(node, rid)
                    self.assertEqual(status, 200, body)
                    self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED")
            finally:
                node.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
