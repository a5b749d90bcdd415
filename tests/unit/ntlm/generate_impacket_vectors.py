#!/usr/bin/python3
"""Regenerates impacket_vectors.h: NTLM interop vectors computed by impacket.

Not run by the build. Run by hand (Debian 12: apt-get install python3-impacket) from this
folder:

    /usr/bin/python3 generate_impacket_vectors.py > impacket_vectors.h

Two directions are covered:

1. impacket as the client, our ServerContext as the server. impacket builds NEGOTIATE and
   AUTHENTICATE (getNTLMSSPType1 / getNTLMSSPType3) against OUR_CHALLENGE, the CHALLENGE our
   ServerContext emits for impacket's NEGOTIATE with the fixed inputs below (the C++ test checks
   that it still does). impacket's randomness (client challenge, session key) is seeded so the
   output is reproducible. impacket then seals DCE/RPC-shaped PDUs in both directions with its
   SEAL(); the test feeds them through our Session.

2. Our ClientContext as the client, with its randomness fixed to CLIENT_CHALLENGE and
   RANDOM_SESSION_KEY. The NTLMv2 response, encrypted session key and a sealed PDU our client
   must produce are computed here from impacket's primitives (NTOWFv2, hmac_md5, SEALKEY,
   SIGNKEY, SEAL), following MS-NLMP 3.3.2 and 3.1.5.1.2: the server's timestamp is used and
   MsvAvFlags = 2 (MIC present) is appended to the client's copy of the target info.
"""

import random
import struct

from Cryptodome.Cipher import ARC4
from impacket import ntlm
from impacket import version as impacket_version

# --- Fixed inputs (mirrored in the C++ test) ----------------------------------------------------
DOMAIN = 'CORP'
USER = 'alice'
PASSWORD = 'S3cret!pw'
IMPACKET_WORKSTATION = 'WKSTN01'
IMPACKET_SEED = 1337
SERVER_CHALLENGE = bytes.fromhex('3f8a0c6b92d1e457')
SERVER_FILETIME = 0x01da5b2f8c3e1200
CLIENT_CHALLENGE = bytes.fromhex('0102030405060708')
RANDOM_SESSION_KEY = bytes.fromhex('a0a1a2a3a4a5a6a7a8a9aaabacadaeaf')

# What ServerContext(names CORP / CA01 / corp.example.com / ca01.corp.example.com, randomness
# SERVER_CHALLENGE, clock SERVER_FILETIME) answers to impacket's NEGOTIATE.
OUR_CHALLENGE = bytes.fromhex(
    '4e544c4d53535000020000000800080038000000358289e23f8a0c6b92d1e457'
    '00000000000000007a007a00400000000a0000000000000f43004f0052005000'
    '0200080043004f00520050000100080043004100300031000400200063006f00'
    '720070002e006500780061006d0070006c0065002e0063006f006d0003002a00'
    '63006100300031002e0063006f00720070002e006500780061006d0070006c00'
    '65002e0063006f006d000700080000123e8c2f5bda0100000000')

# What our ClientContext (CORP\\alice, workstation LINUX01, randomness CLIENT_CHALLENGE then
# RANDOM_SESSION_KEY) sends: its NEGOTIATE, and its answer to OUR_CHALLENGE with the MIC field
# zeroed. The MIC over the three messages is computed here; the C++ test checks both.
OUR_NEGOTIATE = bytes.fromhex('4e544c4d5353500001000000358288e2000000002800000000000000280000000a0000000000000f')
OUR_AUTHENTICATE_MIC_ZEROED = bytes.fromhex(
    '4e544c4d53535000030000001800180078000000b200b2009000000008000800580000000a000a00600000000e000e00'
    '6a0000001000100042010000358288e20a0000000000000f0000000000000000000000000000000043004f0052005000'
    '61006c006900630065004c0049004e0055005800300031000000000000000000000000000000000000000000000000'
    '0005b817294cb161b5956d3fab2a907df5010100000000000000123e8c2f5bda01010203040506070800000000020008'
    '0043004f00520050000100080043004100300031000400200063006f00720070002e006500780061006d0070006c0065'
    '002e0063006f006d0003002a0063006100300031002e0063006f00720070002e006500780061006d0070006c0065002e'
    '0063006f006d000700080000123e8c2f5bda01060004000200000000000000000000007f5dc5cc058b2fd3825dad9662'
    '065fcc')
