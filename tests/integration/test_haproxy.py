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
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
from test_ops import ops_section, pin_of, set_mode, LB_AGENT  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TCP_CFG = REPO / "deploy" / "haproxy" / "adcsc-tcp.cfg"
TLS_CFG = REPO / "deploy" / "haproxy" / "adcsc-tls.cfg"
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


class ClusterBehindHAProxy:
    """Three clustered nodes with ops listeners and agents, one ADCS emulator, and HAProxy
    with `config`; `extra_env` adds to the configuration's environment, `extra_pins` to
    the client certificates the nodes accept."""

    def __init__(self, root, config, pki=None, extra_env=None, extra_pins=(), api_extra=""):
        self.root, self.config, self.pki = root, config, pki
        self.extra_env, self.extra_pins, self.api_extra = extra_env or {}, extra_pins, api_extra

    def __enter__(self):
        root = self.root
        self.pki = pki = self.pki or h.Pki(root)
        self.admin_cert, self.admin_key = pki.issue_client(root, "ops-admin")
        self.emulator = h.Emulator(root).start()
        self.nodes, self.agents, self.proxy = {}, {}, None
        try:
            sections = h.cluster_sections(root, NODES)
            self.ops_ports = {n: h.free_port() for n in NODES}
            agent_ports = {n: h.free_port() for n in NODES}
            for n in NODES:
                self.nodes[n] = h.Node(root, pki, node_id=n, ca_section=h.icpr_ca_section(self.emulator),
                                       extra=sections[n] + ops_section(self.ops_ports[n], admin_ca=pki.server_ca,
                                                                       admin_pins=[pin_of(self.admin_cert)]),
                                       extra_pins=self.extra_pins, api_extra=self.api_extra).start()
                self.agents[n] = subprocess.Popen(
                    [str(LB_AGENT), "--node-url", f"https://localhost:{self.ops_ports[n]}", "--ca-file",
                     str(pki.server_ca), "--listen", f"127.0.0.1:{agent_ports[n]}", "--interval-ms", "200",
                     "--stale-ms", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.lb_port = h.free_port()
            env = {"ADCSC_BIND": f"127.0.0.1:{self.lb_port}", "ADCSC_OPS_CA": str(pki.server_ca),
                   "ADCSC_OPS_SNI": "localhost", **self.extra_env}
            for i, n in enumerate(NODES, 1):
                env[f"ADCSC_NODE{i}"] = f"127.0.0.1:{self.nodes[n].port}"
                env[f"ADCSC_OPS{i}"] = str(self.ops_ports[n])
                env[f"ADCSC_AGENT{i}"] = str(agent_ports[n])
            self.proxy = HAProxy(root, self.config, env)
            h.wait_for(lambda: set(self.proxy.status().values()) == {"UP"}, timeout=30, what="all three nodes UP")
            self.lb = h.Node.__new__(h.Node)  # the load balancer, addressed like a node by the helpers
            self.lb.port, self.lb.pki = self.lb_port, pki
            return self
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        if self.proxy:
            self.proxy.stop()
        for a in self.agents.values():
            a.terminate()
            a.wait(timeout=10)
        for n in self.nodes.values():
            n.stop()
        self.emulator.stop()

    def served_by(self):
        """Submits each node has logged (its JSON log is written in the background)."""
        return {n: sum(1 for l in self.nodes[n].log_lines() if l.get("event") == "api" and l.get("endpoint") == "request")
                for n in NODES}

    def set_mode(self, command, node):
        return set_mode(command, self.ops_ports[node], self.admin_cert, self.admin_key, self.pki)


class TcpPassThrough(unittest.TestCase):
    def test_round_robin_drain_kill_and_resume(self):
        with h.TempRoot() as root, ClusterBehindHAProxy(root, TCP_CFG) as c:
            proxy, served_by = c.proxy, c.served_by

            def traffic(count, tag):
                ids = []
                for i in range(count):
                    st, body = h.submit(c.lb, h.make_csr_b64(f"{tag}-{i}"), dc=h.ICPR_DC)
                    self.assertEqual(st, 200, body)
                    ids.append(body["request-id"])
                return ids

            # Round-robin: nine submits, three per node.
            traffic(9, "rr")
            h.wait_for(lambda: served_by() == {n: 3 for n in NODES}, timeout=10, what="3 submits per node")

            # Drain node-b: out of rotation within an agent interval, its answers unchanged.
            out = c.set_mode("drain", "node-b")
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
            c.nodes["node-c"].kill9()
            started = time.monotonic()
            h.wait_for(lambda: proxy.status()["node3"].startswith("DOWN"), timeout=10, what="node3 DOWN")
            down_s = time.monotonic() - started
            self.assertEqual(len(traffic(4, "after-kill")), 4)  # everything goes to node-a now, and succeeds

            # Resume node-b: back in rotation.
            out = c.set_mode("resume", "node-b")
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


class TlsTermination(unittest.TestCase):
    def test_kill9_under_steady_load_fails_no_request_and_duplicates_none(self):
        """kill -9 of a node under steady load through HAProxy terminating TLS with L7 retries:
        no client request fails and no submit reaches the CA twice."""
        with h.TempRoot() as root:
            pki = h.Pki(root)
            # HAProxy's identities: the server certificate Jamf Pro sees (the nodes' own here),
            # and its own client certificate for the nodes, pinned on them.
            lb_cert = root / "haproxy-server.pem"
            lb_cert.write_text(Path(pki.server_ca).read_text() + Path(pki.server_key).read_text())
            lb_client, lb_client_key = pki.issue_client(root, "haproxy")
            lb_client_pem = root / "haproxy-client.pem"
            lb_client_pem.write_text(Path(lb_client).read_text() + Path(lb_client_key).read_text())
            pins = root / "jamf-pins.lst"
            pins.write_text(pki.pin + "\n")
            env = {"ADCSC_LB_CERT": str(lb_cert), "ADCSC_CLIENT_CA": str(pki.server_ca), "ADCSC_CLIENT_PINS": str(pins),
                   "ADCSC_NODE_CA": str(pki.server_ca), "ADCSC_NODE_SNI": "localhost",
                   "ADCSC_LB_CLIENT": str(lb_client_pem)}
            with ClusterBehindHAProxy(root, TLS_CFG, pki=pki, extra_env=env, extra_pins=[pin_of(lb_client)],
                                      api_extra=f'trusted_proxy_pins = ["{pin_of(lb_client)}"]') as c:
                # An unpinned client is refused by HAProxy itself.
                other_cert, other_key = pki.issue_client(root, "not-jamf")
                st, _ = h.call(c.lb, "GET", "/api/v1/version", ctx=h.ssl_context(pki, cert=other_cert, key=other_key))
                self.assertEqual(st, 403)

                # Steady Jamf-like load from four clients; node-c is killed part-way through.
                failures, acked, lock = [], [], threading.Lock()
                stop_at = time.monotonic() + 6
                killed = threading.Event()

                def client(k):
                    i = 0
                    while time.monotonic() < stop_at and i < 400:
                        cn = f"steady-{k}-{i}"
                        i += 1
                        try:
                            st, body = h.submit(c.lb, h.make_csr_b64(cn), dc=h.ICPR_DC)
                            # A CA error is a 200 with INTERNAL_ERROR in the body (api.md, "Errors").
                            if st != 200 or body["request-status"]["status"] != "CR_DISP_ISSUED":
                                raise RuntimeError(f"submit {st} {body}")
                            rid = body["request-id"]
                            st, body = h.retrieve(c.lb, rid, dc=h.ICPR_DC)
                            if st != 200 or body["request-status"]["status"] != "CR_DISP_ISSUED":
                                raise RuntimeError(f"retrieve {st} {body}")
                            with lock:
                                acked.append((cn, rid))
                        except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                            with lock:
                                failures.append(f"{cn}: {e!r} (after kill: {killed.is_set()})")
                threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
                for t in threads:
                    t.start()
                h.wait_for(lambda: len(acked) >= 100, timeout=30, what="the load to be under way")
                c.nodes["node-c"].kill9()
                killed.set()
                for t in threads:
                    t.join(timeout=60)
                requests = c.emulator.ctl("list")["requests"]
                per_subject = {}
                for r in requests:
                    per_subject[r["subject"]] = per_subject.get(r["subject"], 0) + 1
                duplicates = sum(n - 1 for subj, n in per_subject.items() if "steady-" in subj and n > 1)
                print(f"\nhaproxy (tls termination, L7 retries): {len(acked)} submit+retrieve pairs, "
                      f"{len(failures)} failed, {duplicates} duplicate CA requests, node-c killed after 100 pairs",
                      file=sys.stderr)
                self.assertGreater(len(acked), 100)
                self.assertEqual(failures, [])
                # A submit the killed node had sent to the CA but not recorded on a peer yet is
                # found at the CA by the node HAProxy retries on (it was announced to every peer
                # before the CA call): no CSR reaches the CA twice.
                self.assertEqual(duplicates, 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
