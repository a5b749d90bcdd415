#!/usr/bin/python3
"""Reference byte strings for the adcsc_rpc unit tests, produced by impacket.

impacket is an independent DCE/RPC implementation, so encoding the same values with it and
comparing bytes checks our NDR and PDU code against someone else's reading of the specs.
The build does not run this script: its output was pasted into pdu_test.cc, epm_stub_test.cc
and icpr_stub_test.cc. To regenerate (Debian 12, python3-impacket 0.10):

    /usr/bin/python3 tests/unit/rpc/impacket_vectors.py

Each vector prints as `name = <hex>`. Notes on choices:
  * impacket draws unique-pointer referent IDs at random; we pin them to the values our
    NdrWriter produces (0x00020000, +4, ... as MIDL does; 1, 2 for ept_map, as impacket's own
    hept_map does for old Windows endpoint mappers).
  * impacket 0.10 has no MS-ICPR module; CertServerRequest is declared below from the
    MS-ICPR IDL (section 3.2.4.1.1) with impacket's NDR types.
"""

import socket
from struct import pack

from impacket import ntlm
from impacket.dcerpc.v5 import epm, rpcrt
from impacket.dcerpc.v5.dtypes import DWORD, LPWSTR, NULL, PBYTE, ULONG
from impacket.dcerpc.v5.ndr import NDRCALL, NDRSTRUCT
from impacket.uuid import uuidtup_to_bin

ICPR = ('91ae6020-9e3c-11cf-8d7c-00aa00c091be', '0.0')
EPM = ('e1af8308-5d1f-11c9-91a4-08002b14a0fa', '3.0')
NDR20 = ('8a885d04-1ceb-11c9-9fe8-08002b104860', '2.0')
BIND_FEATURES = ('6cb71c2c-9812-4540-0300-000000000000', '1.0')


def emit(name, data):
    print('%s = %s' % (name, data.hex()))


# --- MS-ICPR, declared from the IDL -------------------------------------------------------

class CERTTRANSBLOB(NDRSTRUCT):
    # typedef struct _CERTTRANSBLOB { ULONG cb; [size_is(cb), unique] BYTE* pb; }
    structure = (
        ('cb', ULONG),
        ('pb', PBYTE),
    )


class CertServerRequest(NDRCALL):
    opnum = 0
    structure = (
        ('dwFlags', DWORD),
        ('pwszAuthority', LPWSTR),
        ('pdwRequestId', DWORD),
        ('pctbAttribs', CERTTRANSBLOB),
        ('pctbRequest', CERTTRANSBLOB),
    )


class CertServerRequestResponse(NDRCALL):
    structure = (
        ('pdwRequestId', DWORD),
        ('pdwDisposition', ULONG),
        ('pctbCert', CERTTRANSBLOB),
        ('pctbEncodedCert', CERTTRANSBLOB),
        ('pctbDispositionMessage', CERTTRANSBLOB),
        ('ErrorCode', ULONG),
    )


def blob(struct, data, referent):
    struct['cb'] = len(data)
    if data:
        struct['pb'] = list(data)
        struct.fields['pb'].fields['ReferentID'] = referent
    else:
        struct['pb'] = NULL


def icpr_vectors():
    attribs = 'CertificateTemplate:User\x00'.encode('utf-16-le')
    csr = bytes(range(1, 38))  # 37 bytes: exercises the padding before the next field
    req = CertServerRequest()
    req['dwFlags'] = 0
    req['pwszAuthority'] = 'corp-CA1-CA\x00'
    req.fields['pwszAuthority'].fields['ReferentID'] = 0x00020000
    req['pdwRequestId'] = 0
    blob(req['pctbAttribs'], attribs, 0x00020004)
    blob(req['pctbRequest'], csr, 0x00020008)
    emit('icpr_request', req.getData())

    # Null authority, empty attributes (null pb): only the request blob has a referent.
    req2 = CertServerRequest()
    req2['dwFlags'] = 0x100
    req2['pwszAuthority'] = NULL
    req2['pdwRequestId'] = 7
    blob(req2['pctbAttribs'], b'', 0)
    blob(req2['pctbRequest'], b'\x30\x03\x02\x01\x00', 0x00020000)
    emit('icpr_request_null_authority', req2.getData())

    resp = CertServerRequestResponse()
    resp['pdwRequestId'] = 42
    resp['pdwDisposition'] = 3
    blob(resp['pctbCert'], bytes(range(0x30, 0x30 + 11)), 0x00020000)
    blob(resp['pctbEncodedCert'], bytes(range(0x80, 0x80 + 6)), 0x00020004)
    blob(resp['pctbDispositionMessage'], 'Issued\x00'.encode('utf-16-le'), 0x00020008)
    resp['ErrorCode'] = 0
    emit('icpr_response', resp.getData())

    # A denial: no certificate, a message, an HRESULT in the return value.
    resp2 = CertServerRequestResponse()
    resp2['pdwRequestId'] = 43
    resp2['pdwDisposition'] = 2
    blob(resp2['pctbCert'], b'', 0)
    blob(resp2['pctbEncodedCert'], b'', 0)
    blob(resp2['pctbDispositionMessage'], 'Denied by Policy Module\x00'.encode('utf-16-le'), 0x00020000)
    resp2['ErrorCode'] = 0x80094012
    emit('icpr_response_denied', resp2.getData())


