"""Test harness for integration tests: real `adcsc` processes on loopback.

Starts nodes from the build tree, makes PKI with `adcsc pki init`, and talks to the API with
Python's ssl module (so the client is not our own code) or with curl. Every wait has a
deadline; nothing sleeps for a fixed time to let something happen.

The nodes reach the ADCS emulator with NTLM, or with Kerberos through a throw-away MIT realm
(Realm). ADCSC_TEST_CA_AUTH=kerberos in the environment switches every Emulator and
icpr_ca_section() of the process to Kerberos (one shared realm; the emulator then refuses
NTLM, so a passing test did use Kerberos); the default is ntlm.
"""
import atexit
import datetime
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kdc  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ADCSC_BIN_DIR", REPO / "build" / "bin"))
ADCSC = BIN / "adcsc"
EMULATOR = BIN / "adcs-emulator"
DC, CA = "ca1.example.test", "Example-Issuing-CA"


# Ports this process reserved (free_port): the lock files stay open, and locked, until it exits.
_PORT_LOCKS = []
PORT_LOCK_DIR = Path(tempfile.gettempdir()) / "adcsc-test-ports"


def free_port():
    """A TCP port on 127.0.0.1 for a listener this test starts later. Drawn from 10000-19999:
    below the kernel's ephemeral range (no client connection takes it meanwhile, and no other
    process's bind to port 0 hands it out again) and below the drills' quickstart blocks
    (20000-32000). Reserved until this process exits by an flock on
    $TMPDIR/adcsc-test-ports/<port>.lock, which the C++ tests' FreePort (tests/testing/
    free_port.h) takes too, so concurrent tests never pick the same port; and checked free."""
    PORT_LOCK_DIR.mkdir(mode=0o1777, exist_ok=True)
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(10000, 20000)
        lock = open(PORT_LOCK_DIR / f"{port}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            lock.close()
            continue
        _PORT_LOCKS.append(lock)
        return port
    raise RuntimeError("free_port: no free port in 10000-19999")


def wait_for(predicate, timeout=20.0, what="condition"):
    """Polls predicate() until true or the deadline passes (then raises)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def run(args, check=True, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check, timeout=120, **kw)


class Pki:
    """Output of `adcsc pki init`, plus the client key extracted for Python's ssl module."""

    def __init__(self, root: Path, name="pki"):
        self.dir = root / name
        self.password_file = root / f"{name}.pass"
        run([ADCSC, "pki", "init", "--fqdn", "localhost", "--jamf-pro-dn", "jamf.example.test", "--out", self.dir,
             "--password-file", self.password_file])
        self.password = self.password_file.read_text().strip()
        self.server_ca = self.dir / "adcs-proxy-ca.pem"
        self.server_key = self.dir / "server-key.pem"
        self.pfx = self.dir / "client-cert.pfx"
        self.client_cert = self.dir / "client-cert.pem"
        self.pin = (self.dir / "client-cert.pin").read_text().strip()
        self.client_key = root / f"{name}-client-key.pem"
        run(["openssl", "pkcs12", "-in", self.pfx, "-nocerts", "-nodes", "-passin", f"pass:{self.password}",
             "-out", self.client_key])
        os.chmod(self.client_key, 0o600)

    def issue_client(self, out_dir: Path, name: str, not_before=None, not_after=None, signer_key=None,
                     signer_cert=None):
        """Issues a client certificate signed by the server identity (or another signer)."""
        with open(signer_key or self.server_key, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(signer_cert or self.server_ca, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
                .not_valid_after(not_after or now + datetime.timedelta(days=30))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


def make_csr_b64(cn="device-1", key=None, rsa_bits=None):
    if key is None:
        key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"{cn}.example.test")]), critical=False)
           .sign(key, hashes.SHA256()))
    import base64
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode()


