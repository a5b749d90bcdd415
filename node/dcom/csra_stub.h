// NDR stubs of the MS-CSRA calls adcsc makes on a CA's ICertAdminD2 object, both directions
// (the client's requests, the emulator's answers): ResubmitRequest (opnum 5), DenyRequest (6),
// RevokeCertificate (10) and GetCAProperty (32). Each DCOM request starts with ORPCTHIS and
// each answer with ORPCTHAT (node/dcom/dcom_wire.h). Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "node/dcom/dcom_wire.h"

namespace adcsc::dcom {

// MS-CSRA 2.1 / 1.9.
inline constexpr Uuid kClsidCertAdminD = Uuid::Literal("d99e6e73-fc88-11d0-b498-00a0c90312f3");
inline constexpr SyntaxId kCertAdminDSyntax{Uuid::Literal("d99e6e71-fc88-11d0-b498-00a0c90312f3"), 0, 0};
inline constexpr SyntaxId kCertAdminD2Syntax{Uuid::Literal("7fe0d935-dda6-443f-85d0-1cfb58fe41dd"), 0, 0};

// Opnums (MS-CSRA 3.1.4.1, 3.1.4.2; ICertAdminD2 continues ICertAdminD's numbering).
inline constexpr uint16_t kResubmitRequestOpnum = 5;
inline constexpr uint16_t kDenyRequestOpnum = 6;
inline constexpr uint16_t kRevokeCertificateOpnum = 10;
inline constexpr uint16_t kGetCAPropertyOpnum = 32;

// RevokeCertificate reasons (MS-CSRA 3.1.4.1.8; RFC 5280 CRLReason) and the value that
// releases a certificate from hold.
namespace crl_reason {
inline constexpr uint32_t kUnspecified = 0;
inline constexpr uint32_t kKeyCompromise = 1;
inline constexpr uint32_t kCaCompromise = 2;
inline constexpr uint32_t kAffiliationChanged = 3;
inline constexpr uint32_t kSuperseded = 4;
inline constexpr uint32_t kCessationOfOperation = 5;
inline constexpr uint32_t kCertificateHold = 6;
inline constexpr uint32_t kRemoveFromCrl = 8;
inline constexpr uint32_t kReleaseFromHold = 0xffffffff;  // MAXDWORD
}  // namespace crl_reason
// "key-compromise" -> 1, ..., "remove-from-crl" -> 8, "release-from-hold" -> 0xffffffff;
// nullopt for other names.
std::optional<uint32_t> CrlReasonByName(std::string_view name);
// The name of a reason code ("unknown" for others).
std::string_view CrlReasonName(uint32_t reason);
// Every accepted name, comma-separated, for help texts and errors.
std::string CrlReasonNames();

// GetCAProperty PropIds (MS-WCCE 3.2.1.4.3.2) and PropTypes (MS-CSRA 3.1.4.2.2).
namespace ca_prop {
inline constexpr int32_t kCaName = 0x6;     // CR_PROP_CANAME, string
inline constexpr int32_t kCaSigCert = 0xc;  // CR_PROP_CASIGCERT, binary, indexed
inline constexpr int32_t kTypeLong = 1;     // PROPTYPE_LONG
inline constexpr int32_t kTypeBinary = 3;   // PROPTYPE_BINARY
inline constexpr int32_t kTypeString = 4;   // PROPTYPE_STRING
}  // namespace ca_prop

// FILETIME: 100-ns intervals since 1601-01-01 UTC. 0 asks the CA for "now".
inline constexpr uint64_t kUnixEpochAsFiletime = 116444736000000000ULL;
uint64_t FiletimeFromUnixMillis(int64_t unix_millis);
int64_t UnixMillisFromFiletime(uint64_t filetime);

// [in] of ResubmitRequest and DenyRequest.
struct RequestIdIn {
  OrpcThis orpc;
  std::string authority;
  uint32_t request_id = 0;
};
absl::StatusOr<Bytes> EncodeRequestIdIn(const RequestIdIn& v);
absl::StatusOr<RequestIdIn> DecodeRequestIdIn(ByteView stub);

// ResubmitRequest [out]: the disposition (or an HRESULT there, e.g. CERTSRV_E_PROPERTY_EMPTY
// for an unknown request) and the call's HRESULT.
struct ResubmitOut {
  uint32_t disposition = 0;
  uint32_t hresult = 0;
};
Bytes EncodeResubmitOut(const ResubmitOut& v);
absl::StatusOr<ResubmitOut> DecodeResubmitOut(ByteView stub);
// DenyRequest and RevokeCertificate [out]: ORPCTHAT and the HRESULT (dcom_wire.h:
// EncodeOrpcThatAndHresult / DecodeOrpcThatAndHresult).

struct RevokeIn {
  OrpcThis orpc;
  std::string authority;
  std::string serial;  // hex as the CA writes it
  uint32_t reason = 0;
  uint64_t filetime = 0;
};
absl::StatusOr<Bytes> EncodeRevokeIn(const RevokeIn& v);
absl::StatusOr<RevokeIn> DecodeRevokeIn(ByteView stub);

struct GetCaPropertyIn {
  OrpcThis orpc;
  std::string authority;
  int32_t prop_id = 0;
  int32_t prop_index = 0;
  int32_t prop_type = 0;
};
absl::StatusOr<Bytes> EncodeGetCaPropertyIn(const GetCaPropertyIn& v);
absl::StatusOr<GetCaPropertyIn> DecodeGetCaPropertyIn(ByteView stub);
struct GetCaPropertyOut {
  Bytes value;  // the CERTTRANSBLOB's bytes (a string property is UTF-16LE with its NUL)
  uint32_t hresult = 0;
};
Bytes EncodeGetCaPropertyOut(const GetCaPropertyOut& v);
absl::StatusOr<GetCaPropertyOut> DecodeGetCaPropertyOut(ByteView stub);

}  // namespace adcsc::dcom
