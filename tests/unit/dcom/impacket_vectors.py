#!/usr/bin/python3
"""Reference byte strings for the adcsc_dcom unit tests (dcom_wire_test.cc), made by impacket.

impacket is an independent MS-DCOM implementation (impacket/dcerpc/v5/dcomrt.py), so encoding
the same values with its NDR types and comparing bytes checks our marshalling against someone
else's reading of MS-DCOM, MS-RPCE and MS-CSRA. The build does not run this script: its output
was pasted into dcom_wire_test.cc. To regenerate (Debian 12, python3-impacket 0.10):

    /usr/bin/python3 tests/unit/dcom/impacket_vectors.py

Notes:
  * impacket draws unique-pointer referent IDs at random; they are pinned here to the values
    our NdrWriter produces (0x00020000, +4, ...), as MIDL-generated stubs number them.
  * impacket 0.10 has no MS-CSRA module; the four ICertAdminD(2) calls are declared below
    from the MS-CSRA IDL (3.1.4.1.3, 3.1.4.1.4, 3.1.4.1.8, 3.1.4.2.2) with impacket's types.
  * The activation request and reply are built with impacket's own activation structures
    (ACTIVATION_BLOB, InstantiationInfoData, ScmRequestInfoData, PropsOutInfo,
    ScmReplyInfoData, OBJREF_CUSTOM) as its IRemoteSCMActivator.RemoteCreateInstance does;
    our decoders must read them (impacket pads properties with 0xFA and counts the padding in
    pSizes but not in ObjectBufferLength, unlike our encoder, so those are compared decoded).
"""

from struct import pack

from impacket.dcerpc.v5 import dcomrt
from impacket.dcerpc.v5.dcomrt import (ACTIVATION_BLOB, CLSID, DCOMANSWER, DCOMCALL, IID, ORPCTHAT, ORPCTHIS,
                                       OBJREF_CUSTOM, OBJREF_STANDARD, STRINGBINDING, SECURITYBINDING,
                                       InstantiationInfoData, PropsOutInfo, RemoteCreateInstance,
                                       RemoteCreateInstanceResponse, RemRelease, RemReleaseResponse,
                                       ScmReplyInfoData, ScmRequestInfoData, ActivationContextInfoData,
                                       LocationInfoData, REMINTERFACEREF, MInterfacePointer, PMInterfacePointer)
from impacket.dcerpc.v5.dtypes import DWORD, LONG, LPWSTR, NULL, PBYTE, ULONG
from impacket.dcerpc.v5.ndr import NDRSTRUCT
from impacket.uuid import string_to_bin

CID = '11223344-5566-7788-99aa-bbccddeeff00'
IPID = '00007c0a-0b1c-0d2e-3f40-5a6b7c8d9eaf'
IPID_REMUNK = '0000a001-0002-0003-0405-060708090a0b'
CLSID_CERTADMIND = 'd99e6e73-fc88-11d0-b498-00a0c90312f3'
IID_ICERTADMIND2 = '7fe0d935-dda6-443f-85d0-1cfb58fe41dd'


def emit(name, data):
    print('%s = %s' % (name, data.hex()))


def zero_padding(data, offset, length):
    """impacket fills NDR alignment padding with 0xbf or 0xce; NDR leaves its content open and
    our writer uses zeros, so the vector gets zeros at that one place."""
    return data[:offset] + b'\x00' * length + data[offset + length:]


def orpcthis():
    o = ORPCTHIS()
    o['version']['MajorVersion'] = 5
    o['version']['MinorVersion'] = 7
    o['flags'] = 0
    o['reserved1'] = 0
    o['cid'] = string_to_bin(CID)
    o['extensions'] = NULL
    return o


# --- MS-CSRA, declared from the IDL ---------------------------------------------------------

class CERTTRANSBLOB(NDRSTRUCT):
    structure = (('cb', ULONG), ('pb', PBYTE))


class FILETIME(NDRSTRUCT):
    structure = (('dwLowDateTime', DWORD), ('dwHighDateTime', DWORD))


