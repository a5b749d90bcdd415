"""The files in deploy/ that operators install: the systemd units pass `systemd-analyze
verify` (with the binaries this build made in place of /usr/bin, where the package puts them),
with no warning, and carry the resource bounds (no core dumps, a memory and a task limit); the
lb-agent's unit keeps it on loopback."""
import shutil
import subprocess
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "deploy" / "systemd").glob("*.service"))


class SystemdUnits(unittest.TestCase):
    @unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze is not installed")
    def test_units_verify_without_warnings(self):
        self.assertEqual([u.name for u in UNITS], ["adcsc-lb-agent.service", "adcsc-node.service"])
        with h.TempRoot() as root:
            for unit in UNITS:
                text = unit.read_text().replace("/usr/bin/adcsc", f"{h.ADCSC.parent.resolve()}/adcsc")
                local = root / unit.name
                local.write_text(text)
                out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True,
                                     text=True, timeout=60)
                ours = [line for line in (out.stdout + out.stderr).splitlines() if unit.name in line]
                self.assertEqual((out.returncode, ours), (0, []), unit.name)


    def test_units_forbid_core_dumps_and_bound_memory_and_tasks(self):
        for unit in UNITS:
            settings = [line.strip() for line in unit.read_text().splitlines() if not line.startswith("#")]
            self.assertIn("LimitCORE=0", settings, unit.name)
            self.assertTrue(any(line.startswith("MemoryMax=") for line in settings), unit.name)
            self.assertTrue(any(line.startswith("TasksMax=") for line in settings), unit.name)
        agent = (REPO / "deploy" / "systemd" / "adcsc-lb-agent.service").read_text()
        exec_start = next(line for line in agent.splitlines() if line.startswith("ExecStart="))
        self.assertIn("--listen 127.0.0.1:", exec_start, "the agent answers on loopback unless told otherwise")


if __name__ == "__main__":
    unittest.main(verbosity=2)
