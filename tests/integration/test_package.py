"""The Debian package (deploy/package): what it holds and with which modes, then a real
install on this machine: dpkg -i creates the adcsc user and directories and starts nothing, the
example configuration passes `adcsc node --check` (run as the service user) once `adcsc pki init`
made its files and the pin is pasted in, an operator's changes survive a reinstall, and a purge
removes the package but not the operator's files.

It installs into /usr, /etc, /var and creates a system user, so it refuses to run (skips) unless
it runs as root with dpkg, and nothing of an adcsc install is on the machine before (the package,
the user or group, /etc/adcsc, /var/lib/adcsc, /var/log/adcsc). It leaves the machine as it found
it: purge, then what a purge keeps on purpose (the operator's files, the store, the user)."""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import harness as h  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BUILD = h.BIN.resolve().parent
ETC, STATE, LOGS = Path("/etc/adcsc"), Path("/var/lib/adcsc"), Path("/var/log/adcsc")
UNITS = ["adcsc-lb-agent.service", "adcsc-node.service"]
ENV = dict(os.environ, DEBIAN_FRONTEND="noninteractive")


def run(args, check=True):
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, env=ENV)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


def package_installed():
    out = run(["dpkg-query", "-W", "-f=${Status}", "adcsc"], check=False)
    return out.returncode == 0 and "installed" in out.stdout.split()


def exists_user_or_group():
    for lookup in (pwd.getpwnam, grp.getgrnam):
        try:
            lookup("adcsc")
            return True
        except KeyError:
            pass
    return False


def why_not_here():
    """A reason to skip, or None."""
    if os.geteuid() != 0:
        return "installs a package: needs root"
    if not shutil.which("dpkg") or not shutil.which("dpkg-deb"):
        return "needs dpkg (Debian)"
    cache = BUILD / "CMakeCache.txt"
    if not cache.exists():
        return f"{BUILD} is not a CMake build directory (ADCSC_BIN_DIR's parent)"
    if re.search(r"^ADCSC_(SANITIZE|TSAN|FUZZ):BOOL=ON$", cache.read_text(), re.M):
        return f"{BUILD} is a sanitizer build; the package is made from a normal one"
    if package_installed():
        return "a package named adcsc is installed here; this test never touches an operator's install"
    if exists_user_or_group():
        return "a user or group adcsc exists here; this test would have to remove it afterwards"
    for d in (ETC, STATE, LOGS):
        if d.exists():
            return f"{d} exists; this test would have to remove it afterwards"
    return None


def mode_owner(path):
    st = os.stat(path)
    return (oct(stat.S_IMODE(st.st_mode)), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name)


