"""The files in deploy/ that operators install: the systemd units pass `systemd-analyze
verify` (with the binaries this build made in place of /usr/local/bin), with no warning."""
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
                text = unit.read_text().replace("/usr/local/bin/", f"{h.ADCSC.parent.resolve()}/")
                local = root / unit.name
                local.write_text(text)
                out = subprocess.run(["systemd-analyze", "verify", "--man=no", str(local)], capture_output=True,
                                     text=True, timeout=60)
                ours = [line for line in (out.stdout + out.stderr).splitlines() if unit.name in line]
                self.assertEqual((out.returncode, ours), (0, []), unit.name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
