#!/usr/bin/env python3
"""The adcsc quickstart cluster, on loopback: an ADCS emulator (an MS-ICPR CA stand-in),
three clustered nodes (node-a, node-b, node-c) talking MS-ICPR to it, an adcsc-lb-agent
beside each, and HAProxy terminating TLS in front (deploy/haproxy/adcsc-tls.cfg, with L7
retries). The nodes log on to the CA with NTLMv2, or with --kerberos through a throw-away MIT
realm (QUICKSTART.TEST, a krb5kdc of its own; the emulator then refuses NTLM). Everything
lives in one directory (default run/quickstart/): the demo PKI, every configuration, the
logs, the data, and the pid files. `deploy/quickstart` (the shell wrapper) installs packages
and builds first, then runs this.

  deploy/quickstart                 start (or reuse the PKI of) the cluster, smoke-test it,
                                    print how to use it, and stop everything on Ctrl-C
  deploy/quickstart --smoke         the same, then a short kill drill; exit 0/1 and stop
  deploy/quickstart --kerberos      the same cluster on Kerberos (with or without --smoke; the
                                    smoke run then also checks `adcsc ctl ca-ping` says Kerberos)
  deploy/quickstart --lb-mode tcp   HAProxy in TCP pass-through (deploy/haproxy/adcsc-tcp.cfg)
                                    instead of terminating TLS; the drill file says so
  deploy/quickstart --clock-faults  run each node under libfaketime (only its wall clock can be
                                    stepped; its monotonic clock stays true), so the drill's
                                    clock-jump scenario can step it: the drill file says how
  deploy/quickstart --down          stop a cluster left running (by its pid files)
  deploy/quickstart --start-node ID start one node of a running cluster again (drills use it)

Options: --dir DIR (default run/quickstart), --port N (HAProxy's port, default 8443; every
other port is derived from it: nodes' API N+1..N+3, ops N+11..N+13, cluster N+21..N+23,
agents N+31..N+33, the emulator's endpoint mapper N+41, the KDC N+42 with --kerberos).

Exit status: 0 success (or stopped by Ctrl-C or --down), 1 a step or the smoke run failed,
2 a usage error.
"""
import argparse
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mit_realm

TOP = Path(__file__).resolve().parents[1]
NODES = ["node-a", "node-b", "node-c"]
CA_NAME = "Quickstart-CA"
TEMPLATE = "JamfDevice"
DC = "localhost"  # the emulated CA listens on loopback
DOMAIN = "QUICKSTART"  # the NetBIOS domain the emulated CA sees its callers in
SERVICE_ACCOUNT = "svc-adcsc"
# --kerberos: the realm, the CA's service principal (a node's default SPN is host/{host}, and
# {host} is the DC above) and the service account's principal.
REALM = "QUICKSTART.TEST"
CA_SPN = f"host/{DC}@{REALM}"
SVC_PRINCIPAL = f"{SERVICE_ACCOUNT}@{REALM}"
# libfaketime, thread-safe build (Debian: libfaketime), for --clock-faults.
FAKETIME_LIB = next((str(p) for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
KDC_START_TIMEOUT_S = 20
CA_PING_TIMEOUT_S = 60  # ca-ping's own connect and call timeouts are far shorter
KERBEROS_MECHANISMS = ("negotiate/kerberos", "kerberos")  # what ca-ping reports for Kerberos


def die(message):
    print(f"quickstart: {message}", file=sys.stderr)
    sys.exit(1)


class Layout:
    """Where everything is, and which port each part listens on."""

    def __init__(self, directory, port, bin_dir):
        self.dir = Path(directory).resolve()
        self.bin = Path(bin_dir).resolve()
        self.adcsc, self.emulator_bin, self.agent_bin = (self.bin / "adcsc", self.bin / "adcs-emulator",
                                                         self.bin / "adcsc-lb-agent")
        self.pki = self.dir / "pki"
        self.lb_port = port
        self.api = {n: port + 1 + i for i, n in enumerate(NODES)}
        self.ops = {n: port + 11 + i for i, n in enumerate(NODES)}
        self.cluster = {n: port + 21 + i for i, n in enumerate(NODES)}
        self.agent = {n: port + 31 + i for i, n in enumerate(NODES)}
        self.epm_port = port + 41
        self.lb_mode = "tls-termination"  # or "tcp" (--lb-mode)
        self.kdc_port = port + 42  # --kerberos only
        self.kdc = self.dir / "kdc"
        self.ca_keytab = self.kdc / "ca-service.keytab"  # host/localhost: the emulated CA's key
        self.svc_keytab = self.kdc / f"{SERVICE_ACCOUNT}.keytab"  # the nodes' service account

    def node_dir(self, n):
        return self.dir / n

    def pid_file(self, name):
        return self.dir / "pids" / f"{name}.pid"

    def clock_file(self, n):
        """libfaketime's control file for node n (--clock-faults): "+0", "+300", "-300"."""
        return self.dir / "clock" / f"{n}.faketime"

    def state_file(self):
        return self.dir / "quickstart.json"


def run(args, **kw):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        die(f"{' '.join(str(a) for a in args)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def write_private(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.chmod(path, 0o600)


def port_in_use(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- PKI and configuration

def issue_client(pki, name):
    """A client certificate signed by the demo server identity (which is its own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_key = serialization.load_pem_private_key((pki / "server-key.pem").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "adcs-proxy-ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_private(pki / f"{name}.pem", cert_pem)
    write_private(pki / f"{name}-key.pem", key_pem)
    write_private(pki / f"{name}-identity.pem", cert_pem + key_pem)


def issue_server_leaf(pki, name):
    """A second server identity for the reload drill's rotation: a new key and certificate for
    the same names, signed by the demo server identity, so what trusts that one (Jamf Pro's
    upload, HAProxy's checks) trusts this one too."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_key = serialization.load_pem_private_key((pki / "server-key.pem").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((pki / "adcs-proxy-ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    # A subject of its own: one equal to its issuer's would make it look self-signed.
    subject = x509.Name(list(ca_cert.subject) + [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                                     "adcsc API identity " + name)])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=365))
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    try:
        san = ca_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    write_private(pki / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM))
    write_private(pki / f"{name}-key.pem", key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))