class ResubmitRequest(DCOMCALL):
    opnum = 5
    structure = (('pwszAuthority', LPWSTR), ('dwRequestId', DWORD))


class ResubmitRequestResponse(DCOMANSWER):
    structure = (('pdwDisposition', DWORD), ('ErrorCode', ULONG))


class RevokeCertificate(DCOMCALL):
    opnum = 10
    structure = (('pwszAuthority', LPWSTR), ('pwszSerialNumber', LPWSTR), ('Reason', DWORD),
                 ('FileTime', FILETIME))


class GetCAProperty(DCOMCALL):
    opnum = 32
    structure = (('pwszAuthority', LPWSTR), ('PropId', LONG), ('PropIndex', LONG), ('PropType', LONG))


class GetCAPropertyResponse(DCOMANSWER):
    structure = (('pctbPropertyValue', CERTTRANSBLOB), ('ErrorCode', ULONG))


def csra_vectors():
    r = ResubmitRequest()
    r['ORPCthis'] = orpcthis()
    r['pwszAuthority'] = 'corp-CA1-CA\x00'
    r.fields['pwszAuthority'].fields['ReferentID'] = 0x00020000
    r['dwRequestId'] = 95
    emit('resubmit_request', r.getData())   # DenyRequest has the same [in] parameters

    a = ResubmitRequestResponse()
    a['ORPCthat'] = ORPCTHAT()
    a['ORPCthat']['flags'] = 0
    a['ORPCthat']['extensions'] = NULL
    a['pdwDisposition'] = 3
    a['ErrorCode'] = 0
    emit('resubmit_response', a.getData())

    v = RevokeCertificate()
    v['ORPCthis'] = orpcthis()
    v['pwszAuthority'] = 'corp-CA1-CA\x00'
    v.fields['pwszAuthority'].fields['ReferentID'] = 0x00020000
    v['pwszSerialNumber'] = '1a2b3c4d5e\x00'
    v.fields['pwszSerialNumber'].fields['ReferentID'] = 0x00020004
    v['Reason'] = 1
    filetime = 133000000000000000
    v['FileTime']['dwLowDateTime'] = filetime & 0xffffffff
    v['FileTime']['dwHighDateTime'] = filetime >> 32
    data = v.getData()
    serial_end = data.index('5e\x00'.encode('utf-16-le')) + 6  # after the serial's NUL
    emit('revoke_request', zero_padding(data, serial_end, 2))

    g = GetCAProperty()
    g['ORPCthis'] = orpcthis()
    g['pwszAuthority'] = 'corp-CA1-CA\x00'
    g.fields['pwszAuthority'].fields['ReferentID'] = 0x00020000
    g['PropId'] = 6
    g['PropIndex'] = 0
    g['PropType'] = 4
    emit('get_ca_property_request', g.getData())

    p = GetCAPropertyResponse()
    p['ORPCthat'] = ORPCTHAT()
    p['ORPCthat']['flags'] = 0
    p['ORPCthat']['extensions'] = NULL
    name = 'corp-CA1-CA\x00'.encode('utf-16-le')
    p['pctbPropertyValue']['cb'] = len(name)
    p['pctbPropertyValue']['pb'] = list(name)
    p['pctbPropertyValue'].fields['pb'].fields['ReferentID'] = 0x00020000
    p['ErrorCode'] = 0
    emit('get_ca_property_response', p.getData())


# --- MS-DCOM --------------------------------------------------------------------------------

