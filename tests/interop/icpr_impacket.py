"""Interop: impacket (python3-impacket 0.10, a DCE/RPC + NTLMSSP implementation we did not
write) talks to our ADCS emulator. It finds ICertPassage through the endpoint mapper, binds
with NTLMv2 at packet privacy, submits a CSR and gets a certificate, submits to a pending
template and retrieves the certificate after an approval, and is refused (E_ACCESSDENIED) at
packet integrity and at connect level, as a CA with IF_ENFORCEENCRYPTICERTREQUEST refuses.
This shows our server speaks the wire format a client we did not write speaks.

Run by Debian's /usr/bin/python3 (ctest does this); needs ADCSC_BIN_DIR for adcs-emulator.
Only the CertServerRequest structures are declared here: impacket 0.10 has no icpr module.
"""
import sys
import unittest
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from impacket.dcerpc.v5 import epm, transport
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, NULL, PBYTE, ULONG
from impacket.dcerpc.v5.ndr import NDRCALL, NDRSTRUCT
from impacket.dcerpc.v5.rpcrt import (RPC_C_AUTHN_LEVEL_CONNECT, RPC_C_AUTHN_LEVEL_PKT_INTEGRITY,
                                      RPC_C_AUTHN_LEVEL_PKT_PRIVACY, RPC_C_AUTHN_WINNT)
from impacket.uuid import uuidtup_to_bin

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import harness as h  # noqa: E402

MSRPC_UUID_ICPR = uuidtup_to_bin(("91ae6020-9e3c-11cf-8d7c-00aa00c091be", "0.0"))
E_ACCESSDENIED = 0x80070005
CR_DISP_ISSUED, CR_DISP_UNDER_SUBMISSION = 3, 5


# MS-ICPR 2.2.2.2 / MS-WCCE 2.2.2.2: CERTTRANSBLOB { ULONG cb; [size_is(cb), unique] BYTE* pb; }
class CERTTRANSBLOB(NDRSTRUCT):
    structure = (("cb", ULONG), ("pb", PBYTE))


# MS-ICPR 3.2.4.1.1: DWORD CertServerRequest(handle_t, [in] DWORD dwFlags,
#   [in, string, unique] wchar_t* pwszAuthority, [in, out, ref] DWORD* pdwRequestId,
#   [out] DWORD* pdwDisposition, [in, ref] CERTTRANSBLOB* pctbAttribs,
#   [in, ref] CERTTRANSBLOB* pctbRequest, [out, ref] CERTTRANSBLOB* pctbCert,
#   [out, ref] CERTTRANSBLOB* pctbEncodedCert, [out, ref] CERTTRANSBLOB* pctbDispositionMessage)
class CertServerRequest(NDRCALL):
    opnum = 0
    structure = (("dwFlags", DWORD), ("pwszAuthority", LPWSTR), ("pdwRequestId", DWORD),
                 ("pctbAttribs", CERTTRANSBLOB), ("pctbRequest", CERTTRANSBLOB))


class CertServerRequestResponse(NDRCALL):
    structure = (("pdwRequestId", DWORD), ("pdwDisposition", ULONG), ("pctbCert", CERTTRANSBLOB),
                 ("pctbEncodedCert", CERTTRANSBLOB), ("pctbDispositionMessage", CERTTRANSBLOB),
                 ("ErrorCode", ULONG))


def blob(data: bytes):
    b = CERTTRANSBLOB()
    b["cb"] = len(data)
    b["pb"] = list(data) if data else NULL
    return b


def blob_bytes(b) -> bytes:
    return b"".join(x if isinstance(x, bytes) else bytes([x]) for x in b["pb"]) if b["cb"] else b""


