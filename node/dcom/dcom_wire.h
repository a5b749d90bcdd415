// MS-DCOM on the wire, for the calls adcsc makes to a CA's admin interface: ORPCTHIS and
// ORPCTHAT (2.2.13), the standard OBJREF (2.2.18) with its DUALSTRINGARRAY of string and
// security bindings (2.2.19), the activation properties BLOB of
// IRemoteSCMActivator::RemoteCreateInstance (2.2.22, 3.1.2.5.2.3.3) and IRemUnknown::RemRelease
// (3.1.1.5.6.1.3). Both directions of each, so the ADCS emulator serves what the client sends.
// Everything sits on the NDR code of node/rpc, shared with MS-ICPR.
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/rpc/ndr.h"
#include "node/rpc/uuid.h"

namespace adcsc::dcom {

using rpc::Bytes;
using rpc::ByteView;
using rpc::SyntaxId;
using rpc::Uuid;

// --- Interfaces and classes (MS-DCOM 1.9, MS-CSRA 1.9) ------------------------------------------

inline constexpr SyntaxId kRemoteScmActivatorSyntax{Uuid::Literal("000001a0-0000-0000-c000-000000000046"), 0, 0};
inline constexpr SyntaxId kRemUnknownSyntax{Uuid::Literal("00000131-0000-0000-c000-000000000046"), 0, 0};
inline constexpr SyntaxId kRemUnknown2Syntax{Uuid::Literal("00000143-0000-0000-c000-000000000046"), 0, 0};
// The activation property set classes and the interfaces their OBJREF_CUSTOM carries.
inline constexpr Uuid kIidActivationPropertiesIn = Uuid::Literal("000001a2-0000-0000-c000-000000000046");
inline constexpr Uuid kIidActivationPropertiesOut = Uuid::Literal("000001a3-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidActivationPropertiesIn = Uuid::Literal("00000338-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidActivationPropertiesOut = Uuid::Literal("00000339-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidInstantiationInfo = Uuid::Literal("000001ab-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidActivationContextInfo = Uuid::Literal("000001a5-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidServerLocationInfo = Uuid::Literal("000001a4-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidScmRequestInfo = Uuid::Literal("000001aa-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidScmReplyInfo = Uuid::Literal("000001b6-0000-0000-c000-000000000046");
inline constexpr Uuid kClsidPropsOutInfo = Uuid::Literal("00000339-0000-0000-c000-000000000046");

inline constexpr uint16_t kRemoteCreateInstanceOpnum = 4;
inline constexpr uint16_t kRemReleaseOpnum = 5;

// OBJREF signature "MEOW" and flags (2.2.18).
inline constexpr uint32_t kObjrefSignature = 0x574f454d;
inline constexpr uint32_t kObjrefStandard = 0x1;
inline constexpr uint32_t kObjrefCustom = 0x4;
// Protocol sequence identifier of ncacn_ip_tcp in string bindings and activation (2.2.19.3).
inline constexpr uint16_t kTowerIdTcp = 0x0007;
// COM version adcsc speaks (5.7, what Windows since XP SP2 speaks).
inline constexpr uint16_t kComVersionMajor = 5;
inline constexpr uint16_t kComVersionMinor = 7;
// MSHCTX_DIFFERENTMACHINE: the destination context of a remote activation.
inline constexpr uint32_t kDestContextDifferentMachine = 2;
// RPC_C_IMP_LEVEL_IMPERSONATE.
inline constexpr uint32_t kImpLevelImpersonate = 3;

// --- ORPCTHIS / ORPCTHAT -----------------------------------------------------------------------

// Extensions are never sent by adcsc; a received ORPCTHIS/ORPCTHAT with extensions is accepted
// and its extensions skipped.
struct OrpcThis {
  uint16_t major = kComVersionMajor;
  uint16_t minor = kComVersionMinor;
  uint32_t flags = 0;  // ORPCF_NULL
  Uuid cid;            // causality ID: one fresh value per logical call chain
};
struct OrpcThat {
  uint32_t flags = 0;
};

// Writes/reads the structure at the writer's/reader's position, with its (null) extensions.
void WriteOrpcThis(rpc::NdrWriter& w, const OrpcThis& v);
absl::Status ReadOrpcThis(rpc::NdrReader& r, OrpcThis* v);
void WriteOrpcThat(rpc::NdrWriter& w, const OrpcThat& v);
absl::Status ReadOrpcThat(rpc::NdrReader& r, OrpcThat* v);

// --- DUALSTRINGARRAY and the standard OBJREF --------------------------------------------------

struct StringBinding {
  uint16_t tower_id = kTowerIdTcp;
  std::string network_address;  // "ca01.example.com[49702]" for ncacn_ip_tcp
};
struct SecurityBinding {
  uint16_t authn_svc = 0;      // RPC_C_AUTHN_WINNT (10), RPC_C_AUTHN_GSS_KERBEROS (16), ...
  std::string principal_name;  // often empty
};
struct DualStringArray {
  std::vector<StringBinding> strings;
  std::vector<SecurityBinding> security;
};

// The wNumEntries/wSecurityOffset/aStringArray body (no NDR conformance): what an OBJREF
// carries inline. DecodeDualStringArrayBody reads exactly `entries` 16-bit units.
Bytes EncodeDualStringArrayBody(const DualStringArray& v);
absl::StatusOr<DualStringArray> DecodeDualStringArrayUnits(const std::vector<uint16_t>& units,
                                                           uint16_t security_offset);

// The port of the first ncacn_ip_tcp string binding, "host[port]"; NOT_FOUND when none has one.
absl::StatusOr<uint16_t> TcpPortOf(const DualStringArray& bindings);

// STDOBJREF inside OBJREF_STANDARD.
struct StdObjRef {
  uint32_t flags = 0;
  uint32_t public_refs = 0;
  uint64_t oxid = 0;
  uint64_t oid = 0;
  Uuid ipid;
};
struct StandardObjRef {
  Uuid iid;
  StdObjRef std;
  DualStringArray resolver_address;
};
Bytes EncodeStandardObjRef(const StandardObjRef& v);
absl::StatusOr<StandardObjRef> DecodeStandardObjRef(ByteView bytes);

// --- Type serialization version 1 (MS-RPCE 2.2.6) ------------------------------------------------

// Wraps an NDR body in the common and private headers, padding the body to 8 bytes.
Bytes TypeSerialize(const Bytes& ndr_body);
// The NDR body of a serialized type (checks the headers; the body keeps its padding).
absl::StatusOr<ByteView> TypeDeserialize(ByteView bytes, std::string_view what);

// --- IRemoteSCMActivator::RemoteCreateInstance ---------------------------------------------------

struct ActivationRequest {
  OrpcThis orpc;
  Uuid clsid;
  std::vector<Uuid> iids;                          // interfaces wanted (1 .. MAX_REQUESTED_INTERFACES)
  std::vector<uint16_t> protseqs = {kTowerIdTcp};  // protocol sequences the client can use
  uint32_t client_imp_level = kImpLevelImpersonate;
};

// The reply's scm info and one result per requested interface.
struct ActivatedInterface {
  Uuid iid;
  uint32_t hresult = 0;
  std::optional<StandardObjRef> objref;  // when hresult succeeded
};
struct ActivationReply {
  OrpcThat orpc;
  uint64_t oxid = 0;
  DualStringArray oxid_bindings;  // the object exporter's string and security bindings
  Uuid ipid_rem_unknown;
  uint32_t authn_hint = 0;  // the authentication level the server would like
  uint16_t server_major = kComVersionMajor;
  uint16_t server_minor = kComVersionMinor;
  std::vector<ActivatedInterface> interfaces;
  uint32_t error_code = 0;  // the call's HRESULT; the rest is meaningless when it failed
};

// Client side: the whole [in] stub (ORPCTHIS, pUnkOuter = NULL, pActProperties).
absl::StatusOr<Bytes> EncodeRemoteCreateInstanceIn(const ActivationRequest& v);
absl::StatusOr<ActivationRequest> DecodeRemoteCreateInstanceIn(ByteView stub);
// Server side: the [out] stub (ORPCTHAT, ppActProperties, the HRESULT). With error_code
// failing, ppActProperties is NULL.
absl::StatusOr<Bytes> EncodeRemoteCreateInstanceOut(const ActivationReply& v);
absl::StatusOr<ActivationReply> DecodeRemoteCreateInstanceOut(ByteView stub);

// --- IRemUnknown::RemRelease ---------------------------------------------------------------------

struct InterfaceRef {
  Uuid ipid;
  int32_t public_refs = 0;
  int32_t private_refs = 0;
};
struct RemReleaseIn {
  OrpcThis orpc;
  std::vector<InterfaceRef> refs;
};
absl::StatusOr<Bytes> EncodeRemReleaseIn(const RemReleaseIn& v);
absl::StatusOr<RemReleaseIn> DecodeRemReleaseIn(ByteView stub);
// [out]: ORPCTHAT and the HRESULT.
Bytes EncodeOrpcThatAndHresult(uint32_t hresult);
absl::StatusOr<uint32_t> DecodeOrpcThatAndHresult(ByteView stub, std::string_view what);

// A fresh random UUID (version 4), for causality IDs and the emulator's IPIDs.
Uuid RandomUuid();

}  // namespace adcsc::dcom
