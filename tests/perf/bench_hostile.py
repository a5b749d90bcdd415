"""Benchmark: Jamf-like request+retrieve pairs per second and their p50/p99 latency on one node
(embedded CA, default [api] limits), first on a quiet network, then while 1,000 hostile
connections are held open (a third never start TLS, the rest shake hands with an unmapped
certificate and send nothing; whatever the node closes is opened again) and a refusal flood runs
(refused requests with 8 KiB User-Agents, one per connection, as fast as the flooders can).
Prints a Markdown table; asserts nothing about time. Clients, attackers and node share this
machine's CPUs, so the attack also competes for CPU as it would not from across a network.

Usage: bench_hostile.py [--smoke | --full]   (--smoke: 100 holders, 3 s per phase, for ctest)
Environment: ADCSC_BIN_DIR (the build's bin/), as for the integration tests.
"""
import argparse
import multiprocessing as mp
import os
import ssl
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
import harness as h  # noqa: E402
import hostile  # noqa: E402


def _jamf(port, pki_dir, client_cert, client_key, seconds, out):
    """One Jamf-like client: pairs on a new connection each, for `seconds`; puts its latencies."""
    import http.client
    import json
    ctx = ssl.create_default_context(cafile=str(Path(pki_dir) / "adcs-proxy-ca.pem"))
    ctx.load_cert_chain(str(client_cert), str(client_key))
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            csr = h.make_csr_b64(f"bench-{mp.current_process().pid}-{i}")
            i += 1
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=30)
            conn.request("POST", "/api/v1/certificate/request",
                         json.dumps({"pkcs10": csr, "template": "JamfDevice", "config": {"dc": h.DC, "ca": h.CA}}),
                         {"Content-Type": "application/json", "User-Agent": "Java-SDK"})
            body = json.loads(conn.getresponse().read())
            conn.close()
            conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=30)
            conn.request("POST", "/api/v1/certificate/retrieve",
                         json.dumps({"request-id": body["request-id"], "config": {"dc": h.DC, "ca": h.CA}}),
                         {"Content-Type": "application/json", "User-Agent": "Java-SDK"})
            answer = json.loads(conn.getresponse().read())
            conn.close()
            if answer.get("request-status", {}).get("status") != "CR_DISP_ISSUED":
                failures += 1
                continue
            latencies.append(time.monotonic() - started)
        except Exception:  # noqa: BLE001 — a failed pair is counted, the run goes on
            failures += 1
    out.put((latencies, failures))


def cpu_seconds(pid=None):
    """CPU time used so far: by process `pid` (user + system), or by the whole machine (busy time
    over all cores) when pid is None."""
    tick = os.sysconf("SC_CLK_TCK")
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in cpu]
    return (sum(values) - values[3] - values[4]) / tick  # all but idle and iowait


def measure(node, pki, clients, seconds):
    out = mp.Queue()
    procs = [mp.Process(target=_jamf, args=(node.port, pki.dir, pki.client_cert, pki.client_key, seconds, out))
             for _ in range(clients)]
    node_cpu, all_cpu, t0 = cpu_seconds(node.proc.pid), cpu_seconds(), time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    wall = time.monotonic() - t0
    node_cores = (cpu_seconds(node.proc.pid) - node_cpu) / wall
    all_cores = (cpu_seconds() - all_cpu) / wall
    for p in procs:
        p.join()
    latencies = sorted(l for r in results for l in r[0])
    failures = sum(r[1] for r in results)
    if not latencies:
        return {"pairs": 0, "rate": 0.0, "p50": float("nan"), "p99": float("nan"), "failures": failures,
                "node_cores": node_cores, "all_cores": all_cores}
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"pairs": len(latencies), "rate": len(latencies) / seconds, "p50": statistics.median(latencies) * 1000,
            "p99": p99 * 1000, "failures": failures, "node_cores": node_cores, "all_cores": all_cores}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args()
    holders, seconds, clients = (100, 3, 2) if args.smoke else (1000, 20, 4)
    with h.TempRoot() as root:
        pki = h.Pki(root)
        cert, key = hostile.make_stranger(root)
        node = h.Node(root, pki).start()
        try:
            measure(node, pki, clients, 1)  # warm-up
            quiet = measure(node, pki, clients, seconds)
            attack = hostile.HostileLoad(node.port, cert, key, holders=holders, per_source=32, flood=10**9,
                                         flood_sources=8, flood_procs=2, seconds=seconds * 4 + 120).start()
            try:
                h.wait_for(lambda: attack.opened.value >= holders, timeout=120, what="the hostile connections")
                flood_before = attack.attempts.value
                t0 = time.monotonic()
                hostile_run = measure(node, pki, clients, seconds)
                flood_rate = (attack.attempts.value - flood_before) / (time.monotonic() - t0)
                held = attack.opened.value
            finally:
                attack.stop()
        finally:
            node.stop()
    print(f"\n{clients} Jamf-like clients, a new TLS connection per call, {seconds} s per phase\n")
    print(f"| network | pairs/s | p50 ms | p99 ms | failed pairs | node CPU (cores) | machine CPU (of {os.cpu_count()}) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in (("quiet", quiet), (f"{holders} hostile connections + refusal flood", hostile_run)):
        print(f"| {name} | {r['rate']:.1f} | {r['p50']:.0f} | {r['p99']:.0f} | {r['failures']} | "
              f"{r['node_cores']:.2f} | {r['all_cores']:.2f} |")
    print(f"\nflood: {flood_rate:.0f} refused-request attempts/s during the hostile phase; holders opened "
          f"{held} connections in all (the node closes the oldest unverified ones to make room)")
    return 0 if hostile_run["failures"] == 0 and quiet["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