MIC_OFFSET = 72


def request_pdu(call_id, opnum, stub):
    """A DCE/RPC request PDU at PKT_PRIVACY: header, stub, padding, sec_trailer.

    Returns (bytes to sign = whole PDU without the 16-byte verifier, stub offset, stub length).
    """
    pad = (4 - len(stub) % 4) % 4
    body = stub + b'\xbb' * pad
    frag_len = 24 + len(body) + 8 + 16
    header = struct.pack('<BBBBIHHIIHH', 5, 0, 0, 0x03, 0x10, frag_len, 16, call_id, len(stub), 0, opnum)
    trailer = struct.pack('<BBBBI', 0x0a, 6, pad, 0, 79231)
    return header + body + trailer, 24, len(body)


def response_pdu(call_id, stub):
    pad = (4 - len(stub) % 4) % 4
    body = stub + b'\xbb' * pad
    frag_len = 24 + len(body) + 8 + 16
    header = struct.pack('<BBBBIHHIIHBB', 5, 0, 2, 0x03, 0x10, frag_len, 16, call_id, len(stub), 0, 0, 0)
    trailer = struct.pack('<BBBBI', 0x0a, 6, pad, 0, 79231)
    return header + body + trailer, 24, len(body)


def seal(flags, session_key, mode, handle, seq, pdu):
    """impacket's SEAL over a PDU: the whole PDU is signed, only the stub region is sealed."""
    message, offset, length = pdu
    sign_key = ntlm.SIGNKEY(flags, session_key, mode)
    sealed_stub, signature = ntlm.SEAL(flags, sign_key, None, message, message[offset:offset + length], seq, handle)
    return message[:offset] + sealed_stub + message[offset + length:], signature.getData()


def emit(name, data, comment=None):
    if comment:
        print('// %s' % comment)
    text = data.hex()
    one_line = 'inline constexpr char %s[] = "%s";' % (name, text)
    if len(one_line) <= 120:  # The project's clang-format column limit: keep the output stable.
        print(one_line)
        return
    lines = [text[i:i + 96] for i in range(0, len(text), 96)]
    print('inline constexpr char %s[] =' % name)
    for i, line in enumerate(lines):
        print('    "%s"%s' % (line, ';' if i == len(lines) - 1 else ''))


def impacket_as_client():
    type1 = ntlm.getNTLMSSPType1(IMPACKET_WORKSTATION, '', signingRequired=True)
    negotiate = type1.getData()
    random.seed(IMPACKET_SEED)
    type3, exported = ntlm.getNTLMSSPType3(type1, OUR_CHALLENGE, USER, PASSWORD, DOMAIN)
    authenticate = type3.getData()
    flags = type3['flags']

    client_handle = ARC4.new(ntlm.SEALKEY(flags, exported, 'Client')).encrypt
    server_handle = ARC4.new(ntlm.SEALKEY(flags, exported, 'Server')).encrypt
    requests = [request_pdu(1, 0, b'certificate request stub \x00\x01\x02'),
                request_pdu(2, 1, bytes(range(7, 7 + 61)))]
    responses = [response_pdu(1, b'\x00\x00\x00\x00' + b'response one'),
                 response_pdu(2, bytes(range(200, 256)) + b'\x00' * 9)]

    emit('kImpacketNegotiate', negotiate, 'impacket getNTLMSSPType1(%r, signingRequired=True).' % IMPACKET_WORKSTATION)
    emit('kOurChallengeToImpacket', OUR_CHALLENGE, 'Our ServerContext\'s answer (input to impacket).')
    emit('kImpacketAuthenticate', authenticate,
         'impacket getNTLMSSPType3(..., %r, %r, %r), random.seed(%d).' % (USER, '<password>', DOMAIN, IMPACKET_SEED))
    emit('kImpacketExportedSessionKey', exported)
    for i, pdu in enumerate(requests):
        sealed, signature = seal(flags, exported, 'Client', client_handle, i, pdu)
        emit('kImpacketRequest%dPlain' % i, pdu[0], 'Request %d (client seq %d): stub at %d, %d bytes.' %
             (i, i, pdu[1], pdu[2]))
        emit('kImpacketRequest%dSealed' % i, sealed)
        emit('kImpacketRequest%dSignature' % i, signature)
    for i, pdu in enumerate(responses):
        sealed, signature = seal(flags, exported, 'Server', server_handle, i, pdu)
        emit('kServerResponse%dPlain' % i, pdu[0], 'Response %d (server seq %d) as impacket seals it.' % (i, i))
        emit('kServerResponse%dSealed' % i, sealed)
        emit('kServerResponse%dSignature' % i, signature)


