"""Crash safety: kill -9 a node during a stream of submits, restart it, and check that every
request ID it acknowledged is still retrievable (the store commits before answering)."""
import sys
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

WRITERS = 4
KILL_AFTER_ACKS = 60       # kill once this many submits were acknowledged
MAX_SUBMITS_PER_WRITER = 200
MAX_SECONDS = 60


class CrashTest(unittest.TestCase):
    def test_kill9_loses_no_acknowledged_request(self):
        with h.TempRoot() as root:
            pki = h.Pki(root)
            node = h.Node(root, pki).start()
            acked, lock = [], threading.Lock()
            stop = threading.Event()
            errors_after_kill = []
            deadline = time.monotonic() + MAX_SECONDS

            def writer(n):
                ctx = h.ssl_context(pki)
                for i in range(MAX_SUBMITS_PER_WRITER):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    try:
                        status, body = h.submit(node, h.make_csr_b64(f"crash-{n}-{i}"), ctx=ctx)
                    except OSError as e:  # the node died under us: expected after the kill
                        errors_after_kill.append(repr(e))
                        return
                    if status == 200:
                        with lock:
                            acked.append(body["request-id"])

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
            for t in threads:
                t.start()
            h.wait_for(lambda: len(acked) >= KILL_AFTER_ACKS, timeout=MAX_SECONDS, what="acknowledged submits")
            node.kill9()
            stop.set()
            for t in threads:
                t.join(timeout=30)
            self.assertGreaterEqual(len(acked), KILL_AFTER_ACKS)

            node.start()
            for rid in sorted(acked):
                status, body = h.retrieve(node, rid)
                self.assertEqual(status, 200, f"request {rid}: {body}")
                self.assertEqual(body["request-status"]["status"], "CR_DISP_ISSUED", f"request {rid}")
            status, body = h.submit(node, h.make_csr_b64("after-crash"))
            self.assertGreater(body["request-id"], max(acked), "request IDs never go back after a crash")
            self.assertEqual(node.stop(), 0)
            print(f"acknowledged before kill -9: {len(acked)}; all retrievable after restart")


if __name__ == "__main__":
    unittest.main(verbosity=2)