NODE_TEMPLATE = """
[node]
id = "{node_id}"
data_dir = "{data_dir}"

[api]
listen = "127.0.0.1:{port}"
cert_file = "{pki_dir}/adcs-proxy-ca.pem"
key_file = "{pki_dir}/server-key.pem"
client_ca_file = "{pki_dir}/adcs-proxy-ca.pem"
client_pins = [{pins}]
header_timeout_ms = {header_timeout_ms}
shutdown_grace_ms = 10000
{api_extra}

[log]
level = "info"
file = "{root}/{node_id}.log"
access_log = "{root}/{node_id}-access.log"

[ca]
backend = "local"
identity = "EXAMPLE\\\\svc-adcsc"

[[ca.allow]]
dc = "{dc}"
ca = "{ca}"
templates = ["JamfDevice", "Pending", "Denied", "Strong"]
san_dns = ["*.example.test"]

[ca.local]
key_type = "p256"

[[ca.local.templates]]
name = "JamfDevice"
eku = ["clientAuth"]
validity_days = 365

[[ca.local.templates]]
name = "Pending"
policy = "pending"
pending_seconds = 1

[[ca.local.templates]]
name = "Denied"
policy = "deny"

[[ca.local.templates]]
name = "Strong"
min_key_bits = 3072
"""