def make_csr(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


class ImpacketAgainstEmulator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._root_ctx = h.TempRoot()
        cls.root = cls._root_ctx.__enter__()
        cls.emulator = h.Emulator(cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.emulator.stop()
        cls._root_ctx.__exit__(None, None, None)

    def icpr_port(self):
        """ept_map through impacket's own endpoint-mapper client, on the emulator's port."""
        t = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{self.emulator.epm_port}]")
        dce = t.get_dce_rpc()
        dce.connect()
        try:
            binding = epm.hept_map("127.0.0.1", MSRPC_UUID_ICPR, protocol="ncacn_ip_tcp", dce=dce)
        finally:
            dce.disconnect()
        return int(binding.split("[")[1].rstrip("]"))

    def connect(self, level, password="Correct-Horse-1"):
        port = self.icpr_port()
        self.assertEqual(port, self.emulator.icpr_port)
        t = transport.DCERPCTransportFactory(f"ncacn_ip_tcp:127.0.0.1[{port}]")
        t.set_credentials("svc-adcsc", password, "EXAMPLE")
        dce = t.get_dce_rpc()
        dce.set_auth_type(RPC_C_AUTHN_WINNT)
        dce.set_auth_level(level)
        dce.connect()
        dce.bind(MSRPC_UUID_ICPR)
        return dce

    def call(self, dce, request_id=0, csr=b"", template=None):
        req = CertServerRequest()
        req["dwFlags"] = 0
        req["pwszAuthority"] = h.CA + "\x00"
        req["pdwRequestId"] = request_id
        attributes = f"CertificateTemplate:{template}\x00".encode("utf-16-le") if template else b""
        req["pctbAttribs"] = blob(attributes)
        req["pctbRequest"] = blob(csr)
        return dce.request(req, checkError=False)

    def test_submit_at_packet_privacy_gets_a_certificate(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        try:
            answer = self.call(dce, csr=make_csr("impacket-device"), template="JamfDevice")
        finally:
            dce.disconnect()
        self.assertEqual(answer["ErrorCode"], 0)
        self.assertEqual(answer["pdwDisposition"], CR_DISP_ISSUED)
        self.assertGreater(answer["pdwRequestId"], 0)
        cert = x509.load_der_x509_certificate(blob_bytes(answer["pctbEncodedCert"]))
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, "impacket-device")

    def test_pending_then_retrieved_after_approval(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        try:
            answer = self.call(dce, csr=make_csr("impacket-pending"), template="Pending")
            self.assertEqual(answer["ErrorCode"], 0)
            self.assertEqual(answer["pdwDisposition"], CR_DISP_UNDER_SUBMISSION)
            rid = answer["pdwRequestId"]
            self.emulator.ctl("approve", "--id", str(rid))
            # The same authenticated connection, a second call: sequence numbers and RC4 state go on.
            answer = self.call(dce, request_id=rid)
        finally:
            dce.disconnect()
        self.assertEqual(answer["ErrorCode"], 0)
        self.assertEqual(answer["pdwDisposition"], CR_DISP_ISSUED)
        self.assertEqual(answer["pdwRequestId"], rid)
        x509.load_der_x509_certificate(blob_bytes(answer["pctbEncodedCert"]))

    def test_packet_integrity_is_refused(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_PKT_INTEGRITY)
        try:
            answer = self.call(dce, csr=make_csr("impacket-integrity"), template="JamfDevice")
        finally:
            dce.disconnect()
        self.assertEqual(answer["ErrorCode"], E_ACCESSDENIED)

    def test_connect_level_is_refused(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_CONNECT)
        try:
            answer = self.call(dce, csr=make_csr("impacket-connect"), template="JamfDevice")
        finally:
            dce.disconnect()
        self.assertEqual(answer["ErrorCode"], E_ACCESSDENIED)

    def test_wrong_password_is_refused(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_PKT_PRIVACY, password="wrong")
        try:
            with self.assertRaises(Exception) as caught:
                self.call(dce, csr=make_csr("impacket-wrong"), template="JamfDevice")
        finally:
            dce.disconnect()
        self.assertIn("access_denied", str(caught.exception).lower())

    def test_attribute_length_without_terminator_is_invalid_arg(self):
        dce = self.connect(RPC_C_AUTHN_LEVEL_PKT_PRIVACY)
        try:
            req = CertServerRequest()
            req["dwFlags"] = 0
            req["pwszAuthority"] = h.CA + "\x00"
            req["pdwRequestId"] = 0
            req["pctbAttribs"] = blob("CertificateTemplate:JamfDevice".encode("utf-16-le"))  # cb without the NUL
            req["pctbRequest"] = blob(make_csr("impacket-badattr"))
            answer = dce.request(req, checkError=False)
        finally:
            dce.disconnect()
        self.assertEqual(answer["ErrorCode"], 0x80070057)


if __name__ == "__main__":
    unittest.main(verbosity=2)
