"""Rolling upgrade: a three-node cluster with one node on the previous release, built from git
(PREVIOUS_COMMIT), replicates both ways with the nodes of this build; that node is then
upgraded in place (restarted on this build's binary over the same data directory), then rolled
back the same way, and the cluster still holds and serves every acknowledged request.
Exercised across the versions, both ways: pushes, pulls, Info, submit leases (AnnounceSubmit),
dedupe lookups and forwarded submits. A node that claims a cluster protocol this build cannot
read (through the test-only ADCSC_TEST_ONLY_CLUSTER_PROTOCOL) is refused with the operator's
message, once in the log, on /health/ready, in /metrics and in `adcsc ctl status`, while the
other two nodes keep serving.

The previous release is built once per commit into <build>/prev/src/build (only the `adcsc`
target, without the tests, with tests/run's ccache: seconds when the cache holds that commit,
about half an hour on two busy cores when it does not) and reused by later runs.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

# The release this one upgrades from: adcsc 0.1.0, from before cluster protocol versioning.
# When a release is cut, move this to the commit of the release before it.
PREVIOUS_COMMIT = "b5b5179"
PREVIOUS_VERSION = "0.1.0"
NODES = ["node-a", "node-b", "node-c"]
OLD = "node-c"  # the node that starts on the previous release
PREVIOUS_BUILD_TIMEOUT_S = 3600  # without ccache, on two busy cores: 33 minutes


def previous_binary():
    """Builds `adcsc` of PREVIOUS_COMMIT in <build>/prev/src/build, unless built already; its
    path, and how long the build took (0 when reused)."""
    root = h.BIN.resolve().parent / "prev"
    # The build directory inside the source tree, and the flags tests/run builds with: the
    # compiler sees the same relative paths and options as in any checkout's build, so ccache
    # hits what a build of that commit anywhere left in it.
    src, stamp = root / "src", root / "commit"
    build = src / "build"
    binary = build / "bin" / "adcsc"
    found = h.run(["git", "-C", h.REPO, "rev-parse", "--verify", "--quiet", f"{PREVIOUS_COMMIT}^{{commit}}"],
                  check=False)
    if found.returncode != 0:
        raise RuntimeError(f"commit {PREVIOUS_COMMIT} (the previous release) is not in {h.REPO}: a shallow clone? "
                           "Fetch the history (git fetch --unshallow) to run the upgrade test")
    commit = found.stdout.strip()
    if stamp.exists() and stamp.read_text() == commit and binary.exists():
        return binary, 0.0
    started = time.monotonic()
    shutil.rmtree(root, ignore_errors=True)
    src.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(h.REPO), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True, timeout=120)
    archive.stdout.close()
    if archive.wait(timeout=120) != 0:
        raise RuntimeError(f"git archive {commit} failed")
    # The cache tests/run uses; paths relative to this source tree, so later runs (and other
    # checkouts) hit it.
    env = {**os.environ, "CCACHE_DIR": os.environ.get("CCACHE_DIR", str(Path.home() / ".cache" / "adcsc-ccache")),
           "CCACHE_BASEDIR": str(src), "CCACHE_NOHASHDIR": "1"}
    for args in (["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                  "-DADCSC_WERROR=ON", "-DADCSC_BUILD_TESTS=OFF"],
                 ["cmake", "--build", build, "-j", str(os.cpu_count() or 2), "--target", "adcsc"]):
        out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                             timeout=PREVIOUS_BUILD_TIMEOUT_S)
        if out.returncode != 0:
            raise RuntimeError(f"building the previous release failed: {' '.join(map(str, args))}\n"
                               f"{out.stdout[-4000:]}{out.stderr[-4000:]}")
    stamp.write_text(commit)
    return binary, time.monotonic() - started


def ops_section():
    port = h.free_port()
    return port, f"""
