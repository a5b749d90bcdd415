// The shape of API calls adcsc does not serve. Jamf Pro's revoke call to the connector is not
// public (issue 16): the first Jamf Pro with "Enable Revocation" that calls a path under /api/
// that adcsc does not answer gets the 404 (or 405) it always got, and this records what the
// call looked like — method, path, query parameter names, header names, the JSON keys of its
// body — never a value, so the operator can report the call's shape without leaking a serial
// number, a token or a device's name. Each distinct call is logged once; all are counted.
//
// Bounded whatever a client sends: at most kMaxShapes distinct (method, path) pairs are
// remembered and get a metric label of their own; the rest count under path "other" and are
// logged once together. Path segments that look like identifiers (digits only, or 8 or more
// hex digits and dashes: a request ID, a serial number, a UUID) are shown as "{id}", so one
// call per device does not use up the table.
//
// Thread-safe: Note() is called concurrently from the API's worker threads.
#pragma once

#include <cstddef>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace adcsc::node {

// One unserved call's shape: names only, never values.
struct UnservedShape {
  std::string method;                     // as sent, or "OTHER" for a method HTTP does not define
  std::string path;                       // without the query; identifier-like segments as "{id}"
  std::vector<std::string> query_keys;    // parameter names, sorted, without duplicates
  std::vector<std::string> header_names;  // lower-case, sorted, without duplicates
  // "empty", "json_object", "json_array", "json_scalar" or "not_json".
  std::string body_kind;
  size_t body_bytes = 0;
  // The body's JSON keys as paths ("a", "a.b", "list[].c"), sorted, at most kMaxBodyKeys;
  // body_keys_truncated when there were more.
  std::vector<std::string> body_keys;
  bool body_keys_truncated = false;
};

// What Note() decided.
struct UnservedNote {
  UnservedShape shape;
  // The metric label for the path: shape.path, or "other" once the table is full.
  std::string path_label;
  // Log this call: the first of its (method, path), or the first call past a full table
  // (then `table_full` is set and the log line should say later new shapes are only counted).
  bool first = false;
  bool table_full = false;
};

class UnservedCalls {
 public:
  static constexpr size_t kMaxShapes = 32;
  static constexpr size_t kMaxBodyKeys = 64;

  // True for a path the recording is for: under "/api/".
  static bool Covers(std::string_view path);

  // The shape of one call (`target` with its query, `header_names` as received) and whether
  // it is the first of its kind.
  UnservedNote Note(std::string_view method, std::string_view target, const std::vector<std::string_view>& header_names,
                    std::string_view body);

  // The shape alone, remembering nothing (for tests and for Note).
  static UnservedShape ShapeOf(std::string_view method, std::string_view target,
                               const std::vector<std::string_view>& header_names, std::string_view body);

 private:
  std::mutex mu_;
  std::set<std::pair<std::string, std::string>> seen_;  // guarded by mu_; (method, path)
  bool full_logged_ = false;                            // guarded by mu_
};

}  // namespace adcsc::node
