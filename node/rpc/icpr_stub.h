// NDR stubs of MS-ICPR ICertPassage::CertServerRequest (opnum 0), both directions, and the
// UTF-16 helpers for its attribute string and disposition message.
// Thread-safety: pure functions over value types.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "node/rpc/uuid.h"

namespace adcsc::rpc {

inline constexpr uint16_t kCertServerRequestOpnum = 0;

// dwFlags request-format values (MS-WCCE 2.2.2.8 / MS-ICPR 3.2.4.1.1); the low byte is the
// encoding, which the RPC path ignores because pctbRequest is always binary.
namespace cr_in {
inline constexpr uint32_t kFormatAny = 0x00000000;  // let the CA detect the format
inline constexpr uint32_t kPkcs10 = 0x00000100;
inline constexpr uint32_t kKeygen = 0x00000200;
inline constexpr uint32_t kPkcs7 = 0x00000300;
inline constexpr uint32_t kCmc = 0x00000400;
inline constexpr uint32_t kRpc = 0x00020000;  // set by clients calling over RPC
inline constexpr uint32_t kFullResponse = 0x00040000;
}  // namespace cr_in

// pdwDisposition values (MS-WCCE 3.2.1.4.3.1.1 / MS-ICPR).
namespace cr_disp {
inline constexpr uint32_t kIncomplete = 0;
inline constexpr uint32_t kError = 1;
inline constexpr uint32_t kDenied = 2;
inline constexpr uint32_t kIssued = 3;
inline constexpr uint32_t kIssuedOutOfBand = 4;
inline constexpr uint32_t kUnderSubmission = 5;
inline constexpr uint32_t kRevoked = 6;
}  // namespace cr_disp

// The [in] parameters. Field by field as on the wire:
//   dwFlags        -> flags
//   pwszAuthority  -> authority: the CA's common name as UTF-8; nullopt is a null pointer.
//                     Marshalled as UTF-16 with its NUL; invalid UTF-8 fails to encode and
//                     invalid UTF-16 fails to decode.
//   *pdwRequestId  -> request_id (0 for a new request; the ID to retrieve a pending one)
//   pctbAttribs    -> attributes: the raw CERTTRANSBLOB bytes (UTF-16LE "name:value" lines
//                     with a terminating NUL; build with EncodeRequestAttributes). Empty is
//                     sent as cb = 0 with a null pb.
//   pctbRequest    -> request: the binary request (DER PKCS#10, CMC or PKCS#7).
struct CertServerRequestIn {
  uint32_t flags = 0;
  std::optional<std::string> authority;
  uint32_t request_id = 0;
  Bytes attributes;
  Bytes request;

  friend bool operator==(const CertServerRequestIn&, const CertServerRequestIn&) = default;
};

// The [out] parameters and the DWORD return value (an HRESULT; 0 on success). The blobs are
// raw: cert_chain is the PKCS#7 chain (or the full CMC response), encoded_cert the DER
// certificate, disposition_message UTF-16LE text (decode with DecodeDispositionMessage).
// Empty blobs travel as cb = 0 with a null pb.
struct CertServerRequestOut {
  uint32_t request_id = 0;
  uint32_t disposition = 0;
  Bytes cert_chain;
  Bytes encoded_cert;
  Bytes disposition_message;
  uint32_t return_value = 0;

  friend bool operator==(const CertServerRequestOut&, const CertServerRequestOut&) = default;
};

// Client side: request stub. Server side: its decoder (strict: a [size_is] conformance that
// differs from cb, a null blob with cb != 0, or trailing bytes are errors).
absl::StatusOr<Bytes> EncodeCertServerRequestIn(const CertServerRequestIn& in);
absl::StatusOr<CertServerRequestIn> DecodeCertServerRequestIn(ByteView stub);

// Server side: response stub. Client side: its decoder.
Bytes EncodeCertServerRequestOut(const CertServerRequestOut& out);
absl::StatusOr<CertServerRequestOut> DecodeCertServerRequestOut(ByteView stub);

// "CertificateTemplate:<name>" etc.: the pairs joined as "name:value" lines separated by "\n",
// as UTF-16LE with the terminating NUL included (cb counts it, as certreq sends it).
absl::StatusOr<Bytes> EncodeRequestAttributes(const std::vector<std::pair<std::string, std::string>>& attributes);
// Shorthand for the one attribute adcsc sends.
absl::StatusOr<Bytes> CertificateTemplateAttribute(std::string_view template_name);
// Server side: splits the blob back into pairs (at the first ':' of each line; text stops at
// the first NUL; lines without ':' and empty lines are skipped, as the CA does). Odd byte
// counts and invalid UTF-16 are errors.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeRequestAttributes(ByteView blob);

// The disposition message as UTF-8: UTF-16LE up to the first NUL (if any), unpaired surrogates
// replaced by U+FFFD. An odd byte count is an error.
absl::StatusOr<std::string> DecodeDispositionMessage(ByteView blob);
// Server side: UTF-16LE with a terminating NUL, as the CA sends it. Empty text -> empty blob.
absl::StatusOr<Bytes> EncodeDispositionMessage(std::string_view utf8);

}  // namespace adcsc::rpc