def dual_string_array():
    # ncacn_ip_tcp "ca01.corp.example.com[49702]", "10.0.0.5[49702]"; security: NTLM, Kerberos.
    strings = b''
    for addr in ('ca01.corp.example.com[49702]', '10.0.0.5[49702]'):
        b = STRINGBINDING()
        b['wTowerId'] = 7
        b['aNetworkAddr'] = addr + '\x00'
        strings += b.getData()
    strings += b'\x00\x00'
    security = b''
    for svc in (10, 16):
        s = SECURITYBINDING()
        s['wAuthnSvc'] = svc
        s['Reserved'] = 0xffff
        s['aPrincName'] = '\x00'
        security += s.getData()
    security += b'\x00\x00'
    units = strings + security
    return pack('<HH', len(units) // 2, len(strings) // 2) + units


def dcom_vectors():
    o = orpcthis()
    emit('orpcthis', o.getData())

    rel = RemRelease()
    rel['ORPCthis'] = orpcthis()
    rel['cInterfaceRefs'] = 1
    ref = REMINTERFACEREF()
    ref['ipid'] = string_to_bin(IPID)
    ref['cPublicRefs'] = 5
    ref['cPrivateRefs'] = 0
    rel['InterfaceRefs'].append(ref)
    emit('rem_release_request', zero_padding(rel.getData(), 34, 2))  # after cInterfaceRefs

    ans = RemReleaseResponse()
    ans['ORPCthat'] = ORPCTHAT()
    ans['ORPCthat']['flags'] = 0
    ans['ORPCthat']['extensions'] = NULL
    ans['ErrorCode'] = 0x80070005
    emit('rem_release_response_denied', ans.getData())

    dsa = dual_string_array()
    emit('dual_string_array', dsa)

    objref = OBJREF_STANDARD()
    objref['iid'] = string_to_bin(IID_ICERTADMIND2)
    objref['std']['flags'] = 0
    objref['std']['cPublicRefs'] = 5
    objref['std']['oxid'] = 0x1122334455667788
    objref['std']['oid'] = 0x99aabbccddeeff01
    objref['std']['ipid'] = string_to_bin(IPID)
    objref['saResAddr'] = dsa
    emit('std_objref', objref.getData())
    return objref.getData(), dsa


def activation_request():
    # As impacket's IRemoteSCMActivator.RemoteCreateInstance(clsid, iid) builds it.
    request = RemoteCreateInstance()
    request['ORPCthis'] = orpcthis()
    request['pUnkOuter'] = NULL
    blob = ACTIVATION_BLOB()
    blob['CustomHeader']['destCtx'] = 2
    blob['CustomHeader']['pdwReserved'] = NULL
    for c in (dcomrt.CLSID_InstantiationInfo, dcomrt.CLSID_ActivationContextInfo, dcomrt.CLSID_ServerLocationInfo,
              dcomrt.CLSID_ScmRequestInfo):
        clsid = CLSID()
        clsid['Data'] = c
        blob['CustomHeader']['pclsid'].append(clsid)
    props = b''
    inst = InstantiationInfoData()
    inst['classId'] = string_to_bin(CLSID_CERTADMIND)
    inst['cIID'] = 1
    iid = IID()
    iid['Data'] = string_to_bin(IID_ICERTADMIND2)
    inst['pIID'].append(iid)
    data = inst.getData() + inst.getDataReferents()
    pad = (8 - len(data) % 8) % 8
    size = DWORD()
    size['Data'] = len(data) + pad
    blob['CustomHeader']['pSizes'].append(size)
    inst['thisSize'] = size['Data']
    props += inst.getData() + inst.getDataReferents() + b'\xfa' * pad
    ctx = ActivationContextInfoData()
    ctx['pIFDClientCtx'] = NULL
    ctx['pIFDPrototypeCtx'] = NULL
    data = ctx.getData() + ctx.getDataReferents()
    pad = (8 - len(data) % 8) % 8
    size = DWORD()
    size['Data'] = len(data) + pad
    blob['CustomHeader']['pSizes'].append(size)
    props += data + b'\xfa' * pad
    loc = LocationInfoData()
    loc['machineName'] = NULL
    size = DWORD()
    size['Data'] = len(loc.getData())
    blob['CustomHeader']['pSizes'].append(size)
    props += loc.getData() + loc.getDataReferents()
    scm = ScmRequestInfoData()
    scm['pdwReserved'] = NULL
    scm['remoteRequest']['cRequestedProtseqs'] = 1
    scm['remoteRequest']['pRequestedProtseqs'].append(7)
    data = scm.getData() + scm.getDataReferents()
    pad = (8 - len(data) % 8) % 8
    size = DWORD()
    size['Data'] = len(data) + pad
    blob['CustomHeader']['pSizes'].append(size)
    props += data + b'\xfa' * pad
    blob['Property'] = props
    custom = OBJREF_CUSTOM()
    custom['iid'] = dcomrt.IID_IActivationPropertiesIn[:-4]
    custom['clsid'] = dcomrt.CLSID_ActivationPropertiesIn
    custom['pObjectData'] = blob.getData()
    custom['ObjectReferenceSize'] = len(custom['pObjectData']) + 8
    request['pActProperties']['ulCntData'] = len(custom.getData())
    request['pActProperties']['abData'] = list(custom.getData())
    emit('remote_create_instance_request', request.getData())


def activation_reply(objref):
    # PropsOutInfo with one interface pointer, ScmReplyInfoData with the exporter's bindings.
    props = PropsOutInfo()
    props['cIfs'] = 1
    iid = IID()
    iid['Data'] = string_to_bin(IID_ICERTADMIND2)
    props['piid'].append(iid)
    hr = DWORD()
    hr['Data'] = 0
    props['phresults'].append(hr)
    ptr = PMInterfacePointer()
    ptr['ulCntData'] = len(objref)
    ptr['abData'] = list(objref)
    props['ppIntfData'].append(ptr)
    props_data = props.getData() + props.getDataReferents()
    props_data += b'\x00' * ((8 - len(props_data) % 8) % 8)
    scm = ScmReplyInfoData()
    scm['pdwReserved'] = 0
    reply = scm['remoteReply']
    reply['Oxid'] = 0x1122334455667788
    units = dual_string_array()
    entries, sec = units[0] | units[1] << 8, units[2] | units[3] << 8
    reply['pdsaOxidBindings']['wNumEntries'] = entries
    reply['pdsaOxidBindings']['wSecurityOffset'] = sec
    for i in range(entries):
        reply['pdsaOxidBindings']['aStringArray'].append(units[4 + 2 * i] | units[5 + 2 * i] << 8)
    reply['ipidRemUnknown'] = string_to_bin(IPID_REMUNK)
    reply['authnHint'] = 6
    reply['serverVersion']['MajorVersion'] = 5
    reply['serverVersion']['MinorVersion'] = 7
    scm_data = scm.getData() + scm.getDataReferents()
    scm_data += b'\x00' * ((8 - len(scm_data) % 8) % 8)
    blob = ACTIVATION_BLOB()
    blob['CustomHeader']['destCtx'] = 2
    blob['CustomHeader']['pdwReserved'] = NULL
    for c, data in ((dcomrt.CLSID_PropsOutInfo, props_data), (dcomrt.CLSID_ScmReplyInfo, scm_data)):
        clsid = CLSID()
        clsid['Data'] = c
        blob['CustomHeader']['pclsid'].append(clsid)
        size = DWORD()
        size['Data'] = len(data)
        blob['CustomHeader']['pSizes'].append(size)
    blob['Property'] = props_data + scm_data
    custom = OBJREF_CUSTOM()
    custom['iid'] = dcomrt.IID_IActivationPropertiesOut[:-4]
    custom['clsid'] = dcomrt.CLSID_ActivationPropertiesOut
    custom['pObjectData'] = blob.getData()
    custom['ObjectReferenceSize'] = len(custom['pObjectData']) + 8
    response = RemoteCreateInstanceResponse()
    response['ORPCthat'] = ORPCTHAT()
    response['ORPCthat']['flags'] = 0
    response['ORPCthat']['extensions'] = NULL
    response['ppActProperties']['ulCntData'] = len(custom.getData())
    response['ppActProperties']['abData'] = list(custom.getData())
    response['ErrorCode'] = 0
    emit('remote_create_instance_response', response.getData())


if __name__ == '__main__':
    csra_vectors()
    objref, _ = dcom_vectors()
    activation_request()
    activation_reply(objref)
