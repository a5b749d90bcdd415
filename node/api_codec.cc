#include "node/api_codec.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/pki/absl_view.h"

namespace adcsc::node {
namespace {

using Json = nlohmann::ordered_json;
using adcsc::ca::Disposition;

absl::Status Bad(std::string_view what) { return absl::InvalidArgumentError(pki::AbslView(what)); }

absl::StatusOr<Json> ParseObject(std::string_view text) {
  Json doc = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return Bad("body is not valid JSON");
  if (!doc.is_object()) return Bad("body must be a JSON object");
  return doc;
}

absl::Status ReadString(const Json& obj, std::string_view path, const char* key, bool required_non_empty,
                        std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(absl::StrCat("missing field \"", pki::AbslView(path), "\""));
  if (!it->is_string()) return Bad(absl::StrCat("field \"", pki::AbslView(path), "\" must be a string"));
  *out = it->get<std::string>();
  if (required_non_empty && out->empty()) return Bad(absl::StrCat("field \"", pki::AbslView(path), "\" must not be empty"));
  return absl::OkStatus();
}

absl::Status ReadConfig(const Json& doc, std::string* dc, std::string* ca) {
  auto it = doc.find("config");
  if (it == doc.end()) return Bad("missing field \"config\"");
  if (!it->is_object()) return Bad("field \"config\" must be an object with \"dc\" and \"ca\"");
  if (auto s = ReadString(*it, "config.dc", "dc", true, dc); !s.ok()) return s;
  return ReadString(*it, "config.ca", "ca", true, ca);
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
  const Json& id = *it;
  constexpr uint64_t kMaxRequestId = std::numeric_limits<uint32_t>::max();
  if (id.is_number_unsigned()) {
    uint64_t v = id.get<uint64_t>();
    if (v == 0) return Bad("\"request-id\" must be a positive integer, got 0");
    if (v > kMaxRequestId) return Bad(absl::StrCat("\"request-id\" ", v, " is out of range (1 to 4294967295)"));
    body.request_id = static_cast<uint32_t>(v);
  } else if (id.is_number_integer()) {
    return Bad(absl::StrCat("\"request-id\" must be a positive integer, got ", id.get<int64_t>()));
  } else if (id.is_number_float()) {
    return Bad("\"request-id\" must be an integer, not a fraction or exponent");
  } else {
    return Bad("\"request-id\" must be a JSON number");
  }
  if (auto s = ReadConfig(*doc, &body.dc, &body.ca); !s.ok()) return s;
  return body;
}

std::string_view DispositionStatus(Disposition d) {
  switch (d) {
    case Disposition::kIncomplete: return "CR_DISP_INCOMPLETE";
    case Disposition::kError: return "CR_DISP_ERROR";
    case Disposition::kDenied: return "CR_DISP_DENIED";
    case Disposition::kIssued: return "CR_DISP_ISSUED";
    case Disposition::kIssuedOutOfBand: return "CR_DISP_ISSUED_OUT_OF_BAND";
    case Disposition::kUnderSubmission: return "CR_DISP_UNDER_SUBMISSION";
    case Disposition::kRevoked: return "CR_DISP_REVOKED";
  }
  return "CR_DISP_ERROR";
}

std::string_view DispositionMessage(Disposition d) {
  switch (d) {
    case Disposition::kIncomplete: return "Request incomplete";
    case Disposition::kError: return "Request failed";
    case Disposition::kDenied: return "Request denied";
    case Disposition::kIssued: return "Certificate issued";
    case Disposition::kIssuedOutOfBand: return "Certificate issued out of band";
    case Disposition::kUnderSubmission: return "Request taken under submission";
    case Disposition::kRevoked: return "Certificate revoked";
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
