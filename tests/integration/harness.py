"""Test harness for integration tests: real `adcsc` processes on loopback.

Starts nodes from the build tree, makes PKI with `adcsc pki init`, and talks to the API with
Python's ssl module (so the client is not our own code) or with curl. Every wait has a
deadline; nothing sleeps for a fixed time to let something happen.
"""
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import http.client
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("ADCSC_BIN_DIR", REPO / "build" / "bin"))
ADCSC = BIN / "adcsc"
DC, CA = "ca1.example.test", "Example-Issuing-CA"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
client_pins = ["{pin}"]
header_timeout_ms = {header_timeout_ms}
shutdown_grace_ms = 10000

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

    def __init__(self, root: Path, pki: Pki, node_id="node-a", header_timeout_ms=2000):
        self.root, self.pki, self.node_id = root, pki, node_id
        self.port = free_port()
        self.data_dir = root / f"{node_id}-data"
        self.config = root / f"{node_id}.toml"
        self.config.write_text(NODE_TEMPLATE.format(
            node_id=node_id, data_dir=self.data_dir, port=self.port, pki_dir=pki.dir, pin=pki.pin, root=root,
            dc=DC, ca=CA, header_timeout_ms=header_timeout_ms))
        self.proc = None
        self.stderr_path = root / f"{node_id}.stderr"

    def start(self):
        with open(self.stderr_path, "ab") as stderr:
            self.proc = subprocess.Popen([str(ADCSC), "node", "--config", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=stderr)
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
        path = self.root / f"{self.node_id}.log"
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


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


def submit(node, pkcs10, template="JamfDevice", ctx=None):
    return call(node, "POST", "/api/v1/certificate/request",
                {"pkcs10": pkcs10, "template": template, "config": {"dc": DC, "ca": CA}}, ctx=ctx)


def retrieve(node, request_id, ctx=None):
    return call(node, "POST", "/api/v1/certificate/retrieve", {"request-id": request_id, "config": {"dc": DC, "ca": CA}},
                ctx=ctx)


class TempRoot:
    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="adcsc-it-")
        return Path(self._tmp.name)

    def __exit__(self, *exc):
        self._tmp.cleanup()
