"""A throw-away MIT Kerberos realm on 127.0.0.1, kept in one directory: its krb5.conf and
kdc.conf, a database made with `kdb5_util create -s`, principals and keytabs made with
`kadmin.local`, and the command line and environment of `krb5kdc -n` (foreground). Who runs
the KDC decides how (deploy/quickstart.py spawns it with a pid file, tests/integration/kdc.py
keeps a Popen); wait_listening() tells either when it accepts connections.

Not thread-safe: one caller sets a realm up. Failures raise RealmError naming the command and
its output.

    realm = MitRealm(Path("/tmp/kdc"), "EXAMPLE.TEST", port=8485)
    realm.create()                                 # krb5.conf, kdc.conf, database
    realm.add_principal("svc@EXAMPLE.TEST")        # a random key
    realm.export_keytab("svc@EXAMPLE.TEST", realm.dir / "svc.keytab")
    proc = subprocess.Popen(realm.kdc_argv(), env=realm.kdc_env())
    realm.wait_listening(lambda: proc.poll() is None, timeout=20)
"""
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

KRB5KDC = "/usr/sbin/krb5kdc"
KDB5_UTIL = "/usr/sbin/kdb5_util"
KADMIN_LOCAL = "/usr/sbin/kadmin.local"
# Debian 12: krb5-kdc (krb5kdc, kdb5_util), krb5-admin-server (kadmin.local), krb5-user.
PACKAGES = "krb5-kdc krb5-admin-server krb5-user"
ADMIN_TIMEOUT_S = 60  # one kdb5_util or kadmin.local run
POLL_INTERVAL_S = 0.02  # between connection attempts while the KDC starts


class RealmError(RuntimeError):
    pass


def installed():
    """True when the MIT KDC and its administration tools are there."""
    return all(os.access(p, os.X_OK) for p in (KRB5KDC, KDB5_UTIL, KADMIN_LOCAL))


class MitRealm:
    def __init__(self, directory, realm, port, domain=None, master_password=None):
        """A realm kept in `directory` (created if missing), its KDC on 127.0.0.1:`port`.
        `domain`: a DNS domain mapped to the realm in krb5.conf (hosts outside it fall back to
        the default realm). `master_password`: the database's; random when None (the stash file
        keeps the master key, nobody needs to type it)."""
        self.dir = Path(directory)
        self.realm, self.port, self.domain = realm, port, domain
        self.master_password = master_password or secrets.token_urlsafe(24)
        self.krb5_conf = self.dir / "krb5.conf"
        self.kdc_conf = self.dir / "kdc.conf"
        self.kdc_log = self.dir / "kdc.log"

    # --- configuration -------------------------------------------------------------------
    def write_krb5_conf(self, path, port, libdefaults=""):
        """A client's krb5.conf for this realm with its KDC at 127.0.0.1:`port`. No DNS: the
        names given are the names used (no canonicalization, no reverse lookups, and a short
        name such as "localhost" is not qualified with resolv.conf's search domain).
        `libdefaults`: more [libdefaults] lines (e.g. "  kdc_timesync = 0\n")."""
        domain_realm = f"  .{self.domain} = {self.realm}\n  {self.domain} = {self.realm}\n" if self.domain else ""
        Path(path).write_text(
            "[libdefaults]\n"
            f"  default_realm = {self.realm}\n{libdefaults}"
            "  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  rdns = false\n"
            "  dns_canonicalize_hostname = false\n  qualify_shortname = \"\"\n"
            "  udp_preference_limit = 1\n  kdc_timeout = 1000\n  max_retries = 1\n"
            "[realms]\n"
            f"  {self.realm} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n"
            f"[domain_realm]\n{domain_realm}")

    def write_config(self):
        """krb5.conf (for clients and services of the realm) and kdc.conf (for the KDC)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.write_krb5_conf(self.krb5_conf, self.port)
        d, p = self.dir, self.port
        self.kdc_conf.write_text(
            f"[kdcdefaults]\n  kdc_listen = 127.0.0.1:{p}\n  kdc_tcp_listen = 127.0.0.1:{p}\n"
            f"[realms]\n  {self.realm} = {{\n"
            f"    database_name = {d / 'principal'}\n    key_stash_file = {d / 'stash'}\n"
            f"    acl_file = {d / 'kadm5.acl'}\n"
            f"    kdc_listen = 127.0.0.1:{p}\n    kdc_tcp_listen = 127.0.0.1:{p}\n"
            "    max_life = 10h\n    max_renewable_life = 7d\n"
            "    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
            "  }\n"
            f"[logging]\n  kdc = FILE:{self.kdc_log}\n")

    def create(self):
        """Writes the configuration and creates the database (with a stash file)."""
        self.write_config()
        self._run(KDB5_UTIL, "-r", self.realm, "create", "-s", "-P", self.master_password)

    # --- administration ------------------------------------------------------------------
    def kdc_env(self, base=None):
        """The environment of the KDC and the administration tools: this realm's files."""
        env = dict(os.environ if base is None else base)
        env.update(KRB5_CONFIG=str(self.krb5_conf), KRB5_KDC_PROFILE=str(self.kdc_conf))
        return env

    def _run(self, *argv):
        try:
            r = subprocess.run([str(a) for a in argv], env=self.kdc_env(), capture_output=True, text=True,
                               timeout=ADMIN_TIMEOUT_S)
        except FileNotFoundError as e:
            raise RealmError(f"{argv[0]} is missing (Debian: apt-get install {PACKAGES})") from e
        if r.returncode != 0:
            shown = " ".join(str(a) for a in argv).replace(self.master_password, "***")
            raise RealmError(f"{shown} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r.stdout

    def kadmin(self, query):
        return self._run(KADMIN_LOCAL, "-r", self.realm, "-q", query)

    def add_principal(self, name, password=None):
        """Adds `name` with `password`, or with a random key when password is None."""
        self.kadmin(f"addprinc -pw {password} {name}" if password is not None else f"addprinc -randkey {name}")

    def export_keytab(self, name, keytab, keep_key=True):
        """Writes `name`'s keys to `keytab` (mode 0600); keep_key=False gives it new random keys
        first."""
        self.kadmin(f"ktadd {'-norandkey ' if keep_key else ''}-k {keytab} {name}")
        os.chmod(keytab, 0o600)
        return Path(keytab)

    # --- the KDC process -----------------------------------------------------------------
    def kdc_argv(self):
        """krb5kdc in the foreground (-n), serving this realm only."""
        return [KRB5KDC, "-n", "-r", self.realm]

    def wait_listening(self, running, timeout):
        """Returns once 127.0.0.1:port accepts a TCP connection. Raises RealmError when
        running() turns false first (the KDC exited) or after `timeout` seconds; log() then
        says why."""
        deadline = time.monotonic() + timeout
        while True:
            if not running():
                raise RealmError("krb5kdc exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RealmError(f"krb5kdc did not listen on 127.0.0.1:{self.port} within {timeout} s")
            time.sleep(POLL_INTERVAL_S)

    def log(self, *extra):
        """The KDC's log, then the files in `extra` (e.g. where its stderr went)."""
        out = ""
        for p in (self.kdc_log, *extra):
            if Path(p).exists():
                out += Path(p).read_text(errors="replace")
        return out