def pin_of(cert_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).fingerprint(hashes.SHA256()).hex()


def make_pki(L):
    pki = L.pki
    if not (pki / "client-cert.pfx").exists():
        run([L.adcsc, "pki", "init", "--fqdn", "localhost", "--jamf-pro-dn", "jamf.quickstart.test", "--out", pki,
             "--password-file", pki / "client-cert.pass"])
    if not (pki / "jamf-identity.pem").exists():
        # Jamf Pro's identity as PEM too (cert + key), for `adcsc drill` and curl.
        out = run(["openssl", "pkcs12", "-in", pki / "client-cert.pfx", "-passin",
                   f"file:{pki / 'client-cert.pass'}", "-nodes"])
        write_private(pki / "jamf-identity.pem", out)
    # jamf-next and server-next: what the reload drill rotates to (Jamf Pro's next identity, the
    # nodes' next API identity) and back from.
    for name in ("haproxy-client", "admin", "jamf-next"):
        if not (pki / f"{name}-identity.pem").exists():
            issue_client(pki, name)
    if not (pki / "server-next.pem").exists():
        issue_server_leaf(pki, "server-next")
    # HAProxy's server identity is the nodes' one: Jamf Pro sees one certificate either way.
    write_private(pki / "haproxy-server.pem",
                  (pki / "adcs-proxy-ca.pem").read_text() + (pki / "server-key.pem").read_text())
    write_private(pki / "jamf-pins.lst", (pki / "client-cert.pin").read_text().strip() + "\n")
    if not (pki / "cluster" / "cluster-ca.pem").exists():
        run([L.adcsc, "pki", "cluster", "--cluster-id", "quickstart", "--nodes", ",".join(NODES), "--out",
             pki / "cluster"])


def make_realm(L):
    """A new throw-away realm in <dir>/kdc/ (any earlier one is replaced: its keys would not
    match a fresh emulator anyway): the CA's service principal and the service account, both
    with random keys, exported to 0600 keytabs."""
    if not mit_realm.installed():
        die(f"--kerberos needs the MIT KDC ({mit_realm.KRB5KDC}, {mit_realm.KADMIN_LOCAL}): "
            f"./deploy/install-deps installs it (Debian: {mit_realm.PACKAGES})")
    shutil.rmtree(L.kdc, ignore_errors=True)
    L.kdc.mkdir(parents=True)
    os.chmod(L.kdc, 0o700)
    (L.kdc / "rcache").mkdir()  # the emulator's replay cache, not the system's
    realm = kdc_realm(L)
    try:
        realm.create()
        for principal, keytab in ((CA_SPN, L.ca_keytab), (SVC_PRINCIPAL, L.svc_keytab)):
            realm.add_principal(principal)
            realm.export_keytab(principal, keytab)
    except mit_realm.RealmError as e:
        die(f"setting up the Kerberos realm {REALM} in {L.kdc}: {e}")