[ops]
listen = "127.0.0.1:{port}"
tls = false
probe_interval_ms = 200
"""


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class MixedCluster:
    """PKI, one emulator, three nodes with [ops] and [cluster]; OLD runs `old_binary`."""

    def __init__(self, root, old_binary):
        self.root, self.old_binary = root, old_binary

    def __enter__(self):
        self.pki = h.Pki(self.root)
        self.emulator = h.Emulator(self.root).start()
        sections = h.cluster_sections(self.root, NODES, allow_fault_injection=True)
        self.nodes, self.ops = {}, {}
        for n in NODES:
            port, ops = ops_section()
            self.ops[n] = f"http://127.0.0.1:{port}"
            self.nodes[n] = h.Node(self.root, self.pki, node_id=n, ca_section=h.icpr_ca_section(self.emulator),
                                   extra=ops + sections[n])
            if n == OLD:
                self.nodes[n].binary = self.old_binary
            self.nodes[n].start()
        return self

    def __exit__(self, *exc):
        for node in self.nodes.values():
            node.stop()
        self.emulator.stop()

    def status(self, n="node-a"):
        """`adcsc ctl status --json` from node n (this build's CLI): each node's view."""
        return h.cluster_views(self.nodes[n])

    def fault(self, n, action):
        """`adcsc ctl fault` on node n, with the binary it runs."""
        out = h.run([self.nodes[n].binary, "ctl", "fault", "--config", self.nodes[n].config, action], check=False)
        assert out.returncode == 0, out.stdout + out.stderr

    def converged(self, count, nodes=NODES):
        """Every node of `nodes` holds `count` records and the same version vector."""
        views = self.status()
        if any(n not in views or "error" in views[n] for n in nodes):
            return False
        vectors = [views[n].get("versionVector", {}).get("entries", {}) for n in nodes]
        return all(int(views[n].get("records", 0)) == count for n in nodes) and all(v == vectors[0] for v in vectors)

    def enrol_everywhere(self, rounds, tag, nodes=NODES):
        ids = []
        for i in range(rounds):
            for n in nodes:
                status, body = h.submit(self.nodes[n], h.make_csr_b64(f"{tag}-{n}-{i}"), dc=h.ICPR_DC)
                assert status == 200 and body["request-status"]["status"] == "CR_DISP_ISSUED", (n, status, body)
                ids.append(body["request-id"])
        return ids

    def everywhere(self, ids, nodes=NODES):
        return h.issued_everywhere([self.nodes[n] for n in nodes], ids, dc=h.ICPR_DC)


class RollingUpgrade(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (h.REPO / ".git").exists():
            raise unittest.SkipTest(f"{h.REPO} is not a git checkout: the previous release cannot be built from it")
        cls.old_binary, took = previous_binary()
        print(f"previous release ({PREVIOUS_COMMIT}): {cls.old_binary}"
              f"{f', built in {took:.0f} s' if took else ', reused'}", file=sys.stderr)
        version = h.run([cls.old_binary, "--version"]).stdout.strip()
        assert version == PREVIOUS_VERSION, version

    def test_one_node_on_the_previous_release_replicates_both_ways_is_upgraded_and_rolled_back(self):
        with h.TempRoot() as root, MixedCluster(root, self.old_binary) as c:
            views = h.wait_for(lambda: (v := c.status()) and all("error" not in v.get(n, {"error": 1}) for n in NODES)
                               and v, timeout=30, what="every node to answer ctl status")
            self.assertEqual(views[OLD]["version"], PREVIOUS_VERSION)
            self.assertNotEqual(views["node-a"]["version"], PREVIOUS_VERSION)
            # Through every node, the old one included: its writes reach the new nodes and theirs
            # reach it (each submit also takes its lease from a majority, old node or not).
            ids = c.enrol_everywhere(3, "mixed")
            h.wait_for(lambda: c.converged(len(ids)), timeout=30, what="the three stores to converge")
            # The new nodes heard protocol 1 from the old one (it sends none), and refuse nothing.
            peers = {p["nodeId"]: p for p in c.status()["node-a"]["peers"]}
            self.assertEqual(peers[OLD].get("clusterProtocol"), 1, peers[OLD])
            self.assertFalse(peers[OLD].get("refusedForVersion"), peers[OLD])
            self.assertTrue(c.everywhere(ids))
            # Forwarded submits both ways: the old node cut off from its CA hands its submit to a
            # new node; a new node cut off (node-b too, so the old node is the one left) to it.
            c.fault(OLD, "ca-cut")
            status, body = h.submit(c.nodes[OLD], h.make_csr_b64("forwarded-by-old"), dc=h.ICPR_DC)
            self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_ISSUED"), body)
            ids.append(body["request-id"])
            c.fault(OLD, "ca-heal")
            for n in ("node-a", "node-b"):
                c.fault(n, "ca-cut")
            status, body = h.submit(c.nodes["node-a"], h.make_csr_b64("forwarded-to-old"), dc=h.ICPR_DC)
            self.assertEqual((status, body["request-status"]["status"]), (200, "CR_DISP_ISSUED"), body)
            ids.append(body["request-id"])
            for n in ("node-a", "node-b"):
                c.fault(n, "ca-heal")
            h.wait_for(lambda: c.converged(len(ids)), timeout=30, what="the stores to converge after the forwards")

            # Upgrade the old node in place: drain it, stop it, start this build on its data.
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes[OLD].config], check=False)
            self.assertIn(f"adcsc {PREVIOUS_VERSION} (cluster protocol 1", out.stdout)
            self.assertEqual(c.nodes[OLD].stop(), 0)
            c.nodes[OLD].binary = h.ADCSC
            c.nodes[OLD].start()
            h.wait_for(lambda: c.status()[OLD].get("version") not in (None, PREVIOUS_VERSION), timeout=30,
                       what="the upgraded node to answer")
            more = c.enrol_everywhere(2, "upgraded")
            h.wait_for(lambda: c.converged(len(ids) + len(more)), timeout=30, what="the stores to converge again")
            # And back: this release keeps the store's schema, so the previous binary opens it.
            self.assertEqual(c.nodes[OLD].stop(), 0)
            c.nodes[OLD].binary = self.old_binary
            c.nodes[OLD].start()
            more += c.enrol_everywhere(1, "rolled-back")
            h.wait_for(lambda: c.converged(len(ids) + len(more)), timeout=30, what="the stores to converge once more")
            self.assertEqual(c.status()[OLD]["version"], PREVIOUS_VERSION)
            # The CA is unreachable from here on: only the replicated stores can answer.
            c.emulator.ctl("set", "refuse_connections", "true")
            h.wait_for(lambda: c.everywhere(ids + more), timeout=30, what="every acknowledged ID on every node")
            self.assertEqual(c.nodes[OLD].stop(), 0)  # flushes its log
            old_log = c.nodes[OLD].log_lines()
            self.assertTrue([l for l in old_log if l.get("endpoint") == "request" and l.get("forwarded_to")],
                            "the old node forwarded its submit to a new one")
            self.assertTrue([l for l in old_log if l.get("endpoint") == "request" and l.get("forwarded_by") == "node-a"],
                            "the old node took node-a's submit to the CA")

    def test_a_node_of_an_unreadable_protocol_is_refused_and_the_others_serve_on(self):
        with h.TempRoot() as root, MixedCluster(root, self.old_binary) as c:
            ids = c.enrol_everywhere(1, "before")
            h.wait_for(lambda: c.converged(len(ids)), timeout=30, what="the stores to converge")
            # node-b comes back claiming a protocol from the future that reads nothing of today's.
            self.assertEqual(c.nodes["node-b"].stop(), 0)
            c.nodes["node-b"].start(env={"ADCSC_TEST_ONLY_CLUSTER_PROTOCOL": "9;9"})

            def refused_on_a():
                return [l for l in c.nodes["node-a"].log_lines() if l.get("event") == "peer_version_refused"]
            lines = h.wait_for(refused_on_a, timeout=30, what="node-a to refuse node-b")
            message = lines[0]["error"]
            self.assertIn("peer node-b speaks cluster protocol 9 and reads 9..9", message)
            self.assertIn("this node (node-a, adcsc ", message)
            self.assertIn("upgrade node-a to a release that reads protocol 9, or roll node-b back", message)
            # node-b refuses the others in turn, with the mirror message.
            h.wait_for(lambda: any(l.get("event") == "peer_version_refused" and l.get("peer") == "node-a"
                                   for l in c.nodes["node-b"].log_lines()), timeout=30, what="node-b to refuse node-a")

            # The other two serve on: a quorum of 2 of 3, the old node included.
            served = c.enrol_everywhere(2, "during", nodes=["node-a", OLD])
            h.wait_for(lambda: c.converged(len(ids) + len(served), nodes=["node-a", OLD]), timeout=30,
                       what="node-a and the old node to converge without node-b")

            def cluster_check():  # as of the health monitor's next probe
                status, body = get(c.ops["node-a"] + "/health/ready")
                check = next(ch for ch in json.loads(body)["checks"] if ch["name"] == "cluster")
                return (status, check) if "REFUSED FOR VERSION" in check["detail"] else None
            status, cluster = h.wait_for(cluster_check, timeout=10, what="node-a's health to name node-b")
            self.assertEqual(status, 200, cluster)
            self.assertTrue(cluster["ok"], cluster)
            self.assertIn("REFUSED FOR VERSION: peer node-b speaks cluster protocol 9", cluster["detail"])
            _, metrics = get(c.ops["node-a"] + "/metrics")
            self.assertIn('adcsc_peer_version_refused{peer="node-b"} 1', metrics)
            self.assertIn('adcsc_peer_version_refused{peer="node-c"} 0', metrics)
            self.assertIn('adcsc_peer_cluster_protocol{peer="node-b"} 9', metrics)
            out = h.run([h.ADCSC, "ctl", "status", "--config", c.nodes["node-a"].config], check=False)
            self.assertIn("node-b (127.0.0.1:", out.stdout)
            self.assertIn("REFUSES this node: peer node-a speaks cluster protocol 3", out.stdout)
            self.assertIn("REFUSED FOR VERSION: peer node-b speaks cluster protocol 9", out.stdout)

            # Rolled back (restarted without the claim), node-b is accepted again and catches up.
            self.assertEqual(c.nodes["node-b"].stop(), 0)
            c.nodes["node-b"].start()
            h.wait_for(lambda: c.converged(len(ids) + len(served)), timeout=30, what="node-b to catch up")
            self.assertEqual(c.nodes["node-a"].stop(), 0)  # flushes its log
            events = [l["event"] for l in c.nodes["node-a"].log_lines()
                      if l.get("event", "").startswith("peer_version") and l.get("peer") == "node-b"]
            # Once per change, not once per call.
            self.assertEqual(events, ["peer_version_refused", "peer_version_accepted"])
            c.nodes["node-a"].start()
            c.emulator.ctl("set", "refuse_connections", "true")
            h.wait_for(lambda: c.everywhere(ids + served), timeout=30, what="every acknowledged ID on every node")


if __name__ == "__main__":
    unittest.main()