# --- Endpoint mapper ------------------------------------------------------------------------

def tcp_tower(iface, port, ip):
    tower = epm.EPMTower()
    interface = epm.EPMRPCInterface()
    ifbin = uuidtup_to_bin(iface)
    interface['InterfaceUUID'] = ifbin[:16]
    interface['MajorVersion'] = int(iface[1].split('.')[0])
    interface['MinorVersion'] = int(iface[1].split('.')[1])
    data_rep = epm.EPMRPCDataRepresentation()
    ndr = uuidtup_to_bin(NDR20)
    data_rep['DataRepUuid'] = ndr[:16]
    data_rep['MajorVersion'] = 2
    data_rep['MinorVersion'] = 0
    prot = epm.EPMProtocolIdentifier()
    prot['ProtIdentifier'] = epm.FLOOR_RPCV5_IDENTIFIER
    port_addr = epm.EPMPortAddr()
    port_addr['IpPort'] = port
    host_addr = epm.EPMHostAddr()
    host_addr['Ip4addr'] = socket.inet_aton(ip)
    tower['NumberOfFloors'] = 5
    tower['Floors'] = (interface.getData() + data_rep.getData() + prot.getData() + port_addr.getData() +
                       host_addr.getData())
    return tower.getData()


def epm_vectors():
    # Exactly what epm.hept_map(host, ICPR, protocol='ncacn_ip_tcp') sends.
    query = tcp_tower(ICPR, 0, '0.0.0.0')
    emit('epm_query_tower', query)
    request = epm.ept_map()
    request['max_towers'] = 1
    request['map_tower']['tower_length'] = len(query)
    request['map_tower']['tower_octet_string'] = query
    request.fields['obj'].fields['ReferentID'] = 1
    request.fields['map_tower'].fields['ReferentID'] = 2
    emit('epm_request', request.getData())

    # A server's answer: one tower naming port 49667 on 10.0.0.5.
    answer = tcp_tower(ICPR, 49667, '10.0.0.5')
    emit('epm_answer_tower', answer)
    response = epm.ept_mapResponse()
    response['entry_handle']['context_handle_attributes'] = 0
    response['num_towers'] = 1
    tower_ptr = epm.twr_p_t()
    tower_ptr['tower_length'] = len(answer)
    tower_ptr['tower_octet_string'] = answer
    tower_ptr.fields['ReferentID'] = 0x00020000
    response['ITowers'].append(tower_ptr)
    response.fields['ITowers'].fields['MaximumCount'] = 1
    response['status'] = 0
    emit('epm_response', response.getData())


# --- PDUs -----------------------------------------------------------------------------------