def kdc_realm(L):
    return mit_realm.MitRealm(L.kdc, REALM, L.kdc_port)


def write_configs(L, kerberos):
    """Every configuration file. kerberos: the nodes log on with the service account's keytab
    and the emulator accepts Kerberos only; else NTLMv2 with a password (file)."""
    emu = L.dir / "emulator"
    emu.mkdir(parents=True, exist_ok=True)
    os.chmod(emu, 0o700)
    if kerberos:
        # A domain without NTLM: a node that fell back to it would fail, not pass quietly.
        emulator_logon = f"""ntlm = false

# A caller's Kerberos name svc-adcsc@{REALM} is checked as {DOMAIN}\\svc-adcsc (ca.enroll).
[kerberos]
keytab = "{L.ca_keytab}"
principal = "{CA_SPN}"
realm_domain = "{DOMAIN}"
"""
        node_logon = f"""# Kerberos only (deploy/quickstart --kerberos): a ticket for the CA's SPN host/{DC} from
# the throw-away realm {REALM}, with the service account's keytab; no NTLM secret at all.
auth = "kerberos"
keytab = "{L.svc_keytab}"
kerberos_principal = "{SVC_PRINCIPAL}"
krb5_conf = "{L.kdc / 'krb5.conf'}"
"""
    else:
        password_file = L.dir / "svc-adcsc.pass"
        if not password_file.exists():
            write_private(password_file, secrets.token_urlsafe(18) + "\n")
        nt_hash = run([L.emulator_bin, "nt-hash", "--password-file", password_file]).strip()
        write_private(emu / "accounts.txt", f"{DOMAIN}\\{SERVICE_ACCOUNT}:{nt_hash}\n")
        emulator_logon = f'accounts_file = "{emu / "accounts.txt"}"\n'
        node_logon = f'password_file = "{password_file}"\n'
    (emu / "emulator.toml").write_text(f"""# Written by deploy/quickstart: the ADCS emulator (tools/adcs-emulator), a CA stand-in.
[emulator]
listen = "127.0.0.1"
epm_port = {L.epm_port}
data_dir = "{emu / 'data'}"
netbios_domain = "{DOMAIN}"
netbios_computer = "CA01"
dns_computer = "{DC}"
{emulator_logon}
[ca]
name = "{CA_NAME}"
common_name = "adcsc Quickstart CA"
key_type = "p256"
enroll = ["{DOMAIN}\\\\{SERVICE_ACCOUNT}"]
# The Officer right (Issue and Manage Certificates): `adcsc ctl revoke|approve|deny` over DCOM.
officers = ["{DOMAIN}\\\\{SERVICE_ACCOUNT}"]

[[ca.templates]]
name = "{TEMPLATE}"
eku = ["clientAuth"]
validity_days = 365

[[ca.templates]]
name = "JamfDevicePending"
eku = ["clientAuth"]
policy = "pending"
""")
    pki = L.pki
    jamf_pin = (pki / "client-cert.pin").read_text().strip()
    lb_pin = pin_of(pki / "haproxy-client.pem")
    admin_pin = pin_of(pki / "admin.pem")
    for n in NODES:
        d = L.node_dir(n)
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        peers = "".join(f'\n[[cluster.peers]]\nid = "{p}"\naddress = "127.0.0.1:{L.cluster[p]}"\n'
                        for p in NODES if p != n)
        node_toml = f"""# Written by deploy/quickstart. See docs/configuration.md for every key.
[node]
id = "{n}"
data_dir = "{d / 'data'}"

[api]
listen = "127.0.0.1:{L.api[n]}"
cert_file = "{pki / 'adcs-proxy-ca.pem'}"
key_file = "{pki / 'server-key.pem'}"
client_ca_file = "{pki / 'adcs-proxy-ca.pem'}"
# Jamf Pro's certificate (for direct calls and drills) and HAProxy's (it re-encrypts to the nodes).
client_pins = ["{jamf_pin}", "{lb_pin}"]
# HAProxy names the real caller (Jamf Pro's address and certificate) in headers the nodes
# believe from its certificate only: the logs then show Jamf Pro, not HAProxy.
trusted_proxy_pins = ["{lb_pin}"]

[log]
level = "info"
file = "{d / 'node.log'}"
access_log = "{d / 'access.log'}"

[ca]
backend = "icpr"
identity = "{DOMAIN}\\\\{SERVICE_ACCOUNT}"

[[ca.allow]]
dc = "{DC}"
ca = "{CA_NAME}"
templates = ["{TEMPLATE}", "JamfDevicePending"]
# Signing policy (docs/security.md, "Writing a signing policy"): what Jamf Pro's device and
# computer profiles ask for and nothing more. Subjects are CN=<name>, optionally followed by
# OU and O; DNS and email SANs as the profile's variables fill them in; no UPN, IP, URI or
# SID URI SAN, no requested validity. Narrow the patterns to your own names.
subject_patterns = ["CN=*", "CN=*,O=*", "CN=*,OU=*,O=*"]
san_dns = ["*"]
san_email = ["*"]
san_uri = []
san_upn = []
san_ip = []
allow_sid_uri = false
key_types = ["rsa", "ec"]
min_rsa_bits = 2048
max_rsa_bits = 4096
ec_curves = ["P-256", "P-384"]
requested_validity = "refuse"

[ca.icpr]
{node_logon}epm_port = {L.epm_port}

[ops]
listen = "127.0.0.1:{L.ops[n]}"
tls = true
probe_interval_ms = 1000
admin_ca_file = "{pki / 'adcs-proxy-ca.pem'}"
admin_pins = ["{admin_pin}"]

[cluster]
id = "quickstart"
listen = "127.0.0.1:{L.cluster[n]}"
ca_file = "{pki / 'cluster' / 'cluster-ca.pem'}"
cert_file = "{pki / 'cluster' / n / 'node.pem'}"
key_file = "{pki / 'cluster' / n / 'node-key.pem'}"
anti_entropy_interval_ms = 500
# The quickstart is a lab: `adcsc ctl fault` and the partition and ca-outage drills may act on it.
allow_fault_injection = true
{peers}"""
        (d / "node.toml").write_text(node_toml)
        # The reload drill's rotation (docs/operations.md, "Rotating the API identity and Jamf
        # Pro's certificate"): first the nodes' next identity with both of Jamf Pro's pins, then
        # only the next pin.
        now_cert, now_key = pki / "adcs-proxy-ca.pem", pki / "server-key.pem"
        next_cert, next_key = pki / "server-next.pem", pki / "server-next-key.pem"
        api_identity = (f'cert_file = "{now_cert}"\nkey_file = "{now_key}"',
                        f'cert_file = "{next_cert}"\nkey_file = "{next_key}"')
        pins = f'client_pins = ["{jamf_pin}", "{lb_pin}"]'
        next_pin = pin_of(pki / "jamf-next.pem")
        overlap = (node_toml.replace(*api_identity)
                   .replace(pins, f'client_pins = ["{jamf_pin}", "{next_pin}", "{lb_pin}"]'))
        assert overlap != node_toml and api_identity[0] in node_toml and pins in node_toml
        (d / "node.reload-overlap.toml").write_text(overlap)
        (d / "node.reload-final.toml").write_text(overlap.replace(f'"{jamf_pin}", ', ""))
    haproxy = L.dir / "haproxy"
    haproxy.mkdir(exist_ok=True)
    (haproxy / "stats.cfg").write_text(
        f"# Written by deploy/quickstart: HAProxy's stats socket, for `adcsc drill` and you.\n"
        f"global\n    stats socket {haproxy / 'stats.sock'} mode 600 level admin\n")
    wrapper = TOP / "deploy" / "quickstart"
    nodes_toml = "".join(f"""
[[node]]
id = "{n}"
api = "https://localhost:{L.api[n]}"
ops = "https://localhost:{L.ops[n]}"
config = "{L.node_dir(n) / 'node.toml'}"
pid_file = "{L.pid_file(n)}"
start = ["{wrapper}", "--dir", "{L.dir}", "--port", "{L.lb_port}", "--start-node", "{n}"]
lb_server = "node{i}"
{clock_line(L, n)}
reload_overlap = "{L.node_dir(n) / 'node.reload-overlap.toml'}"
reload_final = "{L.node_dir(n) / 'node.reload-final.toml'}"
""" for i, n in enumerate(NODES, 1))
    (L.dir / "drill.toml").write_text(f"""# Written by deploy/quickstart: what `adcsc drill` needs to know about this cluster.
# See docs/operations.md, "Failover drills".
[lb]
url = "https://localhost:{L.lb_port}"
mode = "{L.lb_mode}"
haproxy_stats_socket = "{haproxy / 'stats.sock'}"
haproxy_backend = "adcsc_nodes"

[client]
cert_file = "{pki / 'jamf-identity.pem'}"
key_file = "{pki / 'jamf-identity.pem'}"
ca_file = "{pki / 'adcs-proxy-ca.pem'}"

[admin]
cert_file = "{pki / 'admin.pem'}"
key_file = "{pki / 'admin-key.pem'}"
ca_file = "{pki / 'adcs-proxy-ca.pem'}"

[ca]
dc = "{DC}"
ca = "{CA_NAME}"
template = "{TEMPLATE}"
list_command = ["{L.emulator_bin}", "ctl", "--config", "{emu / 'emulator.toml'}", "list"]
slow_command = ["{L.emulator_bin}", "ctl", "--config", "{emu / 'emulator.toml'}", "set", "latency_ms", "1500"]
restore_command = ["{L.emulator_bin}", "ctl", "--config", "{emu / 'emulator.toml'}", "set", "latency_ms", "0"]

# The reload drill: Jamf Pro's next identity (lb.mode "tcp": the nodes check Jamf Pro's pin).
[reload]
client_cert_file = "{pki / 'jamf-next-identity.pem'}"
client_key_file = "{pki / 'jamf-next-identity.pem'}"
{nodes_toml}""")


