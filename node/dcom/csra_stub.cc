// MS-CSRA stubs; see csra_stub.h.
#include "node/dcom/csra_stub.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"

namespace adcsc::dcom {
namespace {

using rpc::NdrReader;
using rpc::NdrWriter;

struct NamedReason {
  std::string_view name;
  uint32_t code;
};
constexpr std::array<NamedReason, 9> kReasons = {{
    {"unspecified", crl_reason::kUnspecified},
    {"key-compromise", crl_reason::kKeyCompromise},
    {"ca-compromise", crl_reason::kCaCompromise},
    {"affiliation-changed", crl_reason::kAffiliationChanged},
    {"superseded", crl_reason::kSuperseded},
    {"cessation-of-operation", crl_reason::kCessationOfOperation},
    {"certificate-hold", crl_reason::kCertificateHold},
    {"remove-from-crl", crl_reason::kRemoveFromCrl},
    {"release-from-hold", crl_reason::kReleaseFromHold},
}};

// [in, string, unique] wchar_t const*: a referent ID and, right after it (a top-level
// pointer's pointee ends its parameter), the conformant varying string.
absl::Status WriteString(NdrWriter& w, std::string_view utf8, std::string_view field) {
  auto wide = rpc::Utf8ToUtf16(utf8);
  if (!wide.ok()) return absl::InvalidArgumentError(absl::StrCat(rpc::AbslView(field), ": ", wide.status().message()));
  w.WriteUniquePointer(true, [text = *std::move(wide)](NdrWriter& pw) { pw.WriteWideString(text); });
  w.FlushDeferred();
  return absl::OkStatus();
}

absl::Status ReadString(NdrReader& r, std::string_view field, std::string* out) {
  uint32_t referent = 0;
  if (auto s = r.ReadReferent(field, &referent); !s.ok()) return s;
  out->clear();
  if (referent == 0) return absl::OkStatus();  // the CA rejects a null authority itself
  std::u16string wide;
  if (auto s = r.ReadWideString(field, &wide); !s.ok()) return s;
  auto utf8 = rpc::Utf16ToUtf8(wide);
  if (!utf8.ok()) return absl::InvalidArgumentError(absl::StrCat(rpc::AbslView(field), ": ", utf8.status().message()));
  *out = *std::move(utf8);
  return absl::OkStatus();
}

}  // namespace

std::optional<uint32_t> CrlReasonByName(std::string_view name) {
  for (const NamedReason& r : kReasons) {
    if (r.name == name) return r.code;
  }
  return std::nullopt;
}

std::string_view CrlReasonName(uint32_t reason) {
  for (const NamedReason& r : kReasons) {
    if (r.code == reason) return r.name;
  }
  return "unknown";
}

std::string CrlReasonNames() {
  std::string out;
  for (const NamedReason& r : kReasons) absl::StrAppend(&out, out.empty() ? "" : ", ", rpc::AbslView(r.name));
  return out;
}

uint64_t FiletimeFromUnixMillis(int64_t unix_millis) {
  return kUnixEpochAsFiletime + static_cast<uint64_t>(unix_millis) * 10'000;
}

int64_t UnixMillisFromFiletime(uint64_t filetime) {
  if (filetime < kUnixEpochAsFiletime) return 0;
  return static_cast<int64_t>((filetime - kUnixEpochAsFiletime) / 10'000);
}

absl::StatusOr<Bytes> EncodeRequestIdIn(const RequestIdIn& v) {
  NdrWriter w;
  WriteOrpcThis(w, v.orpc);
  if (auto s = WriteString(w, v.authority, "pwszAuthority"); !s.ok()) return s;
  w.WriteU32(v.request_id);
  return w.Finish();
}

absl::StatusOr<RequestIdIn> DecodeRequestIdIn(ByteView stub) {
  NdrReader r(stub);
  RequestIdIn v;
  if (auto s = ReadOrpcThis(r, &v.orpc); !s.ok()) return s;
  if (auto s = ReadString(r, "pwszAuthority", &v.authority); !s.ok()) return s;
  if (auto s = r.ReadU32("dwRequestId", &v.request_id); !s.ok()) return s;
  if (auto s = r.ExpectEnd("request"); !s.ok()) return s;
  return v;
}

Bytes EncodeResubmitOut(const ResubmitOut& v) {
  NdrWriter w;
  WriteOrpcThat(w, OrpcThat{});
  w.WriteU32(v.disposition);
  w.WriteU32(v.hresult);
  return w.Finish();
}

absl::StatusOr<ResubmitOut> DecodeResubmitOut(ByteView stub) {
  NdrReader r(stub);
  OrpcThat that;
  ResubmitOut v;
  if (auto s = ReadOrpcThat(r, &that); !s.ok()) return s;
  if (auto s = r.ReadU32("pdwDisposition", &v.disposition); !s.ok()) return s;
  if (auto s = r.ReadU32("ResubmitRequest return value", &v.hresult); !s.ok()) return s;
  if (auto s = r.ExpectEnd("ResubmitRequest response"); !s.ok()) return s;
  return v;
}

absl::StatusOr<Bytes> EncodeRevokeIn(const RevokeIn& v) {
  NdrWriter w;
  WriteOrpcThis(w, v.orpc);
  if (auto s = WriteString(w, v.authority, "pwszAuthority"); !s.ok()) return s;
  if (auto s = WriteString(w, v.serial, "pwszSerialNumber"); !s.ok()) return s;
  w.WriteU32(v.reason);
  // FILETIME { DWORD dwLowDateTime; DWORD dwHighDateTime; }
  w.WriteU32(static_cast<uint32_t>(v.filetime));
  w.WriteU32(static_cast<uint32_t>(v.filetime >> 32));
  return w.Finish();
}

absl::StatusOr<RevokeIn> DecodeRevokeIn(ByteView stub) {
  NdrReader r(stub);
  RevokeIn v;
  uint32_t low = 0, high = 0;
  if (auto s = ReadOrpcThis(r, &v.orpc); !s.ok()) return s;
  if (auto s = ReadString(r, "pwszAuthority", &v.authority); !s.ok()) return s;
  if (auto s = ReadString(r, "pwszSerialNumber", &v.serial); !s.ok()) return s;
  if (auto s = r.ReadU32("Reason", &v.reason); !s.ok()) return s;
  if (auto s = r.ReadU32("FileTime.dwLowDateTime", &low); !s.ok()) return s;
  if (auto s = r.ReadU32("FileTime.dwHighDateTime", &high); !s.ok()) return s;
  if (auto s = r.ExpectEnd("RevokeCertificate request"); !s.ok()) return s;
  v.filetime = static_cast<uint64_t>(high) << 32 | low;
  return v;
}

absl::StatusOr<Bytes> EncodeGetCaPropertyIn(const GetCaPropertyIn& v) {
  NdrWriter w;
  WriteOrpcThis(w, v.orpc);
  if (auto s = WriteString(w, v.authority, "pwszAuthority"); !s.ok()) return s;
  w.WriteU32(static_cast<uint32_t>(v.prop_id));
  w.WriteU32(static_cast<uint32_t>(v.prop_index));
  w.WriteU32(static_cast<uint32_t>(v.prop_type));
  return w.Finish();
}

absl::StatusOr<GetCaPropertyIn> DecodeGetCaPropertyIn(ByteView stub) {
  NdrReader r(stub);
  GetCaPropertyIn v;
  uint32_t id = 0, index = 0, type = 0;
  if (auto s = ReadOrpcThis(r, &v.orpc); !s.ok()) return s;
  if (auto s = ReadString(r, "pwszAuthority", &v.authority); !s.ok()) return s;
  if (auto s = r.ReadU32("PropId", &id); !s.ok()) return s;
  if (auto s = r.ReadU32("PropIndex", &index); !s.ok()) return s;
  if (auto s = r.ReadU32("PropType", &type); !s.ok()) return s;
  if (auto s = r.ExpectEnd("GetCAProperty request"); !s.ok()) return s;
  v.prop_id = static_cast<int32_t>(id);
  v.prop_index = static_cast<int32_t>(index);
  v.prop_type = static_cast<int32_t>(type);
  return v;
}

Bytes EncodeGetCaPropertyOut(const GetCaPropertyOut& v) {
  NdrWriter w;
  WriteOrpcThat(w, OrpcThat{});
  // [out, ref] CERTTRANSBLOB*: the structure inline, pb's bytes after it.
  w.WriteU32(static_cast<uint32_t>(v.value.size()));
  w.WriteUniquePointer(!v.value.empty(), [&v](NdrWriter& pw) { pw.WriteConformantBytes(v.value); });
  w.FlushDeferred();
  w.WriteU32(v.hresult);
  return w.Finish();
}

absl::StatusOr<GetCaPropertyOut> DecodeGetCaPropertyOut(ByteView stub) {
  NdrReader r(stub);
  OrpcThat that;
  GetCaPropertyOut v;
  uint32_t cb = 0, referent = 0;
  if (auto s = ReadOrpcThat(r, &that); !s.ok()) return s;
  if (auto s = r.ReadU32("pctbPropertyValue.cb", &cb); !s.ok()) return s;
  if (auto s = r.ReadReferent("pctbPropertyValue.pb", &referent); !s.ok()) return s;
  if (referent != 0) {
    if (auto s = r.ReadConformantBytes("pctbPropertyValue.pb", &v.value); !s.ok()) return s;
    if (v.value.size() != cb) return absl::InvalidArgumentError("pctbPropertyValue: cb differs from pb's conformance");
  } else if (cb != 0) {
    return absl::InvalidArgumentError("pctbPropertyValue: cb is not 0 but pb is null");
  }
  if (auto s = r.ReadU32("GetCAProperty return value", &v.hresult); !s.ok()) return s;
  if (auto s = r.ExpectEnd("GetCAProperty response"); !s.ok()) return s;
  return v;
}

}  // namespace adcsc::dcom