def pdu_vectors():
    # Plain bind as DCERPC_v5.bind() builds it: one context, max frags 4280, call_id 1.
    bind = rpcrt.MSRPCBind()
    item = rpcrt.CtxItem()
    item['AbstractSyntax'] = uuidtup_to_bin(ICPR)
    item['TransferSyntax'] = uuidtup_to_bin(NDR20)
    item['ContextID'] = 0
    item['TransItems'] = 1
    bind.addCtxItem(item)
    packet = rpcrt.MSRPCHeader()
    packet['type'] = rpcrt.MSRPC_BIND
    packet['pduData'] = bind.getData()
    packet['call_id'] = 1
    emit('pdu_bind', packet.get_packet())

    # Bind offering NDR20 and the bind-time feature negotiation syntax (as Windows clients do),
    # with an NTLM NEGOTIATE in the verifier (auth_type 10, level 6, context 79231).
    bind2 = rpcrt.MSRPCBind()
    bind2['max_tfrag'] = 5840
    bind2['max_rfrag'] = 5840
    for ctx_id, transfer in ((0, NDR20), (1, BIND_FEATURES)):
        item = rpcrt.CtxItem()
        item['AbstractSyntax'] = uuidtup_to_bin(ICPR)
        item['TransferSyntax'] = uuidtup_to_bin(transfer)
        item['ContextID'] = ctx_id
        item['TransItems'] = 1
        bind2.addCtxItem(item)
    packet = rpcrt.MSRPCHeader()
    packet['type'] = rpcrt.MSRPC_BIND
    packet['pduData'] = bind2.getData()
    packet['call_id'] = 1
    packet['flags'] = rpcrt.PFC_FIRST_FRAG | rpcrt.PFC_LAST_FRAG | rpcrt.MSRPC_SUPPORT_SIGN
    negotiate = ntlm.getNTLMSSPType1('', '', signingRequired=True, use_ntlmv2=True).getData()
    emit('ntlm_negotiate', negotiate)
    trailer = rpcrt.SEC_TRAILER()
    trailer['auth_type'] = rpcrt.RPC_C_AUTHN_WINNT
    trailer['auth_level'] = rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    trailer['auth_ctx_id'] = 79231
    packet['sec_trailer'] = trailer
    packet['auth_data'] = negotiate
    emit('pdu_bind_ntlm', packet.get_packet())

    # bind_ack as a Windows server sends it: secondary address "49667", one accepted context
    # and the feature-negotiation answer (result 3, reason = accepted bitmask 3).
    ack = rpcrt.MSRPCBindAck()
    ack['type'] = rpcrt.MSRPC_BINDACK
    ack['call_id'] = 1
    ack['max_tfrag'] = 5840
    ack['max_rfrag'] = 5840
    ack['assoc_group'] = 0x00012345
    ack['SecondaryAddr'] = b'49667'  # 'z' format appends the NUL
    ack['SecondaryAddrLen'] = 6
    ack['Pad'] = b'\x00' * ((4 - ((6 + 26) % 4)) % 4)
    ack['ctx_num'] = 2
    accepted = rpcrt.CtxItemResult()
    accepted['Result'] = 0
    accepted['Reason'] = 0
    accepted['TransferSyntax'] = uuidtup_to_bin(NDR20)
    negotiated = rpcrt.CtxItemResult()
    negotiated['Result'] = 3
    negotiated['Reason'] = 3
    negotiated['TransferSyntax'] = b'\x00' * 20
    ack['ctx_items'] = accepted.getData() + negotiated.getData()
    ack['pduData'] = b''
    # MSRPCBindAck computes frag_len from pduData only (it is meant for parsing), so set it
    # from the serialized length.
    ack['frag_len'] = len(ack.getData())
    emit('pdu_bind_ack', ack.getData())

    # A request carrying the ept_map stub (opnum 3, call_id 2), no auth.
    stub = bytes.fromhex('0102030405060708090a0b0c0d0e0f10111213')
    req = rpcrt.MSRPCRequestHeader()
    req['op_num'] = 3
    req['ctx_id'] = 0
    req['call_id'] = 2
    req['alloc_hint'] = len(stub)
    req['pduData'] = stub
    emit('pdu_request', req.get_packet())

    # The same request with an object UUID.
    req = rpcrt.MSRPCRequestHeader()
    req['op_num'] = 0
    req['ctx_id'] = 1
    req['call_id'] = 5
    req['alloc_hint'] = len(stub)
    req['flags'] |= rpcrt.PFC_OBJECT_UUID
    req['uuid'] = uuidtup_to_bin(('12345678-9abc-def0-1122-334455667788', '0.0'))[:16]
    req['pduData'] = stub
    emit('pdu_request_object', req.get_packet())

    # A request with impacket's own auth layout: stub padded to 4 bytes (0xBB), sec_trailer
    # with auth_pad_length, and a 16-byte verifier (here a dummy value).
    req = rpcrt.MSRPCRequestHeader()
    req['op_num'] = 0
    req['ctx_id'] = 0
    req['call_id'] = 3
    req['alloc_hint'] = len(stub)
    req['pduData'] = stub
    trailer = rpcrt.SEC_TRAILER()
    trailer['auth_type'] = rpcrt.RPC_C_AUTHN_WINNT
    trailer['auth_level'] = rpcrt.RPC_C_AUTHN_LEVEL_PKT_PRIVACY
    trailer['auth_ctx_id'] = 79231
    pad = (4 - (len(req.get_packet()) % 4)) % 4
    req['pduData'] += b'\xBB' * pad
    trailer['auth_pad_len'] = pad
    req['sec_trailer'] = trailer.getData()
    req['auth_data'] = bytes(range(0xA0, 0xB0))
    emit('pdu_request_auth4', req.get_packet())

    # A response (call_id 2) with a small stub.
    resp = rpcrt.MSRPCRespHeader()
    resp['type'] = rpcrt.MSRPC_RESPONSE
    resp['call_id'] = 2
    resp['ctx_id'] = 0
    resp['alloc_hint'] = len(stub)
    resp['pduData'] = stub
    emit('pdu_response', resp.get_packet())

    # A fault: impacket reads the status from the first 4 bytes after the response-style
    # header; the 4 reserved bytes follow.
    fault = rpcrt.MSRPCRespHeader()
    fault['type'] = rpcrt.MSRPC_FAULT
    fault['call_id'] = 2
    fault['ctx_id'] = 0
    fault['alloc_hint'] = 32
    fault['pduData'] = pack('<LL', 0x1C010002, 0)
    emit('pdu_fault', fault.get_packet())

    # bind_nak: reason 4 (protocol version not supported), versions {5.0}.
    nak = rpcrt.MSRPCHeader()
    nak['type'] = rpcrt.MSRPC_BINDNAK
    nak['call_id'] = 1
    nak['pduData'] = rpcrt.MSRPCBindNak().getData()[:0] + pack('<HBBB', 4, 1, 5, 0)
    emit('pdu_bind_nak', nak.get_packet())


if __name__ == '__main__':
    icpr_vectors()
    epm_vectors()
    pdu_vectors()