def clock_line(L, n):
    """The drill file's clock command for node n: writes libfaketime's control file."""
    if not L.clock_file(n).exists():
        return ""
    return f'''clock = ["sh", "-c", "echo {{offset}} > \'{L.clock_file(n)}\'"]'''


# ---------------------------------------------------------------- processes

def alive(pid):
    """Running, and not a zombie (a killed child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def read_pid(L, name):
    try:
        pid = int(L.pid_file(name).read_text().strip())
        return pid if alive(pid) else None
    except (OSError, ValueError):
        return None


def spawn(L, name, argv, log_dir, env=None):
    """Starts `argv` in its own session (Ctrl-C in this terminal does not reach it), logging
    to log_dir/<name>.out, and records its pid file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out = open(log_dir / f"{name}.out", "ab")
    proc = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=dict(os.environ, **(env or {})))
    L.pid_file(name).parent.mkdir(parents=True, exist_ok=True)
    L.pid_file(name).write_text(f"{proc.pid}\n")
    return proc


def wait_until(check, timeout, what, proc_name=None, L=None):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc_name and L and read_pid(L, proc_name) is None:
            die(f"{what}: {proc_name} exited; see its log in {L.dir}")
        if time.monotonic() > deadline:
            die(f"{what}: not within {timeout} s (logs in {L.dir if L else '.'})")
        time.sleep(0.1)