class DebianPackage(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        reason = why_not_here()
        if reason:
            raise unittest.SkipTest(reason)
        cls.out = Path(tempfile.mkdtemp(prefix="adcsc-package-"))
        built = run([REPO / "deploy" / "package", "--build-dir", BUILD, "--out", cls.out])
        cls.deb = Path(built.stdout.strip().splitlines()[-1])
        cls.version = run(["dpkg-deb", "-f", cls.deb, "Version"]).stdout.strip()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.out, ignore_errors=True)

    def test_package_is_named_by_version_and_holds_what_a_node_host_needs(self):
        project_version = re.search(r"project\(adcsc VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())[1]
        self.assertEqual(self.version, project_version)
        arch = run(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(self.deb.name, f"adcsc_{project_version}_{arch}.deb")

        entries = {}
        for line in run(["dpkg-deb", "-c", self.deb]).stdout.splitlines():
            mode, owner, _size, _date, _time, path = line.split(None, 5)
            entries[path[1:].rstrip("/") or "/"] = (mode, owner)
        files = {
            "/usr/bin/adcsc": "-rwxr-xr-x",
            "/usr/bin/adcsc-lb-agent": "-rwxr-xr-x",
            "/lib/systemd/system/adcsc-node.service": "-rw-r--r--",
            "/lib/systemd/system/adcsc-lb-agent.service": "-rw-r--r--",
            "/etc/logrotate.d/adcsc": "-rw-r--r--",
            "/etc/adcsc/node.toml.example": "-rw-r--r--",
            "/usr/share/doc/adcsc/operations.md": "-rw-r--r--",
            "/usr/share/doc/adcsc/configuration.md": "-rw-r--r--",
        }
        for path, mode in files.items():
            self.assertEqual(entries.get(path), (mode, "root/root"), path)
        self.assertTrue(all(owner == "root/root" for _, owner in entries.values()))
        self.assertFalse([p for p in entries if "emulator" in p], "the ADCS emulator is a test tool")
        self.assertNotIn("/etc/adcsc/node.toml", entries, "the real configuration is the operator's")
        # Every command's --help, the subcommands found by walking them.
        helps = {Path(p).name for p in entries if p.startswith("/usr/share/doc/adcsc/commands/")}
        for name in ["adcsc", "adcsc-node", "adcsc-pki", "adcsc-pki-init", "adcsc-pki-cluster", "adcsc-client-request",
                     "adcsc-ctl", "adcsc-ctl-ca-ping", "adcsc-ctl-drain", "adcsc-drill", "adcsc-lb-agent"]:
            self.assertIn(f"{name}.txt", helps)

        control = run(["dpkg-deb", "-I", self.deb]).stdout
        for script in ["postinst", "prerm", "postrm"]:
            self.assertRegex(control, rf"\d+ bytes,\s+\d+ lines\s+\*\s+{script}\s", f"{script} is executable")
        conffiles = run(["dpkg-deb", "-I", self.deb, "conffiles"]).stdout.split()
        self.assertEqual(sorted(conffiles), ["/etc/adcsc/node.toml.example", "/etc/logrotate.d/adcsc"])
        depends = run(["dpkg-deb", "-f", self.deb, "Depends"]).stdout
        for dep in ["adduser", "libssl3", "libgrpc++", "libsqlite3-0", "libgssapi-krb5-2"]:
            self.assertIn(dep, depends, "Depends comes from dpkg-shlibdeps")

        # The units run the packaged binaries (the node as the package's user).
        with h.TempRoot() as root:
            run(["dpkg-deb", "-x", self.deb, root])
            for unit in UNITS:
                text = (root / "lib/systemd/system" / unit).read_text()
                for cmd in re.findall(r"^Exec\w*=(\S+)", text, re.M):
                    self.assertIn(cmd, entries, f"{unit}: {cmd}")
            node_unit = (root / "lib/systemd/system/adcsc-node.service").read_text()
            self.assertIn("\nUser=adcsc\n", node_unit)
            self.assertIn("--config /etc/adcsc/node.toml", node_unit)
            agent_unit = (root / "lib/systemd/system/adcsc-lb-agent.service").read_text()
            self.assertIn("--ca-file /etc/adcsc/pki/adcs-proxy-ca.pem", agent_unit)

    def test_install_configure_reinstall_and_purge(self):
        try:
            self.install_configure_reinstall_and_purge()
        finally:
            self.restore_machine()
        self.assertIsNone(why_not_here(), "the machine is as it was")

    def install_configure_reinstall_and_purge(self):
        installed = run(["dpkg", "-i", self.deb])
        self.assertIn("no service was enabled or started", installed.stdout)

        # The user and the directories.
        user = pwd.getpwnam("adcsc")
        self.assertLess(user.pw_uid, 1000, "a system user")
        self.assertEqual((user.pw_dir, user.pw_shell), (str(STATE), "/usr/sbin/nologin"))
        self.assertEqual(grp.getgrgid(user.pw_gid).gr_name, "adcsc")
        self.assertEqual(mode_owner(ETC), ("0o750", "root", "adcsc"))
        self.assertEqual(mode_owner(STATE), ("0o700", "adcsc", "adcsc"))
        self.assertEqual(mode_owner(LOGS), ("0o750", "adcsc", "adcsc"))
        self.assertFalse(Path("/usr/bin/adcs-emulator").exists())
        self.assertFalse(list(Path("/etc/systemd/system").glob("*.wants/adcsc-*")), "nothing is enabled")
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "adcsc"]).stdout
        self.assertIn("/etc/adcsc/node.toml.example", conffiles)
        self.assertEqual(run(["/usr/bin/adcsc", "--version"]).stdout.strip(), self.version)
        self.assertIn("--node-url", run(["/usr/bin/adcsc-lb-agent", "--help"]).stdout)

        # As it ships, the example names files that do not exist yet and a placeholder pin.
        raw = run(["runuser", "-u", "adcsc", "--", "/usr/bin/adcsc", "node", "--config", ETC / "node.toml.example",
                   "--check"], check=False)
        self.assertEqual(raw.returncode, 2, raw.stderr)
        self.assertIn("api.client_pins[0]", raw.stderr)

        # Configure it as operations.md says: the PKI, the keytab, the pin; check as the service runs.
        pki = ETC / "pki"
        run(["/usr/bin/adcsc", "pki", "init", "--fqdn", "adcsc.example.com", "--jamf-pro-dn", "jamf.example.com",
             "--out", pki])
        run(["chown", "-R", "adcsc:adcsc", pki])
        pki.chmod(0o750)
        keytab = ETC / "svc-adcsc.keytab"  # --check needs it present and 0600; it is read at the first CA call
        keytab.touch(mode=0o600)
        os.chown(keytab, pwd.getpwnam("adcsc").pw_uid, grp.getgrnam("adcsc").gr_gid)
        pin = (pki / "client-cert.pin").read_text().strip()
        config = ETC / "node.toml"
        config.write_text((ETC / "node.toml.example").read_text().replace("PASTE-client-cert.pin-HERE", pin))
        os.chown(config, 0, grp.getgrnam("adcsc").gr_gid)
        config.chmod(0o640)
        check = run(["runuser", "-u", "adcsc", "--", "/usr/bin/adcsc", "node", "--config", config, "--check"],
                    check=False)
        self.assertEqual((check.returncode, check.stdout.strip()), (0, f"{config}: configuration OK"), check.stderr)
        self.assertEqual(mode_owner(STATE / "store.db")[1], "adcsc")

        # A reinstall keeps the operator's change to the shipped example (--force-confold) and
        # never touches the real configuration or the key material.
        example = ETC / "node.toml.example"
        example.write_text(example.read_text() + "# changed by the operator\n")
        config_before = (config.read_bytes(), config.stat().st_mtime_ns, mode_owner(config))
        key_before = (pki / "server-key.pem").read_bytes()
        run(["dpkg", "-i", "--force-confold", self.deb])
        self.assertTrue(example.read_text().endswith("# changed by the operator\n"))
        self.assertEqual((config.read_bytes(), config.stat().st_mtime_ns, mode_owner(config)), config_before)
        self.assertEqual((pki / "server-key.pem").read_bytes(), key_before)
        self.assertEqual(mode_owner(ETC), ("0o750", "root", "adcsc"))
        self.assertEqual(mode_owner(STATE), ("0o700", "adcsc", "adcsc"))
        check = run(["runuser", "-u", "adcsc", "--", "/usr/bin/adcsc", "node", "--config", config, "--check"],
                    check=False)
        self.assertEqual(check.returncode, 0, check.stderr)

        # Purge: the package and its shipped files go; the operator's files, the store and the user stay.
        run(["dpkg", "--purge", "adcsc"])
        self.assertFalse(package_installed())
        for gone in ["/usr/bin/adcsc", "/usr/bin/adcsc-lb-agent", "/lib/systemd/system/adcsc-node.service",
                     "/etc/logrotate.d/adcsc", str(example), str(LOGS), "/usr/share/doc/adcsc"]:
            self.assertFalse(Path(gone).exists(), gone)
        self.assertEqual(config.read_bytes(), config_before[0])
        self.assertTrue((STATE / "store.db").exists())
        pwd.getpwnam("adcsc")

    def restore_machine(self):
        """Undoes everything: why_not_here() made sure none of it existed before."""
        if package_installed() or run(["dpkg-query", "-W", "adcsc"], check=False).returncode == 0:
            run(["dpkg", "--purge", "adcsc"], check=False)
        for d in (ETC, STATE, LOGS):
            shutil.rmtree(d, ignore_errors=True)
        if any(u.pw_name == "adcsc" for u in pwd.getpwall()):
            run(["userdel", "adcsc"], check=False)
        if any(g.gr_name == "adcsc" for g in grp.getgrall()):
            run(["groupdel", "adcsc"], check=False)


if __name__ == "__main__":
    unittest.main(verbosity=2)
