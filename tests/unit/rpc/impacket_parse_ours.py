#!/usr/bin/python3
"""The reverse of impacket_vectors.py: impacket must parse what adcsc_rpc encodes.

The hex below was printed by a throw-away C++ program calling our encoders (values listed
next to each check); impacket 0.10 then decodes it with its own classes and the asserts check
the fields. Not run by the build; run by hand after changing an encoder:

    /usr/bin/python3 tests/unit/rpc/impacket_parse_ours.py
"""

import os
import sys

from impacket.dcerpc.v5 import epm, rpcrt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from impacket_vectors import CertServerRequest, CertServerRequestResponse  # noqa: E402

OURS = {
    'epm_response': (
        '0000000000000000000000000000000000000000020000000400000000000000020000000000020004000200'
        '4b0000004b000000050013000d2060ae913c9ecf118d7c00aa00c091be00000200000013000d045d888aeb1c'
        'c9119fe808002b10486002000200000001000b020000000100070200c20301000904000a000005004b000000'
        '4b000000050013000d2060ae913c9ecf118d7c00aa00c091be00000200000013000d045d888aeb1cc9119fe8'
        '08002b10486002000200000001000b020000000100070200c20401000904000a0000060000000000'),
    'epm_request': (
        '0100000000000000000000000000000000000000020000004b0000004b000000050013000d2060ae913c9ecf'
        '118d7c00aa00c091be00000200000013000d045d888aeb1cc9119fe808002b10486002000200000001000b02'
        '0000000100070200000001000904000000000000000000000000000000000000000000000000000001000000'),
    'icpr_in': (
        '000100000000020004000000000000000400000043004100e900000000000000380000000400020038000000'
        '43006500720074006900660069006300610074006500540065006d0070006c006100740065003a004d006100'
        '6300680069006e00650000000d000000080002000d00000030303030303030303030303030'),
    'icpr_out': (
        '0500000003000000090000000000020009000000313131313131313131000000050000000400020005000000'
        '32323232320000000e000000080002000e0000004900730073007500650064000000000000000000'),
    'bind_ack': (
        '05000c031000000068000c0001000000d016d0163412000006003439363637000200000000000000045d888a'
        'eb1cc9119fe808002b104860020000000300030000000000000000000000000000000000000000000a060000'
        '7f3501004e4e4e4e4e4e4e4e4e4e4e4e'),
    'sealed_request': (
        '0500000310000000600010000500000025000000000000001111111111111111111111111111111111111111'
        '111111111111111111111111111111111100000000000000000000000a060b00000000000000000000000000'
        '0000000000000000'),
}


def ours(name):
    return bytes.fromhex(''.join(OURS[name]))


def main():
    # EncodeEptMapResponse: max_towers 4, towers for ICPR on 10.0.0.5:49667 and 10.0.0.6:49668.
    resp = epm.ept_mapResponse(ours('epm_response'))
    assert resp['num_towers'] == 2 and resp['status'] == 0
    ports = []
    for tower_ptr in resp['ITowers']:
        tower = epm.EPMTower(b''.join(tower_ptr['Data']['tower_octet_string']))
        ports.append(epm.EPMPortAddr(tower['Floors'][3].getData())['IpPort'])
    assert ports == [49667, 49668], ports

    # EncodeEptMapRequest: the ICPR query tower, max_towers 1.
    req = epm.ept_map(ours('epm_request'))
    assert req['max_towers'] == 1 and req['map_tower']['tower_length'] == 75

    # EncodeCertServerRequestIn: flags 0x100, authority "CA\u00e9", template Machine, 13-byte request.
    icpr_in = CertServerRequest(ours('icpr_in'))
    assert icpr_in['dwFlags'] == 0x100
    assert icpr_in['pwszAuthority'] == 'CA\u00e9\x00'
    attribs = b''.join(icpr_in['pctbAttribs']['pb']).decode('utf-16-le')
    assert attribs == 'CertificateTemplate:Machine\x00', attribs
    assert icpr_in['pctbRequest']['cb'] == 13 and b''.join(icpr_in['pctbRequest']['pb']) == b'0' * 13

    # EncodeCertServerRequestOut: id 5, issued, 9-byte chain, 5-byte cert, message "Issued".
    icpr_out = CertServerRequestResponse(ours('icpr_out'))
    assert (icpr_out['pdwRequestId'], icpr_out['pdwDisposition'], icpr_out['ErrorCode']) == (5, 3, 0)
    assert b''.join(icpr_out['pctbCert']['pb']) == b'1' * 9
    assert b''.join(icpr_out['pctbEncodedCert']['pb']) == b'2' * 5
    assert b''.join(icpr_out['pctbDispositionMessage']['pb']).decode('utf-16-le') == 'Issued\x00'

    # EncodePdu(bind_ack): secondary address 49667, results accept + negotiate_ack(3), a
    # 12-byte verifier.
    ack = rpcrt.MSRPCBindAck(ours('bind_ack'))
    assert ack['SecondaryAddr'] == '49667' and ack['SecondaryAddrLen'] == 6
    assert [(c['Result'], c['Reason']) for c in ack.getCtxItems()] == [(0, 0), (3, 3)]
    assert ack['auth_len'] == 12 and ack['auth_data'] == b'N' * 12

    # EncodeWithAuthPlaceholder(request, 37-byte stub): stub padded to 48, 16-byte verifier.
    sealed = rpcrt.MSRPCRequestHeader(ours('sealed_request'))
    trailer = rpcrt.SEC_TRAILER(sealed['sec_trailer'])
    assert sealed['frag_len'] == 96 and sealed['auth_len'] == 16
    assert trailer['auth_pad_len'] == 11 and sealed['pduData'][:37] == b'\x11' * 37
    print('impacket parsed every adcsc encoding')


if __name__ == '__main__':
    main()