def ops_ok(L, n, path="/health/live"):
    ctx = ssl.create_default_context(cafile=str(L.pki / "adcs-proxy-ca.pem"))
    try:
        with urllib.request.urlopen(f"https://localhost:{L.ops[n]}{path}", context=ctx, timeout=2) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False


def start_kdc(L):
    if read_pid(L, "kdc"):
        return
    realm = kdc_realm(L)
    spawn(L, "kdc", realm.kdc_argv(), L.kdc,
          env={"KRB5_CONFIG": str(realm.krb5_conf), "KRB5_KDC_PROFILE": str(realm.kdc_conf)})
    try:
        realm.wait_listening(lambda: read_pid(L, "kdc") is not None, KDC_START_TIMEOUT_S)
    except mit_realm.RealmError as e:
        die(f"the KDC of {REALM}: {e}; see {realm.kdc_log} and {L.kdc / 'kdc.out'}")


def start_emulator(L, kerberos):
    if read_pid(L, "emulator"):
        return
    ready = L.dir / "emulator" / "ready.json"
    ready.unlink(missing_ok=True)
    # The service keytab is named in emulator.toml; the library still wants the realm's
    # krb5.conf, and a replay cache of our own (the default one is under /var/tmp).
    env = {"KRB5_CONFIG": str(L.kdc / "krb5.conf"), "KRB5RCACHEDIR": str(L.kdc / "rcache")} if kerberos else None
    spawn(L, "emulator", [L.emulator_bin, "run", "--config", L.dir / "emulator" / "emulator.toml", "--ready-file", ready],
          L.dir / "emulator", env=env)
    wait_until(ready.exists, 30, "the ADCS emulator", "emulator", L)