class Node:
    """One `adcsc node` process with its own data dir and config."""

    def __init__(self, root: Path, pki: Pki, node_id="node-a", header_timeout_ms=2000, ca_section=None, extra="",
                 extra_pins=(), api_extra=""):
        """ca_section: TOML text replacing the [ca] part of the config (e.g. icpr_ca_section());
        extra: TOML appended at the end (e.g. a [cluster] section); extra_pins: more client
        certificates the API accepts besides Jamf's (e.g. a TLS-terminating load balancer's);
        api_extra: more keys for the [api] section."""
        self.root, self.pki, self.node_id = root, pki, node_id
        self.port = free_port()
        self.data_dir = root / f"{node_id}-data"
        self.config = root / f"{node_id}.toml"
        text = NODE_TEMPLATE.format(
            node_id=node_id, data_dir=self.data_dir, port=self.port, pki_dir=pki.dir,
            pins=", ".join(f'"{p}"' for p in (pki.pin, *extra_pins)), root=root,
            dc=DC, ca=CA, header_timeout_ms=header_timeout_ms, api_extra=api_extra)
        if ca_section is not None:
            text = text[:text.index("[ca]")] + ca_section
        self.config.write_text(text + extra)
        self.proc = None
        self.stderr_path = root / f"{node_id}.stderr"
        self.binary = ADCSC  # another build's adcsc may run it (test_upgrade.py)

    def start(self, env=None):
        """env: extra environment variables for the process (e.g. ADCSC_CRASH_POINT)."""
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen([str(self.binary), "node", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=stderr,
                                         env={**os.environ, **(env or {})})
        wait_for(self._listening, timeout=30, what=f"{self.node_id} to listen on {self.port}")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.node_id} exited with {self.proc.returncode}: {self.stderr_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        return self.proc.returncode if self.proc else None

    @property
    def url(self):
        return f"https://localhost:{self.port}"

    def log_lines(self):
        """The node's JSON log lines so far (a line the node is still writing is left out)."""
        path = self.root / f"{self.node_id}.log"
        if not path.exists():
            return []
        text = path.read_text()
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()
        return [json.loads(l) for l in lines if l.strip()]


EMULATOR_TEMPLATE = """
[emulator]
listen = "127.0.0.1"
epm_port = {epm_port}
data_dir = "{data_dir}"
accounts_file = "{accounts}"
netbios_domain = "EXAMPLE"
netbios_computer = "CA01"
dns_domain = "example.test"
dns_computer = "localhost"
ntlm = {ntlm}
{kerberos}
[ca]
name = "{ca}"
key_type = "p256"
enroll = ["*"]
officers = [{officers}]

[[ca.templates]]
name = "JamfDevice"
eku = ["clientAuth"]

[[ca.templates]]
name = "Pending"
policy = "pending"

[[ca.templates]]
name = "Denied"
policy = "deny"

[[ca.templates]]
name = "Restricted"

[[permissions]]
template = "Restricted"
enroll = ["EXAMPLE\\\\nobody"]
"""

ICPR_DC = "localhost"


class Emulator:
    """The ADCS emulator (tools/adcs-emulator) on loopback, with an accounts file."""

    def __init__(self, root: Path, accounts=None, name="emulator", kerberos=None, ntlm=None,
                 officers=("EXAMPLE\\svc-adcsc",)):
        """kerberos: a Realm to accept Kerberos from (each account gets a principal there); None:
        the shared realm under ADCSC_TEST_CA_AUTH=kerberos, else none; False: never.
        ntlm: whether NTLM logons are accepted; default: only without Kerberos.
        officers: the accounts with the CA's Officer right (approve, deny, revoke over DCOM)."""
        self.root, self.name = root, name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.accounts = accounts or {"EXAMPLE\\svc-adcsc": "Correct-Horse-1", "EXAMPLE\\other": "Other-Pass-2"}
        if kerberos is None:
            kerberos = shared_realm() if ca_auth() == "kerberos" else False
        self.realm = kerberos or None
        self.ntlm = self.realm is None if ntlm is None else ntlm
        lines = []
        for account, password in self.accounts.items():
            pw = self.dir / "pw.tmp"
            pw.write_text(password + "\n")
            nt_hash = run([EMULATOR, "nt-hash", "--password-file", pw]).stdout.strip()
            lines.append(f"{account}:{nt_hash}")
            if self.realm is not None:
                self.realm.add_account(account, password)
        (self.dir / "pw.tmp").unlink()
        self.accounts_file = self.dir / "accounts.txt"
        self.accounts_file.write_text("\n".join(lines) + "\n")
        self.epm_port = free_port()
        self.config = self.dir / "emulator.toml"
        kerberos_section = ""
        if self.realm is not None:
            kerberos_section = (f'\n[kerberos]\nkeytab = "{self.realm.service_keytab}"\n'
                                f'principal = "{self.realm.service_principal}"\nrealm_domain = "EXAMPLE"\n')
        self.config.write_text(EMULATOR_TEMPLATE.format(epm_port=self.epm_port, data_dir=self.dir / "data",
                                                        accounts=self.accounts_file, ca=CA,
                                                        ntlm="true" if self.ntlm else "false",
                                                        kerberos=kerberos_section,
                                                        officers=", ".join(
                                                            '"' + o.replace("\\", "\\\\") + '"'
                                                            for o in officers)))
        self.ready_file = self.dir / "ready.json"
        self.proc = None
        self.icpr_port = None

    def start(self):
        if self.ready_file.exists():
            self.ready_file.unlink()
        self.stderr = open(self.dir / "stderr.log", "ab")
        env = dict(os.environ)
        if self.realm is not None:
            # The acceptor's replay cache: this emulator's own, not /var/tmp's.
            rcache = self.dir / "rcache"
            rcache.mkdir(exist_ok=True)
            env.update(KRB5_CONFIG=str(self.realm.krb5_conf), KRB5RCACHEDIR=str(rcache))
        self.proc = subprocess.Popen([str(EMULATOR), "run", "--config", str(self.config), "--ready-file",
                                      str(self.ready_file)], stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"emulator exited with {self.proc.returncode}: "
                                   f"{(self.dir / 'stderr.log').read_text()}")
            return self.ready_file.exists()
        wait_for(ready, timeout=30, what="the ADCS emulator")
        info = json.loads(self.ready_file.read_text())
        self.icpr_port = info["icpr_port"]
        self.dcom_port = info["dcom_port"]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        if getattr(self, "stderr", None) and not self.stderr.closed:
            self.stderr.close()
        return self.proc.returncode if self.proc else None

    def ctl(self, *args, check=True):
        r = run([EMULATOR, "ctl", "--config", self.config, *args], check=check)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def secret_file(self, account):
        """A 0600 password file for one of the accounts (what a node's ca.icpr.password_file names)."""
        path = self.dir / (account.replace("\\", "_") + ".pass")
        path.write_text(self.accounts[account] + "\n")
        path.chmod(0o600)
        return path


def icpr_ca_section(emulator: Emulator, account="EXAMPLE\\svc-adcsc", call_timeout_ms=5000, auth=None,
                    realm=None, credential="keytab", mechanism=None, krb5_conf=None, icpr_extra=""):
    """The [ca] part of a node config that reaches `emulator` over MS-ICPR.
    auth: "ntlm", "kerberos" or "negotiate"; default: ADCSC_TEST_CA_AUTH when the emulator
    takes Kerberos, else ntlm. realm: default the emulator's. credential: where the Kerberos
    ticket comes from, "keytab" (the account's) or "password" (password_file, which NTLM also
    uses). mechanism: kerberos_mechanism ("spnego" or "krb5"); krb5_conf: default the realm's
    (the node sets KRB5_CONFIG from it: no environment needed). icpr_extra: more [ca.icpr] lines."""
    identity = account.replace("\\", "\\\\")
    realm = realm or emulator.realm
    if auth is None:
        auth = ca_auth() if realm is not None else "ntlm"
    keys = [f'auth = "{auth}"']
    if auth == "ntlm" or credential == "password":
        keys.append(f'password_file = "{emulator.secret_file(account)}"')
    if auth != "ntlm":
        if realm is None:
            raise ValueError(f'auth "{auth}" needs a Realm (the emulator has none)')
        if credential == "keytab":
            keys.append(f'keytab = "{realm.keytab(account)}"')
            if auth == "negotiate":  # NTLM's secret, for the fallback
                keys.append(f'password_file = "{emulator.secret_file(account)}"')
        keys.append(f'krb5_conf = "{krb5_conf or realm.krb5_conf}"')
        if mechanism is not None:
            keys.append(f'kerberos_mechanism = "{mechanism}"')
    keys = "\n".join(keys)
    return f"""
[ca]
backend = "icpr"
identity = "{identity}"

[[ca.allow]]
dc = "{ICPR_DC}"
ca = "{CA}"
san_dns = ["*.example.test"]

[ca.icpr]
{keys}
epm_port = {emulator.epm_port}
connect_timeout_ms = 2000
call_timeout_ms = {call_timeout_ms}
{icpr_extra}
"""


CA_AUTH_VALUES = ("ntlm", "kerberos")


def ca_auth():
    """How the nodes of this test process authenticate to the emulator (ADCSC_TEST_CA_AUTH)."""
    value = os.environ.get("ADCSC_TEST_CA_AUTH", "ntlm")
    if value not in CA_AUTH_VALUES:
        raise ValueError(f"ADCSC_TEST_CA_AUTH={value!r}: use one of {', '.join(CA_AUTH_VALUES)}")
    return value


class Realm:
    """A throw-away Kerberos realm for the emulator and the nodes (kdc.Kdc underneath): the CA's
    service principal host/<ICPR_DC> with the emulator's keytab, and a principal per CA account
    (EXAMPLE\\user -> user@ADCSC.TEST, with the account's NTLM password) with a 0600 client
    keytab. kdc is the Kdc itself (stop, restart, kadmin, log)."""

    def __init__(self):
        if not kdc.installed():
            raise RuntimeError(f"Kerberos tests need MIT's KDC ({kdc.KRB5KDC}; deploy/install-deps installs it)")
        self.kdc = kdc.Kdc().start()
        self.name = self.kdc.realm
        self.dir = self.kdc.dir
        self.service_principal = f"host/{ICPR_DC}@{self.name}"
        self.kdc.add_principal(self.service_principal)
        self.service_keytab = self.kdc.export_keytab(self.service_principal, self.dir / "service.keytab")
        self._accounts = {}

    @property
    def krb5_conf(self):
        return self.kdc.krb5_conf

    def principal(self, account):
        """user@REALM for DOMAIN\\user."""
        return f"{account.split(chr(92))[-1]}@{self.name}"

    def add_account(self, account, password):
        """Creates the account's principal with `password` and exports its client keytab, once per
        realm (emulators sharing the realm share the principal: the first password stays)."""
        if account in self._accounts:
            return
        principal = self.principal(account)
        self.kdc.add_principal(principal, password=password)
        keytab = self.kdc.export_keytab(principal, self.dir / (principal.split("@")[0] + ".keytab"))
        keytab.chmod(0o600)
        self._accounts[account] = keytab

    def keytab(self, account):
        return self._accounts[account]

    def close(self):
        self.kdc.close()


_shared_realm = None


def shared_realm():
    """The realm every Emulator of this process uses under ADCSC_TEST_CA_AUTH=kerberos; started on
    first use, stopped at exit."""
    global _shared_realm
    if _shared_realm is None:
        _shared_realm = Realm()
        atexit.register(_shared_realm.close)
    return _shared_realm


class TcpProxy:
    """A TCP forwarder on loopback that a test can cut and heal (a network partition)."""

    def __init__(self, target_port):
        import threading
        self.target_port = target_port
        self.cut = threading.Event()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while not self.cut.is_set():
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def set_cut(self, cut):
        if cut:
            self.cut.set()
            with self.lock:
                for c in self.conns:
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.conns = []
        else:
            self.cut.clear()

    def close(self):
        self.set_cut(True)
        self.listener.close()


def cluster_sections(root: Path, node_ids, cluster_id="test", write_quorum=0, on_quorum_loss="serve",
                     peer_address=None, allow_fault_injection=False):
    """[cluster] TOML for each node of a cluster on loopback, after `adcsc pki cluster`.
    peer_address(node, peer, port) may return another port for node's link to peer (a proxy)."""
    pki_dir = root / "cluster-pki"
    run([ADCSC, "pki", "cluster", "--cluster-id", cluster_id, "--nodes", ",".join(node_ids), "--out", pki_dir])
    ports = {n: free_port() for n in node_ids}
    sections = {}
    for n in node_ids:
        def addr(p):
            port = peer_address(n, p, ports[p]) if peer_address else ports[p]
            return f"127.0.0.1:{port}"
        peers = "".join(f'\n[[cluster.peers]]\nid = "{p}"\naddress = "{addr(p)}"\n'
                        for p in node_ids if p != n)
        sections[n] = f"""
[cluster]
id = "{cluster_id}"
listen = "127.0.0.1:{ports[n]}"
ca_file = "{pki_dir}/cluster-ca.pem"
cert_file = "{pki_dir}/{n}/node.pem"
key_file = "{pki_dir}/{n}/node-key.pem"
write_quorum = {write_quorum}
on_quorum_loss = "{on_quorum_loss}"
quorum_timeout_ms = 2000
anti_entropy_interval_ms = 200
allow_fault_injection = {"true" if allow_fault_injection else "false"}
{peers}"""
    return sections


def ssl_context(pki: Pki, cert=None, key=None, no_client_cert=False):
    ctx = ssl.create_default_context(cafile=str(pki.server_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not no_client_cert:
        ctx.load_cert_chain(str(cert or pki.client_cert), str(key or pki.client_key))
    return ctx


def call(node: Node, method, path, body=None, ctx=None, raw_body=None, headers=None):
    """One HTTPS request on a new connection; returns (status, parsed JSON or text)."""
    conn = http.client.HTTPSConnection("localhost", node.port, context=ctx or ssl_context(node.pki), timeout=30)
    try:
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        hdrs = {"Content-Type": "application/json", "User-Agent": "Java-SDK"}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        text = resp.read().decode()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text
    finally:
        conn.close()


def read_response(sock):
    """Reads one HTTP response with a JSON body from a raw (TLS) socket until the body is complete
    or the peer closes; returns the bytes."""
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def submit(node, pkcs10, template="JamfDevice", ctx=None, dc=DC):
    return call(node, "POST", "/api/v1/certificate/request",
                {"pkcs10": pkcs10, "template": template, "config": {"dc": dc, "ca": CA}}, ctx=ctx)


def retrieve(node, request_id, ctx=None, dc=DC):
    return call(node, "POST", "/api/v1/certificate/retrieve", {"request-id": request_id, "config": {"dc": dc, "ca": CA}},
                ctx=ctx)


def cluster_views(node: "Node"):
    """Every node's view of the cluster (`adcsc ctl status --json`, asked with `node`'s
    configuration and this build's CLI), by node ID."""
    out = run([ADCSC, "ctl", "status", "--config", node.config, "--json"], check=False)
    return {v["from"]["nodeId"]: v for v in json.loads(out.stdout)}


def issued_everywhere(nodes, ids, dc=DC):
    """True when each node of `nodes` answers every request ID of `ids` as issued (from its
    store when the CA is down)."""
    for node in nodes:
        for rid in ids:
            status, body = retrieve(node, rid, dc=dc)
            if status != 200 or body["request-status"]["status"] != "CR_DISP_ISSUED":
                return False
    return True


class TempRoot:
    """A scratch directory removed on exit; kept (and named on stderr) when the environment sets
    ADCSC_KEEP_TEST_DIRS, to read the nodes' logs after a failure."""
    def __enter__(self):
        self._path = tempfile.mkdtemp(prefix="adcsc-it-")
        return Path(self._path)

    def __exit__(self, *exc):
        if os.environ.get("ADCSC_KEEP_TEST_DIRS"):
            print(f"kept {self._path}", file=sys.stderr)
            return
        shutil.rmtree(self._path, ignore_errors=True)
