#include "node/rpc/icpr_stub.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/rpc/ndr.h"

namespace adcsc::rpc {
namespace {

// CERTTRANSBLOB { ULONG cb; [size_is(cb), unique] BYTE* pb; } inside a top-level [ref]
// pointer: cb, pb's referent ID, then (deferred to the end of the parameter) pb's conformant
// array. An empty blob is a null pb, as Windows sends it.
void WriteBlob(NdrWriter& w, const Bytes& blob) {
  w.WriteU32(static_cast<uint32_t>(blob.size()));
  w.WriteUniquePointer(!blob.empty(), [&blob](NdrWriter& pw) { pw.WriteConformantBytes(blob); });
  w.FlushDeferred();
}

absl::Status ReadBlob(NdrReader& r, absl::string_view name, Bytes* blob) {
  uint32_t cb = 0;
  uint32_t referent = 0;
  if (absl::Status s = r.ReadU32(absl::StrCat(name, ".cb"), &cb); !s.ok()) return s;
  if (absl::Status s = r.ReadReferent(absl::StrCat(name, ".pb"), &referent); !s.ok()) return s;
  blob->clear();
  if (referent == 0) {
    if (cb != 0) {
      return absl::InvalidArgumentError(absl::StrCat("NDR ", name, ": cb is ", cb, " but pb is null"));
    }
    return absl::OkStatus();
  }
  uint32_t max_count = 0;
  if (absl::Status s = r.ReadCount(absl::StrCat(name, ".pb max_count"), 1, &max_count); !s.ok()) return s;
  if (max_count != cb) {
    return absl::InvalidArgumentError(
        absl::StrCat("NDR ", name, ": pb's conformance ", max_count, " differs from cb ", cb));
  }
  ByteView data;
  if (absl::Status s = r.ReadRaw(absl::StrCat(name, ".pb"), max_count, &data); !s.ok()) return s;
  blob->assign(data.begin(), data.end());
  return absl::OkStatus();
}

// Decodes UTF-16LE text up to its first NUL.
absl::StatusOr<std::u16string> Utf16UpToNul(ByteView blob, std::string_view field) {
  absl::StatusOr<std::u16string> text = LeBytesToUtf16(blob, field);
  if (!text.ok()) return text.status();
  const size_t nul = text->find(u'\0');
  if (nul != std::u16string::npos) text->resize(nul);
  return text;
}

}  // namespace

absl::StatusOr<Bytes> EncodeCertServerRequestIn(const CertServerRequestIn& in) {
  std::optional<std::u16string> authority;
  if (in.authority.has_value()) {
    absl::StatusOr<std::u16string> wide = Utf8ToUtf16(*in.authority);
    if (!wide.ok()) return absl::InvalidArgumentError(absl::StrCat("pwszAuthority: ", wide.status().message()));
    authority = *std::move(wide);
  }
  NdrWriter w;
  w.WriteU32(in.flags);
  w.WriteUniquePointer(authority.has_value(), [&authority](NdrWriter& pw) { pw.WriteWideString(*authority); });
  w.FlushDeferred();
  w.WriteU32(in.request_id);
  WriteBlob(w, in.attributes);
  WriteBlob(w, in.request);
  return w.Finish();
}

absl::StatusOr<CertServerRequestIn> DecodeCertServerRequestIn(ByteView stub) {
  NdrReader r(stub);
  CertServerRequestIn in;
  uint32_t referent = 0;
  if (absl::Status s = r.ReadU32("dwFlags", &in.flags); !s.ok()) return s;
  if (absl::Status s = r.ReadReferent("pwszAuthority", &referent); !s.ok()) return s;
  if (referent != 0) {
    std::u16string wide;
    if (absl::Status s = r.ReadWideString("pwszAuthority", &wide); !s.ok()) return s;
    absl::StatusOr<std::string> utf8 = Utf16ToUtf8(wide);
    if (!utf8.ok()) return absl::InvalidArgumentError(absl::StrCat("NDR pwszAuthority: ", utf8.status().message()));
    in.authority = *std::move(utf8);
  }
  if (absl::Status s = r.ReadU32("pdwRequestId", &in.request_id); !s.ok()) return s;
  if (absl::Status s = ReadBlob(r, "pctbAttribs", &in.attributes); !s.ok()) return s;
  if (absl::Status s = ReadBlob(r, "pctbRequest", &in.request); !s.ok()) return s;
  if (absl::Status s = r.ExpectEnd("CertServerRequest request"); !s.ok()) return s;
  return in;
}

Bytes EncodeCertServerRequestOut(const CertServerRequestOut& out) {
  NdrWriter w;
  w.WriteU32(out.request_id);
  w.WriteU32(out.disposition);
  WriteBlob(w, out.cert_chain);
  WriteBlob(w, out.encoded_cert);
  WriteBlob(w, out.disposition_message);
  w.WriteU32(out.return_value);
  return w.Finish();
}

absl::StatusOr<CertServerRequestOut> DecodeCertServerRequestOut(ByteView stub) {
  NdrReader r(stub);
  CertServerRequestOut out;
  if (absl::Status s = r.ReadU32("pdwRequestId", &out.request_id); !s.ok()) return s;
  if (absl::Status s = r.ReadU32("pdwDisposition", &out.disposition); !s.ok()) return s;
  if (absl::Status s = ReadBlob(r, "pctbCert", &out.cert_chain); !s.ok()) return s;
  if (absl::Status s = ReadBlob(r, "pctbEncodedCert", &out.encoded_cert); !s.ok()) return s;
  if (absl::Status s = ReadBlob(r, "pctbDispositionMessage", &out.disposition_message); !s.ok()) return s;
  if (absl::Status s = r.ReadU32("return value", &out.return_value); !s.ok()) return s;
  if (absl::Status s = r.ExpectEnd("CertServerRequest response"); !s.ok()) return s;
  return out;
}

absl::StatusOr<Bytes> EncodeRequestAttributes(const std::vector<std::pair<std::string, std::string>>& attributes) {
  std::string text;
  for (const auto& [name, value] : attributes) {
    // A separator inside a name or value would silently change the attribute list the CA sees.
    if (name.empty() || name.find_first_of(":\n") != std::string::npos || value.find('\n') != std::string::npos ||
        name.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("request attribute \"", name, "\" has an empty name or a ':', newline or NUL inside"));
    }
    if (!text.empty()) text.push_back('\n');
    absl::StrAppend(&text, name, ":", value);
  }
  absl::StatusOr<std::u16string> wide = Utf8ToUtf16(text);
  if (!wide.ok()) return absl::InvalidArgumentError(absl::StrCat("request attributes: ", wide.status().message()));
  wide->push_back(u'\0');
  return Utf16ToLeBytes(*wide);
}

