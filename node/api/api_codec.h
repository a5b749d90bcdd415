// The Jamf-facing JSON: parsing request bodies into typed values (with the exact
// BAD_REQUEST messages clients see) and writing responses byte for byte in the original
// connector's shape (field order included). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "node/ca/ca_backend.h"

namespace adcsc::node {

struct SubmitBody {
  std::string pkcs10;         // as sent: base64, maybe with line breaks or PEM armour
  std::string template_name;  // may be empty
  std::string dc;
  std::string ca;
};

struct RetrieveBody {
  uint32_t request_id = 0;
  std::string dc;
  std::string ca;
};

// What the original connector's .NET JSON reader accepted and strict JSON does not: raw LF,
// CR and TAB characters inside strings (its public curl test script sends the CSR's line
// breaks that way). Returns `json` with exactly those characters, inside strings only,
// replaced by their escapes (\n, \r, \t); everything else, other control characters
// included, is left for the JSON parser to judge.
std::string EscapeRawLineBreaksInStrings(std::string_view json);

// InvalidArgument with a message fit for the BAD_REQUEST body on any problem. Lenient where
// the original was (docs/api.md, "What the API accepts"): raw line breaks in strings,
// unknown keys ignored, "request-id" as a number or a string of digits.
absl::StatusOr<SubmitBody> ParseSubmitBody(std::string_view json);
absl::StatusOr<RetrieveBody> ParseRetrieveBody(std::string_view json);

// "CR_DISP_ISSUED" etc., and the original's message for each disposition.
std::string_view DispositionStatus(adcsc::ca::Disposition d);
std::string_view DispositionMessage(adcsc::ca::Disposition d);

// {"request-status":{"status":S,"message":M}}
std::string StatusOnlyJson(std::string_view status, std::string_view message);
// {"request-status":{...},"request-id":N}
std::string WithRequestIdJson(std::string_view status, std::string_view message, uint32_t request_id);
// {"request-status":{...},"x509":"<b64 lines>"} or "x509":null when `x509_lines` is empty.
std::string WithX509Json(std::string_view status, std::string_view message, std::string_view x509_lines);

}  // namespace adcsc::node