def faketime_env(L, n):
    """With --clock-faults: libfaketime preloaded, reading the node's control file (re-read at
    most every second); only CLOCK_REALTIME moves, as when NTP or an operator steps a clock."""
    if not L.clock_file(n).exists():
        return None
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE": str(L.clock_file(n)),
            "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "NO_FAKE_STAT": "1"}


def start_node(L, n):
    if read_pid(L, n):
        return
    spawn(L, n, [L.adcsc, "node", "--config", L.node_dir(n) / "node.toml"], L.node_dir(n), env=faketime_env(L, n))
    wait_until(lambda: ops_ok(L, n), 30, f"node {n}", n, L)


def start_agent(L, n):
    if read_pid(L, f"agent-{n}"):
        return
    spawn(L, f"agent-{n}", [L.agent_bin, "--node-url", f"https://localhost:{L.ops[n]}", "--ca-file",
                            L.pki / "adcs-proxy-ca.pem", "--listen", f"127.0.0.1:{L.agent[n]}", "--interval-ms", "500",
                            "--stale-ms", "2000"], L.node_dir(n))


def haproxy_status(L):
    sock = L.dir / "haproxy" / "stats.sock"
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError:
        return {}
    lines = data.decode().lstrip("# ").splitlines()
    head = lines[0].split(",") if lines else []
    out = {}
    for line in lines[1:]:
        row = dict(zip(head, line.split(",")))
        if row.get("pxname") == "adcsc_nodes" and row.get("svname") not in ("BACKEND", None):
            out[row["svname"]] = row.get("status", "")
    return out


def start_haproxy(L):
    if read_pid(L, "haproxy"):
        return
    pki = L.pki
    env = {"ADCSC_BIND": f"127.0.0.1:{L.lb_port}", "ADCSC_LB_CERT": str(pki / "haproxy-server.pem"),
           "ADCSC_CLIENT_CA": str(pki / "adcs-proxy-ca.pem"), "ADCSC_CLIENT_PINS": str(pki / "jamf-pins.lst"),
           "ADCSC_NODE_CA": str(pki / "adcs-proxy-ca.pem"), "ADCSC_NODE_SNI": "localhost",
           "ADCSC_LB_CLIENT": str(pki / "haproxy-client-identity.pem"), "ADCSC_OPS_CA": str(pki / "adcs-proxy-ca.pem"),
           "ADCSC_OPS_SNI": "localhost"}
    for i, n in enumerate(NODES, 1):
        env[f"ADCSC_NODE{i}"] = f"127.0.0.1:{L.api[n]}"
        env[f"ADCSC_OPS{i}"] = str(L.ops[n])
        env[f"ADCSC_AGENT{i}"] = str(L.agent[n])
    (L.dir / "haproxy" / "stats.sock").unlink(missing_ok=True)
    cfg = "adcsc-tcp.cfg" if L.lb_mode == "tcp" else "adcsc-tls.cfg"
    spawn(L, "haproxy", ["haproxy", "-db", "-f", TOP / "deploy" / "haproxy" / cfg, "-f",
                         L.dir / "haproxy" / "stats.cfg"], L.dir / "haproxy", env=env)
    wait_until(lambda: set(haproxy_status(L).values()) == {"UP"} and len(haproxy_status(L)) == 3, 60,
               "HAProxy to see all three nodes UP", "haproxy", L)


def stop_all(L, quiet=False):
    names = ["haproxy"] + [f"agent-{n}" for n in NODES] + NODES + ["emulator", "kdc"]
    stopped = []
    for name in names:
        pid = read_pid(L, name)
        if pid is None:
            L.pid_file(name).unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        try:  # a child of ours that exited between two polls: reap it, leave no zombie
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass  # started by another quickstart run (--down)
        L.pid_file(name).unlink(missing_ok=True)
        stopped.append(name)
    if not quiet:
        print(f"quickstart: stopped {', '.join(stopped) if stopped else 'nothing (no cluster was running)'}")


# ---------------------------------------------------------------- the commands

