"""The quickstart cluster on Kerberos, as an operator starts it: `deploy/quickstart.py
--kerberos --smoke` sets up a throw-away MIT realm (krb5kdc on --port + 42), runs the ADCS
emulator with NTLM refused, three nodes logging on with the service account's keytab, their
agents and HAProxy, then the smoke request + retrieve, `adcsc ctl ca-ping` and a kill drill.
It must pass, say the CA was reached with Kerberos, and leave no process behind (the KDC
included)."""
import os
import signal
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402
import kdc  # noqa: E402
from test_drill import QUICKSTART, free_range, pids_alive  # noqa: E402

PID_FILE_TIMEOUT_S = 60  # the quickstart makes the PKI and the realm before it starts the KDC
RUN_TIMEOUT_S = 240


def running(pid):
    """True while `pid` runs; a zombie (exited, its parent gone and init not done reaping it
    yet) does not count."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def processes_using(path):
    """PIDs of running processes whose environment names `path` (KRB5_KDC_PROFILE of a KDC)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if str(path).encode() in (proc / "environ").read_bytes() and running(int(proc.name)):
                found.append(int(proc.name))
        except OSError:
            pass  # gone meanwhile, or not ours to read
    return found


def kdc_pid(root):
    try:
        return int((root / "pids" / "kdc.pid").read_text())
    except (OSError, ValueError):
        return None  # not written yet (or no longer there)


@unittest.skipUnless(kdc.installed(), "MIT krb5kdc is not installed (deploy/install-deps)")
class QuickstartOnKerberos(unittest.TestCase):
    def test_smoke_passes_on_kerberos_and_stops_the_kdc(self):
        with h.TempRoot() as tmp:
            root = tmp / "quickstart"
            port = free_range()
            out_path = tmp / "quickstart.out"
            with open(out_path, "w") as out:
                qs = subprocess.Popen([sys.executable, str(QUICKSTART), "--dir", str(root), "--port", str(port),
                                       "--bin-dir", str(h.BIN), "--kerberos", "--smoke"], stdout=out,
                                      stderr=subprocess.STDOUT)
            try:
                # The KDC's pid, while it runs: --smoke removes the pid file when it stops it.
                h.wait_for(lambda: kdc_pid(root) is not None or qs.poll() is not None, timeout=PID_FILE_TIMEOUT_S,
                           what="the KDC's pid file")
                started_kdc = kdc_pid(root)
                self.assertIsNotNone(started_kdc, out_path.read_text())
                self.assertEqual(qs.wait(timeout=RUN_TIMEOUT_S), 0, out_path.read_text())
            finally:
                if qs.poll() is None:
                    subprocess.run([sys.executable, str(QUICKSTART), "--dir", str(root), "--port", str(port),
                                    "--down"], capture_output=True, timeout=120)
                    qs.kill()
                    qs.wait()
            text = out_path.read_text()

            # Everything stopped, the KDC included (one left behind is killed, then reported).
            leftover = processes_using(root / "kdc" / "kdc.conf")
            for pid in leftover:
                os.kill(pid, signal.SIGKILL)
            self.assertEqual(leftover, [], "krb5kdc left running")
            self.assertFalse(running(started_kdc), f"krb5kdc {started_kdc} still runs")
            self.assertEqual(pids_alive(root), [])
            self.assertRegex(text, r"quickstart: stopped .*emulator, kdc")

            # The CA was reached with Kerberos, by the smoke run's ca-ping.
            self.assertIn(f"a Kerberos KDC (QUICKSTART.TEST, 127.0.0.1:{port + 42})", text)
            self.assertIn("Authentication: kerberos (spnego) as svc-adcsc@QUICKSTART.TEST", text)
            self.assertRegex(text, r"bind \(kerberos\) at packet privacy \.\.\. OK, mechanism negotiate/kerberos")
            self.assertRegex(text, r"CA ping: OK \(\d+ ms, mechanism negotiate/kerberos\)")
            self.assertIn("smoke: request", text)
            self.assertIn("result: PASSED", text)
            # ... and the nodes did, through HAProxy: the emulator refuses NTLM, and the KDC
            # issued the service account tickets for the CA's SPN.
            self.assertIn("ntlm = false", (root / "emulator" / "emulator.toml").read_text())
            self.assertIn('auth = "kerberos"', (root / "node-a" / "node.toml").read_text())
            self.assertRegex((root / "kdc" / "kdc.log").read_text(),
                             r"TGS_REQ .* ISSUE: .* svc-adcsc@QUICKSTART\.TEST for host/localhost@QUICKSTART\.TEST")
            for keytab in ("ca-service.keytab", "svc-adcsc.keytab"):
                self.assertEqual((root / "kdc" / keytab).stat().st_mode & 0o777, 0o600, keytab)


if __name__ == "__main__":
    unittest.main(verbosity=2)
