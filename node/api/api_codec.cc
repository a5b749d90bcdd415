#include "node/api/api_codec.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/pki/absl_view.h"

namespace adcsc::node {
namespace {

using Json = nlohmann::ordered_json;
using adcsc::ca::Disposition;

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(pki::AbslView(what)); }

// Longest piece of a parser's complaint quoted back to the client.
constexpr size_t kMaxParseDetail = 160;

// The lenient pre-pass (see EscapeRawLineBreaksInStrings); `inserted`, when given, receives
// the offsets in the output after which one byte was added, to map positions back.
std::string EscapeLineBreaks(std::string_view json, std::vector<size_t>* inserted) {
  std::string out;
  out.reserve(json.size() + 64);
  bool in_string = false;
  bool escaped = false;  // the previous character inside a string was an unescaped backslash
  auto put_escape = [&](char letter) {
    out.push_back('\\');
    if (inserted != nullptr) inserted->push_back(out.size());
    out.push_back(letter);
  };
  for (char c : json) {
    if (!in_string || escaped) {
      if (!in_string && c == '"') in_string = true;
      escaped = false;
      out.push_back(c);
      continue;
    }
    switch (c) {
      case '\\':
        escaped = true;
        out.push_back(c);
        break;
      case '"':
        in_string = false;
        out.push_back(c);
        break;
      case '\n':
        put_escape('n');
        break;
      case '\r':
        put_escape('r');
        break;
      case '\t':
        put_escape('t');
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Json> ParseObject(std::string_view text) {
  std::vector<size_t> inserted;
  const std::string lenient = EscapeLineBreaks(text, &inserted);
  Json doc;
  try {
    doc = Json::parse(lenient);
  } catch (const Json::parse_error& e) {
    // Where the client's own bytes went wrong: nlohmann counts in the escaped text.
    size_t byte = e.byte;
    byte -= static_cast<size_t>(std::lower_bound(inserted.begin(), inserted.end(), e.byte) - inserted.begin());
    byte = std::min(byte, text.size());  // nlohmann counts reading the end of input as a byte
    // nlohmann's text: "[json.exception.parse_error.101] parse error at line 1, column 2: <what>; last read: '<x>'".
    std::string_view what = e.what();
    if (auto at = what.find(": ", what.find("parse error")); at != std::string_view::npos) what.remove_prefix(at + 2);
    if (auto last = what.find("; last read"); last != std::string_view::npos) what = what.substr(0, last);
    if (what.size() > kMaxParseDetail) what = what.substr(0, kMaxParseDetail);
    return Bad(absl::StrCat("body is not valid JSON at byte ", byte, ": ", pki::AbslView(what)));
  }
  if (!doc.is_object()) return Bad("body must be a JSON object");
  return doc;
}

absl::Status ReadString(const Json& obj, std::string_view path, const char* key, bool required_non_empty,
                        std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(absl::StrCat("missing field \"", pki::AbslView(path), "\""));
  if (!it->is_string()) return Bad(absl::StrCat("field \"", pki::AbslView(path), "\" must be a string"));
  *out = it->get<std::string>();
  if (required_non_empty && out->empty())
    return Bad(absl::StrCat("field \"", pki::AbslView(path), "\" must not be empty"));
  return absl::OkStatus();
}

absl::Status ReadConfig(const Json& doc, std::string* dc, std::string* ca) {
  auto it = doc.find("config");
  if (it == doc.end()) return Bad("missing field \"config\"");
  if (!it->is_object()) return Bad("field \"config\" must be an object with \"dc\" and \"ca\"");
  if (auto s = ReadString(*it, "config.dc", "dc", true, dc); !s.ok()) return s;
  return ReadString(*it, "config.ca", "ca", true, ca);
}

constexpr uint64_t kMaxRequestId = std::numeric_limits<uint32_t>::max();

absl::StatusOr<uint32_t> CheckRequestIdRange(uint64_t v) {
  if (v == 0) return Bad("\"request-id\" must be a positive integer, got 0");
  if (v > kMaxRequestId) return Bad(absl::StrCat("\"request-id\" ", v, " is out of range (1 to 4294967295)"));
  return static_cast<uint32_t>(v);
}

// A JSON number, or (as the original's .NET reader converted it) a string of decimal digits.
absl::StatusOr<uint32_t> ReadRequestId(const Json& id) {
  if (id.is_number_unsigned()) return CheckRequestIdRange(id.get<uint64_t>());
  if (id.is_number_integer()) {
    return Bad(absl::StrCat("\"request-id\" must be a positive integer, got ", id.get<int64_t>()));
  }
  if (id.is_number_float()) return Bad("\"request-id\" must be an integer, not a fraction or exponent");
  if (id.is_string()) {
    const std::string& text = id.get_ref<const std::string&>();
    // More than 10 digits is out of range whatever they are; the bound keeps the sum in uint64.
    constexpr size_t kMaxDigits = 20;
    bool digits_only = !text.empty() && text.size() <= kMaxDigits;
    uint64_t v = 0;
    for (char c : text) {
      if (c < '0' || c > '9') {
        digits_only = false;
        break;
      }
      if (v <= kMaxRequestId) v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!digits_only) {
      return Bad("\"request-id\" must be a JSON number or a string of decimal digits, e.g. 95 or \"95\"");
    }
    return CheckRequestIdRange(v);
  }
  return Bad("\"request-id\" must be a JSON number");
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

Json StatusObject(std::string_view status, std::string_view message) {
  Json inner = Json::object();
  inner["status"] = status;
  inner["message"] = message;
  Json outer = Json::object();
  outer["request-status"] = std::move(inner);
  return outer;
}

}  // namespace

std::string EscapeRawLineBreaksInStrings(std::string_view json) { return EscapeLineBreaks(json, nullptr); }

absl::StatusOr<SubmitBody> ParseSubmitBody(std::string_view json) {
  auto doc = ParseObject(json);
  if (!doc.ok()) return doc.status();
  SubmitBody body;
  if (auto s = ReadString(*doc, "pkcs10", "pkcs10", true, &body.pkcs10); !s.ok()) return s;
  if (auto s = ReadString(*doc, "template", "template", false, &body.template_name); !s.ok()) return s;
  if (auto s = ReadConfig(*doc, &body.dc, &body.ca); !s.ok()) return s;
  return body;
}

absl::StatusOr<RetrieveBody> ParseRetrieveBody(std::string_view json) {
  auto doc = ParseObject(json);
  if (!doc.ok()) return doc.status();
  RetrieveBody body;
  auto it = doc->find("request-id");
  if (it == doc->end()) return Bad("missing field \"request-id\"");
  auto id = ReadRequestId(*it);
  if (!id.ok()) return id.status();
  body.request_id = *id;
  if (auto s = ReadConfig(*doc, &body.dc, &body.ca); !s.ok()) return s;
  return body;
}

std::string_view DispositionStatus(Disposition d) {
  switch (d) {
    case Disposition::kIncomplete:
      return "CR_DISP_INCOMPLETE";
    case Disposition::kError:
      return "CR_DISP_ERROR";
    case Disposition::kDenied:
      return "CR_DISP_DENIED";
    case Disposition::kIssued:
      return "CR_DISP_ISSUED";
    case Disposition::kIssuedOutOfBand:
      return "CR_DISP_ISSUED_OUT_OF_BAND";
    case Disposition::kUnderSubmission:
      return "CR_DISP_UNDER_SUBMISSION";
    case Disposition::kRevoked:
      return "CR_DISP_REVOKED";
  }
  return "CR_DISP_ERROR";
}

std::string_view DispositionMessage(Disposition d) {
  switch (d) {
    case Disposition::kIncomplete:
      return "Request incomplete";
    case Disposition::kError:
      return "Request failed";
    case Disposition::kDenied:
      return "Request denied";
    case Disposition::kIssued:
      return "Certificate issued";
    case Disposition::kIssuedOutOfBand:
      return "Certificate issued out of band";
    case Disposition::kUnderSubmission:
      return "Request taken under submission";
    case Disposition::kRevoked:
      return "Certificate revoked";
  }
  return "Request failed";
}

std::string StatusOnlyJson(std::string_view status, std::string_view message) {
  return Dump(StatusObject(status, message));
}

std::string WithRequestIdJson(std::string_view status, std::string_view message, uint32_t request_id) {
  Json j = StatusObject(status, message);
  j["request-id"] = request_id;
  return Dump(j);
}

std::string WithX509Json(std::string_view status, std::string_view message, std::string_view x509_lines) {
  Json j = StatusObject(status, message);
  if (x509_lines.empty()) {
    j["x509"] = nullptr;
  } else {
    j["x509"] = x509_lines;
  }
  return Dump(j);
}

}  // namespace adcsc::node
