#include "node/api/unserved_calls.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/ascii.h"
#include "nlohmann/json.hpp"
#include "node/log/log_throttle.h"

namespace adcsc::node {
namespace {

// How deep the body's keys are followed, and how many array elements are looked into (a list
// of records usually repeats one shape).
constexpr int kMaxDepth = 8;
constexpr size_t kMaxArrayElements = 4;
// A name longer than this (a key, a header, a parameter) is cut short, as any field a client
// chooses.
constexpr size_t kMaxNameBytes = 64;

// `text` cut at every `sep` (empty pieces kept).
std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> pieces;
  while (true) {
    const size_t at = text.find(sep);
    pieces.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return pieces;
    text.remove_prefix(at + 1);
  }
}

bool IsHttpMethod(std::string_view m) {
  static constexpr std::string_view kMethods[] = {"GET",  "POST",    "PUT",   "DELETE", "PATCH",
                                                  "HEAD", "OPTIONS", "TRACE", "CONNECT"};
  return std::find(std::begin(kMethods), std::end(kMethods), m) != std::end(kMethods);
}

// A segment that names one thing rather than a kind of call: digits only, or 8 or more
// characters of hex digits and dashes (a serial number, a UUID, a request ID in hex).
bool LooksLikeIdentifier(std::string_view segment) {
  if (segment.empty()) return false;
  if (std::all_of(segment.begin(), segment.end(), [](unsigned char c) { return std::isdigit(c); })) return true;
  return segment.size() >= 8 &&
         std::all_of(segment.begin(), segment.end(), [](unsigned char c) { return std::isxdigit(c) || c == '-'; });
}

std::string NormalizePath(std::string_view path) {
  std::string out;
  bool first = true;
  for (std::string_view segment : Split(path, '/')) {
    if (!first) out += '/';
    first = false;
    out += LooksLikeIdentifier(segment) ? std::string("{id}") : UntrustedField(segment, kMaxNameBytes);
  }
  return UntrustedField(out);
}

void SortUnique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

void CollectKeys(const nlohmann::json& value, const std::string& prefix, int depth, UnservedShape& shape) {
  if (depth > kMaxDepth) return;
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      const std::string key = prefix.empty() ? UntrustedField(it.key(), kMaxNameBytes)
                                             : prefix + "." + UntrustedField(it.key(), kMaxNameBytes);
      if (shape.body_keys.size() >= UnservedCalls::kMaxBodyKeys * 4) {
        shape.body_keys_truncated = true;
        return;
      }
      shape.body_keys.push_back(key);
      CollectKeys(it.value(), key, depth + 1, shape);
    }
  } else if (value.is_array()) {
    size_t looked = 0;
    for (const nlohmann::json& element : value) {
      if (looked++ >= kMaxArrayElements) break;
      CollectKeys(element, prefix + "[]", depth + 1, shape);
    }
  }
}

}  // namespace

bool UnservedCalls::Covers(std::string_view path) { return path.substr(0, 5) == "/api/"; }

UnservedShape UnservedCalls::ShapeOf(std::string_view method, std::string_view target,
                                     const std::vector<std::string_view>& header_names, std::string_view body) {
  UnservedShape shape;
  shape.method = IsHttpMethod(method) ? std::string(method) : "OTHER";
  const size_t q = target.find('?');
  shape.path = NormalizePath(target.substr(0, q));
  if (q != std::string_view::npos) {
    for (std::string_view pair : Split(target.substr(q + 1), '&')) {
      if (pair.empty()) continue;
      shape.query_keys.push_back(UntrustedField(pair.substr(0, pair.find('=')), kMaxNameBytes));
    }
    SortUnique(shape.query_keys);
  }
  for (std::string_view name : header_names) {
    shape.header_names.push_back(absl::AsciiStrToLower(UntrustedField(name, kMaxNameBytes)));
  }
  SortUnique(shape.header_names);
  shape.body_bytes = body.size();
  if (body.empty()) {
    shape.body_kind = "empty";
    return shape;
  }
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    shape.body_kind = "not_json";
    return shape;
  }
  shape.body_kind = parsed.is_object() ? "json_object" : parsed.is_array() ? "json_array" : "json_scalar";
  CollectKeys(parsed, "", 0, shape);
  SortUnique(shape.body_keys);
  if (shape.body_keys.size() > kMaxBodyKeys) {
    shape.body_keys.resize(kMaxBodyKeys);
    shape.body_keys_truncated = true;
  }
  return shape;
}

UnservedNote UnservedCalls::Note(std::string_view method, std::string_view target,
                                 const std::vector<std::string_view>& header_names, std::string_view body) {
  UnservedNote note;
  note.shape = ShapeOf(method, target, header_names, body);
  std::lock_guard lock(mu_);
  auto key = std::make_pair(note.shape.method, note.shape.path);
  if (seen_.count(key) > 0) {
    note.path_label = note.shape.path;
  } else if (seen_.size() < kMaxShapes) {
    seen_.insert(std::move(key));
    note.path_label = note.shape.path;
    note.first = true;
  } else {
    note.path_label = "other";
    note.table_full = true;
    note.first = !full_logged_;
    full_logged_ = true;
  }
  return note;
}

}  // namespace adcsc::node
