// Reads TOML configuration tables and collects every problem in one pass, each as
// "<file>: <key>: <what is wrong>", so an operator fixes the file once. Used by the node's
// config loader and by the ADCS emulator's. Thread-safety: one reader per thread.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/ca/local_ca.h"
#include "node/pki/absl_view.h"
#include "toml++/toml.h"

namespace adcsc::node {

class TomlReader {
 public:
  explicit TomlReader(std::filesystem::path source) : source_(std::move(source)), base_(source_.parent_path()) {}

  void Error(std::string_view key, std::string_view what) {
    errors_.push_back(absl::StrCat(source_.string(), ": ", pki::AbslView(key), ": ", pki::AbslView(what)));
  }
  bool ok() const { return errors_.empty(); }
  std::string Joined() const { return absl::StrJoin(errors_, "\n"); }

  // Reports keys of `table` not in `known`.
  void CheckKnown(const toml::table& table, std::string_view prefix, std::initializer_list<std::string_view> known) {
    for (auto& [k, v] : table) {
      if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
        Error(absl::StrCat(pki::AbslView(prefix), pki::AbslView(k.str())),
              "unknown key (check the spelling; see docs/configuration.md)");
      }
    }
  }

  const toml::table* Table(const toml::table& parent, std::string_view key, std::string_view full, bool required) {
    const toml::node* n = parent.get(key);
    if (n == nullptr) {
      if (required) Error(full, "missing section");
      return nullptr;
    }
    if (!n->is_table()) {
      Error(full, "must be a table");
      return nullptr;
    }
    return n->as_table();
  }

  void String(const toml::table& t, std::string_view key, std::string_view full, std::string* out, bool required) {
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      if (required) Error(full, "missing (required)");
      return;
    }
    if (auto v = n->value<std::string>(); v && n->is_string()) {
      *out = *v;
      if (required && out->empty()) Error(full, "must not be empty");
    } else {
      Error(full, "must be a string");
    }
  }

  void Path(const toml::table& t, std::string_view key, std::string_view full, std::filesystem::path* out,
            bool required) {
    std::string s;
    if (t.get(key) == nullptr && !required) return;
    String(t, key, full, &s, required);
    if (s.empty()) return;
    std::filesystem::path p(s);
    *out = p.is_absolute() ? p : (base_ / p).lexically_normal();
  }

  template <typename T>
  void Int(const toml::table& t, std::string_view key, std::string_view full, T* out, int64_t min, int64_t max) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    if (!n->is_integer()) {
      Error(full, "must be an integer");
      return;
    }
    int64_t v = *n->value<int64_t>();
    if (v < min || v > max) {
      Error(full, absl::StrCat("must be between ", min, " and ", max, ", got ", v));
      return;
    }
    *out = static_cast<T>(v);
  }

  void Millis(const toml::table& t, std::string_view key, std::string_view full, std::chrono::milliseconds* out) {
    int64_t v = out->count();
    Int(t, key, full, &v, 1, 24LL * 3600 * 1000);
    *out = std::chrono::milliseconds(v);
  }

  void Bool(const toml::table& t, std::string_view key, std::string_view full, bool* out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    if (!n->is_boolean()) {
      Error(full, "must be true or false");
      return;
    }
    *out = *n->value<bool>();
  }

  void Strings(const toml::table& t, std::string_view key, std::string_view full, std::vector<std::string>* out) {
    const toml::node* n = t.get(key);
    if (n == nullptr) return;
    const toml::array* arr = n->as_array();
    if (arr == nullptr) {
      Error(full, "must be an array of strings");
      return;
    }
    out->clear();
    for (size_t i = 0; i < arr->size(); ++i) {
      auto v = (*arr)[i].value<std::string>();
      if (!v || !(*arr)[i].is_string()) {
        Error(absl::StrCat(pki::AbslView(full), "[", i, "]"), "must be a string");
        continue;
      }
      out->push_back(*v);
    }
  }

  const std::filesystem::path& source() const { return source_; }

 private:
  std::filesystem::path source_;
  std::filesystem::path base_;
  std::vector<std::string> errors_;
};

// Reads the array of tables `<prefix>` (e.g. "ca.local.templates", found in `parent` under
// its last component `key`) into out->templates: name, eku, validity_days, min_key_bits,
// min_ec_key_bits, policy (issue | pending | deny), pending_seconds.
void ReadLocalCaTemplates(TomlReader& r, const toml::table& parent, std::string_view key, std::string_view prefix,
                          adcsc::ca::LocalCaOptions* out);

}  // namespace adcsc::node
