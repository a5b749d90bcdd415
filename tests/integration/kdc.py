"""A throw-away MIT Kerberos realm for integration tests: krb5kdc on 127.0.0.1.

The realm itself (krb5.conf and kdc.conf in a temp dir, `kdb5_util create -s`, principals and
keytabs with `kadmin.local`, `krb5kdc -n` with KRB5_CONFIG / KRB5_KDC_PROFILE pointing at
those files) is deploy/mit_realm.py, which the quickstart uses as well; this fixture adds a
free port, the KDC as a child process, and clean-up. started() waits until the KDC accepts
TCP connections (a deadline, no fixed sleeps), stop() ends it and waits. Nothing assumes a
running service. Processes that should use the realm get client_env().
Mirrors tests/testing/mit_kdc.h (the C++ fixture of the unit tests).

restart(clock_offset="+1h") runs krb5kdc with libfaketime preloaded (Debian's libfaketime),
so the KDC's clock is that far from everyone else's: a clock-skew test that leaves the host's
clock alone. (Preloaded directly rather than through the faketime command, which forks: stop()
must signal krb5kdc itself.)

Usage:
    with Kdc() as kdc:                    # starts; stops on exit
        kdc.add_principal("svc@ADCSC.TEST", password="pw")
        kdc.export_keytab("svc@ADCSC.TEST", kdc.dir / "svc.keytab")
        subprocess.run(["kinit", ...], env=kdc.client_env())

Run this file to check the fixture itself (kinit with a password and a keytab, then stop).
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import mit_realm  # noqa: E402

KRB5KDC = mit_realm.KRB5KDC
KDB5_UTIL = mit_realm.KDB5_UTIL
KADMIN_LOCAL = mit_realm.KADMIN_LOCAL
# Debian's libfaketime, under the multiarch directory of this machine.
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))),
                   "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
START_TIMEOUT = 20.0
MASTER_PASSWORD = "adcsc-test-master"
installed = mit_realm.installed


def faketime_installed():
    """Whether restart(clock_offset=...) can run (Debian's libfaketime; deploy/install-deps)."""
    return os.access(LIBFAKETIME, os.R_OK)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kdc:
    def __init__(self, realm="ADCSC.TEST", domain="adcsc.test"):
        self.realm, self.domain = realm, domain
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="adcsc_kdc_"))
        self.proc = None
        self._realm = mit_realm.MitRealm(self.dir, realm, self.port, domain=domain, master_password=MASTER_PASSWORD)
        self.krb5_conf = self._realm.krb5_conf
        self.kdc_conf = self._realm.kdc_conf

    def client_env(self, ccache=None):
        """Environment for a client of this realm: its krb5.conf, a private ccache and rcache dir."""
        env = dict(os.environ)
        env.update(KRB5_CONFIG=str(self.krb5_conf),
                   KRB5CCNAME="FILE:" + str(ccache or self.dir / "client.ccache"),
                   KRB5RCACHEDIR=str(self.dir))
        return env

    def unreachable_krb5_conf(self):
        """A krb5.conf for the same realm whose KDC port nobody listens on."""
        path = self.dir / "krb5-unreachable.conf"
        self._realm.write_krb5_conf(path, _free_port())
        return path

    def krb5_conf_variant(self, name, **libdefaults):
        """A krb5.conf for this realm with more [libdefaults] (e.g. kdc_timesync=0)."""
        path = self.dir / f"krb5-{name}.conf"
        self._realm.write_krb5_conf(path, self.port, "".join(f"  {k} = {v}\n" for k, v in libdefaults.items()))
        return path

    # --- realm administration ------------------------------------------------------------
    def kadmin(self, query):
        return self._realm.kadmin(query)

    def add_principal(self, name, password=None):
        """Adds `name` with `password`, or with a random key when password is None."""
        self._realm.add_principal(name, password)

    def export_keytab(self, name, keytab, keep_key=True):
        """Writes `name`'s keys to `keytab`; keep_key=False gives it new random keys first."""
        return self._realm.export_keytab(name, keytab, keep_key)

    # --- process -------------------------------------------------------------------------
    def start(self):
        self._realm.create()
        return self.restart()

    def set_max_ticket_life(self, name, seconds):
        """Tickets issued to (or for) `name` last at most `seconds` (kadmin modprinc -maxlife)."""
        self.kadmin(f'modprinc -maxlife "{seconds} seconds" {name}')

    def restart(self, clock_offset=None):
        """Starts krb5kdc again (same database); clock_offset (e.g. "+1h"): under libfaketime."""
        err = open(self.dir / "kdc.stderr", "ab")
        env = self._realm.kdc_env()
        if clock_offset is not None:
            if not faketime_installed():
                raise RuntimeError(f"clock_offset needs {LIBFAKETIME} (Debian package libfaketime; deploy/install-deps)")
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME=clock_offset, FAKETIME_NO_CACHE="1")
        self.proc = subprocess.Popen(self._realm.kdc_argv(), env=env, stdout=err, stderr=err)
        err.close()
        try:
            self._realm.wait_listening(lambda: self.proc.poll() is None, START_TIMEOUT)
        except mit_realm.RealmError as e:
            self.stop()
            raise RuntimeError(f"{e}: {self.log()}") from e
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        return self._realm.log(self.dir / "kdc.stderr")

    def issued_tgts(self, name):
        """How many TGTs the KDC has issued to `name` so far (AS_REQ ... ISSUE lines of its log)."""
        return sum(1 for line in self.log().splitlines()
                   if "AS_REQ" in line and "ISSUE:" in line and f" {name} for krbtgt/" in line)

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _self_test():
    if not installed():
        print(f"SKIP: MIT krb5kdc is not installed ({KRB5KDC})")
        return 0
    with Kdc() as kdc:
        kdc.add_principal("alice@ADCSC.TEST", password="Alice-Pass-1")
        keytab = kdc.export_keytab("alice@ADCSC.TEST", kdc.dir / "alice.keytab")
        env = kdc.client_env()
        subprocess.run(["kinit", "alice@ADCSC.TEST"], input="Alice-Pass-1\n", text=True, env=env, check=True,
                       capture_output=True, timeout=30)
        subprocess.run(["kinit", "-k", "-t", str(keytab), "alice@ADCSC.TEST"], env=env, check=True,
                       capture_output=True, timeout=30)
        klist = subprocess.run(["klist"], env=env, check=True, capture_output=True, text=True, timeout=30).stdout
        assert "alice@ADCSC.TEST" in klist and "krbtgt/ADCSC.TEST@ADCSC.TEST" in klist, klist
        env["KRB5_CONFIG"] = str(kdc.unreachable_krb5_conf())
        r = subprocess.run(["kinit", "-k", "-t", str(keytab), "alice@ADCSC.TEST"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode != 0 and "Cannot contact any KDC" in r.stderr, r.stderr
        assert kdc.issued_tgts("alice@ADCSC.TEST") == 2, kdc.log()
        if faketime_installed():  # the KDC an hour ahead: a client that keeps its own clock refuses it
            kdc.stop()
            kdc.restart(clock_offset="+1h")
            env["KRB5_CONFIG"] = str(kdc.krb5_conf_variant("strict", kdc_timesync=0))
            r = subprocess.run(["kinit", "-k", "-t", str(keytab), "alice@ADCSC.TEST"], env=env, capture_output=True,
                               text=True, timeout=30)
            assert r.returncode != 0 and "Clock skew too great" in r.stderr, r.stderr
        proc = kdc.proc
    assert proc.poll() is not None, "krb5kdc still running after close()"
    print("kdc.py: realm up, kinit with password and keytab, unreachable KDC reported, "
          f"{'clock skew under libfaketime reported, ' if faketime_installed() else ''}stopped")
    return 0


if __name__ == "__main__":
    sys.exit(_self_test())