def smoke(L):
    """A request and a retrieve through HAProxy; dies unless the certificate came back."""
    pki = L.pki
    conn = ["--url", f"https://localhost:{L.lb_port}", "--pfx", pki / "client-cert.pfx", "--password-file",
            pki / "client-cert.pass", "--server-ca", pki / "adcs-proxy-ca.pem"]
    key_out = L.dir / f"smoke-key.{os.getpid()}.pem"
    submitted = run([L.adcsc, "client", "request", *conn, "--dc", DC, "--ca", CA_NAME, "--template", TEMPLATE,
                     "--subject", "quickstart-smoke", "--key-out", key_out])
    key_out.unlink(missing_ok=True)
    request_id = json.loads(submitted)["request-id"]
    got = run([L.adcsc, "client", "retrieve", *conn, "--dc", DC, "--ca", CA_NAME, "--id", request_id, "--out",
               L.dir / "smoke-cert.pem"])
    if "CR_DISP_ISSUED" not in got:
        die(f"smoke retrieve did not return an issued certificate: {got[:200]}")
    print(f"smoke: request {request_id} submitted and retrieved through HAProxy "
          f"(certificate in {L.dir / 'smoke-cert.pem'})")


def ca_ping(L, node="node-a"):
    """`adcsc ctl ca-ping` with a node's configuration; dies unless the CA answered over
    Kerberos. Returns the mechanism."""
    argv = [str(L.adcsc), "ctl", "ca-ping", "--config", str(L.node_dir(node) / "node.toml"), "--dc", DC, "--ca",
            CA_NAME]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=CA_PING_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        die(f"ca-ping from {node}: no answer within {CA_PING_TIMEOUT_S} s")
    print(r.stdout, end="")
    found = re.search(r"^CA ping: OK \(.*mechanism (\S+)\)$", r.stdout, re.MULTILINE)
    if r.returncode != 0 or not found:
        die(f"ca-ping from {node} failed ({r.returncode}):\n{r.stderr}")
    if found.group(1) not in KERBEROS_MECHANISMS:
        die(f"ca-ping from {node}: the CA was reached with {found.group(1)}, not Kerberos")
    return found.group(1)