absl::StatusOr<Bytes> CertificateTemplateAttribute(std::string_view template_name) {
  return EncodeRequestAttributes({{"CertificateTemplate", std::string(template_name)}});
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> DecodeRequestAttributes(ByteView blob) {
  absl::StatusOr<std::u16string> wide = Utf16UpToNul(blob, "pctbAttribs");
  if (!wide.ok()) return wide.status();
  absl::StatusOr<std::string> text = Utf16ToUtf8(*wide);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat("pctbAttribs: ", text.status().message()));
  std::vector<std::pair<std::string, std::string>> pairs;
  std::string_view rest = *text;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // tolerate CRLF senders
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    pairs.emplace_back(std::string(line.substr(0, colon)), std::string(line.substr(colon + 1)));
  }
  return pairs;
}

absl::StatusOr<std::string> DecodeDispositionMessage(ByteView blob) {
  absl::StatusOr<std::u16string> wide = Utf16UpToNul(blob, "pctbDispositionMessage");
  if (!wide.ok()) return wide.status();
  return Utf16ToUtf8Lossy(*wide);
}

absl::StatusOr<Bytes> EncodeDispositionMessage(std::string_view utf8) {
  if (utf8.empty()) return Bytes{};
  absl::StatusOr<std::u16string> wide = Utf8ToUtf16(utf8);
  if (!wide.ok()) return absl::InvalidArgumentError(absl::StrCat("disposition message: ", wide.status().message()));
  wide->push_back(u'\0');
  return Utf16ToLeBytes(*wide);
}

}  // namespace adcsc::rpc