def our_client_expected():
    challenge = ntlm.NTLMAuthChallenge(OUR_CHALLENGE)
    av_pairs = ntlm.AV_PAIRS(challenge['TargetInfoFields'])
    timestamp = av_pairs[ntlm.NTLMSSP_AV_TIME][1]
    assert struct.unpack('<Q', timestamp)[0] == SERVER_FILETIME
    av_pairs[ntlm.NTLMSSP_AV_FLAGS] = struct.pack('<I', 2)
    blob = (b'\x01\x01' + b'\x00' * 6 + timestamp + CLIENT_CHALLENGE + b'\x00' * 4 + av_pairs.getData() +
            b'\x00' * 4)
    response_key = ntlm.NTOWFv2(USER, PASSWORD, DOMAIN)
    nt_proof = ntlm.hmac_md5(response_key, challenge['challenge'] + blob)
    session_base_key = ntlm.hmac_md5(response_key, nt_proof)
    encrypted_key = ntlm.generateEncryptedSessionKey(session_base_key, RANDOM_SESSION_KEY)
    flags = ntlm.NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY | ntlm.NTLMSSP_NEGOTIATE_KEY_EXCH | \
        ntlm.NTLMSSP_NEGOTIATE_128
    handle = ARC4.new(ntlm.SEALKEY(flags, RANDOM_SESSION_KEY, 'Client')).encrypt
    pdu = request_pdu(1, 0, b'our client request')
    sealed, signature = seal(flags, RANDOM_SESSION_KEY, 'Client', handle, 0, pdu)

    # Our recorded AUTHENTICATE must carry exactly these values (checked here, where they were
    # computed independently), before its MIC is computed.
    ours = ntlm.NTLMAuthChallengeResponse()
    ours.fromString(OUR_AUTHENTICATE_MIC_ZEROED)
    assert ours['ntlm'] == nt_proof + blob, 'our NT response differs from impacket'
    assert OUR_AUTHENTICATE_MIC_ZEROED.endswith(encrypted_key), 'our encrypted session key differs'
    assert OUR_AUTHENTICATE_MIC_ZEROED[MIC_OFFSET:MIC_OFFSET + 16] == b'\x00' * 16
    mic = ntlm.hmac_md5(RANDOM_SESSION_KEY, OUR_NEGOTIATE + OUR_CHALLENGE + OUR_AUTHENTICATE_MIC_ZEROED)

    emit('kOurClientNtResponse', nt_proof + blob, 'Our client, client challenge %s, random session key %s.' %
         (CLIENT_CHALLENGE.hex(), RANDOM_SESSION_KEY.hex()))
    emit('kOurClientEncryptedSessionKey', encrypted_key)
    emit('kOurClientAuthenticateMicZeroed', OUR_AUTHENTICATE_MIC_ZEROED, 'Recorded input (see the script).')
    emit('kOurClientMic', mic, 'HMAC_MD5(ExportedSessionKey, NEGOTIATE || CHALLENGE || AUTHENTICATE).')
    emit('kOurClientRequestPlain', pdu[0], 'Stub at %d, %d bytes.' % (pdu[1], pdu[2]))
    emit('kOurClientRequestSealed', sealed)
    emit('kOurClientRequestSignature', signature)


def main():
    print('// Generated by generate_impacket_vectors.py with impacket %s; do not edit.' % impacket_version.version)
    print('// NTLM interop vectors computed by impacket; see the script for the inputs.')
    print('// Thread-safety: constants only.')
    print('#pragma once')
    print()
    print('namespace adcsc::ntlm::impacket {')
    print()
    impacket_as_client()
    print()
    our_client_expected()
    print()
    print('}  // namespace adcsc::ntlm::impacket')


if __name__ == '__main__':
    main()