def up(L, kerberos):
    if read_pid(L, "haproxy") or port_in_use(L.lb_port):
        die(f"port {L.lb_port} is in use (a quickstart cluster still running? stop it with "
            f"./deploy/quickstart --down, or use --port N)")
    ports = [*L.api.values(), *L.ops.values(), *L.cluster.values(), *L.agent.values(), L.epm_port]
    for port in ports + ([L.kdc_port] if kerberos else []):
        if port_in_use(port):
            die(f"port {port} is in use; choose another range with --port N")
    L.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(L.dir, 0o700)
    make_pki(L)
    if kerberos:
        make_realm(L)
    write_configs(L, kerberos)
    kdc = f"a Kerberos KDC ({REALM}, 127.0.0.1:{L.kdc_port}), " if kerberos else ""
    print(f"quickstart: starting {kdc}the ADCS emulator, {', '.join(NODES)}, their agents and HAProxy in {L.dir}")
    if kerberos:
        start_kdc(L)
    start_emulator(L, kerberos)
    for n in NODES:
        start_node(L, n)
    for n in NODES:
        start_agent(L, n)
    start_haproxy(L)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=str(TOP / "run" / "quickstart"))
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--bin-dir", default=os.environ.get("ADCSC_BIN_DIR", str(TOP / "build" / "bin")))
    p.add_argument("--smoke", action="store_true", help="smoke test and a short kill drill, then stop; exit 0/1")
    p.add_argument("--kerberos", action="store_true",
                   help=f"run a throw-away MIT realm ({REALM}, KDC on --port + 42) and log on to the CA with "
                        "Kerberos only")
    p.add_argument("--lb-mode", choices=("tls-termination", "tcp"), default="tls-termination",
                   help="HAProxy terminating TLS with L7 retries (deploy/haproxy/adcsc-tls.cfg, the default) or "
                        "TCP pass-through (adcsc-tcp.cfg: the nodes see Jamf Pro's TLS; nothing after the connect "
                        "is retried)")
    p.add_argument("--clock-faults", action="store_true",
                   help="run the nodes under libfaketime so the drill's clock-jump scenario can step their wall "
                        "clocks (lab only)")
    p.add_argument("--down", action="store_true", help="stop a cluster left running")
    p.add_argument("--start-node", metavar="ID", help="start one node of a running cluster again")
    a = p.parse_args()
    if not 1024 <= a.port <= 65000:
        p.error("--port must be between 1024 and 65000")
    L = Layout(a.dir, a.port, a.bin_dir)
    L.lb_mode = a.lb_mode
    if a.down:
        stop_all(L)
        return 0
    if a.start_node:
        if a.start_node not in NODES:
            p.error(f"--start-node: no node {a.start_node!r} ({', '.join(NODES)})")
        start_node(L, a.start_node)
        return 0
    for b in (L.adcsc, L.emulator_bin, L.agent_bin):
        if not b.exists():
            die(f"{b} is missing: build first (./deploy/quickstart does)")
    shutil.rmtree(L.dir / "clock", ignore_errors=True)
    if a.clock_faults:
        if not Path(FAKETIME_LIB).exists():
            die(f"--clock-faults needs {FAKETIME_LIB} (Debian package libfaketime; deploy/install-deps installs it)")
        for n in NODES:
            L.clock_file(n).parent.mkdir(parents=True, exist_ok=True)
            L.clock_file(n).write_text("+0\n")

    stopping = {"now": False}

    def on_signal(signum, frame):  # noqa: ARG001
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        up(L, a.kerberos)
        smoke(L)
        if a.kerberos:
            ca_ping(L)
    except SystemExit:
        stop_all(L, quiet=True)
        raise
    if a.smoke:
        print("\n== a short kill drill against the cluster")
        drill = subprocess.run([str(L.adcsc), "drill", "--config", str(L.dir / "drill.toml"), "--scenario", "kill",
                                "--warmup-ms", "2000", "--hold-ms", "3000", "--tail-ms", "2000"])
        stop_all(L)
        return 0 if drill.returncode == 0 else 1

    pki = L.pki
    if a.kerberos:
        logon = (f"\nThe cluster runs on Kerberos: the nodes log on to the CA as {SVC_PRINCIPAL} (keytab\n"
                 f"kdc/{L.svc_keytab.name}) with a ticket for {CA_SPN} from the KDC on 127.0.0.1:{L.kdc_port};\n"
                 f"the emulated CA refuses NTLM.\n")
        kdc_files = "\n  kdc/                    the realm: krb5.conf, kdc.conf, database, keytabs (0600), kdc.log"
        ping = "  (says \"mechanism negotiate/kerberos\")"
    else:
        logon, kdc_files, ping = "", "", ""
    print(f"""
adcsc is running: https://localhost:{L.lb_port}  (HAProxy, terminating TLS, in front of {', '.join(NODES)})
{logon}
Files in {L.dir}:
  pki/adcs-proxy-ca.cer   server certificate (DER): what you upload to Jamf Pro
  pki/client-cert.pfx     Jamf Pro's client identity (PKCS#12), password in pki/client-cert.pass
  pki/jamf-identity.pem   the same as PEM (certificate + key), for curl and drills
  node-*/node.toml        each node's configuration; node-*/node.log and access.log its logs
  drill.toml              what `adcsc drill` needs to know about this cluster
  haproxy/, emulator/     HAProxy's and the ADCS emulator's files and logs{kdc_files}

Try it:
  {L.adcsc} client request --url https://localhost:{L.lb_port} --pfx {pki}/client-cert.pfx \\
      --password-file {pki}/client-cert.pass --server-ca {pki}/adcs-proxy-ca.pem \\
      --dc {DC} --ca {CA_NAME} --template {TEMPLATE} --subject my-device
  {L.adcsc} ctl status --config {L.node_dir('node-a')}/node.toml
  {L.adcsc} ctl ca-ping --config {L.node_dir('node-a')}/node.toml --dc {DC} --ca {CA_NAME}{ping}
  {L.adcsc} drill --config {L.dir}/drill.toml --scenario kill --node node-c
  {L.adcsc} drill --config {L.dir}/drill.toml --scenario drain
  {L.adcsc} ctl drain --node localhost:{L.ops['node-b']} --cert {pki}/admin.pem --key {pki}/admin-key.pem \\
      --ca-file {pki}/adcs-proxy-ca.pem
  {L.emulator_bin} ctl --config {L.dir}/emulator/emulator.toml list

Press Ctrl-C to stop everything (or, from another terminal: ./deploy/quickstart --down).""", flush=True)
    while not stopping["now"]:
        time.sleep(0.2)
        try:  # reap the children a drill killed
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if not any(read_pid(L, name) for name in ["haproxy", "emulator", "kdc", *NODES]):
            print("\nquickstart: the cluster was stopped from elsewhere (--down); exiting")
            return 0
    print("\nquickstart: stopping")
    stop_all(L)
    return 0


if __name__ == "__main__":
    sys.exit(main())
