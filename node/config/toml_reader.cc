#include "node/config/toml_reader.h"

namespace adcsc::node {

void ReadLocalCaTemplates(TomlReader& r, const toml::table& parent, std::string_view key, std::string_view prefix,
                          adcsc::ca::LocalCaOptions* out) {
  const toml::node* n = parent.get(key);
  if (n == nullptr) {
    r.Error(prefix, absl::StrCat("at least one [[", pki::AbslView(prefix), "]] entry is required"));
    return;
  }
  const toml::array* arr = n->as_array();
  if (arr == nullptr) {
    r.Error(prefix, absl::StrCat("must be an array of tables ([[", pki::AbslView(prefix), "]])"));
    return;
  }
  for (size_t i = 0; i < arr->size(); ++i) {
    std::string entry = absl::StrCat(pki::AbslView(prefix), "[", i, "]");
    const toml::table* t = (*arr)[i].as_table();
    if (t == nullptr) {
      r.Error(entry, "must be a table");
      continue;
    }
    r.CheckKnown(*t, entry + ".",
                 {"name", "eku", "validity_days", "min_key_bits", "min_ec_key_bits", "policy", "pending_seconds"});
    adcsc::ca::TemplatePolicy tp;
    r.String(*t, "name", entry + ".name", &tp.name, false);
    r.Strings(*t, "eku", entry + ".eku", &tp.ekus);
    r.Int(*t, "validity_days", entry + ".validity_days", &tp.validity_days, 1, 36500);
    r.Int(*t, "min_key_bits", entry + ".min_key_bits", &tp.min_key_bits, 0, 16384);
    r.Int(*t, "min_ec_key_bits", entry + ".min_ec_key_bits", &tp.min_ec_key_bits, 0, 571);
    r.Int(*t, "pending_seconds", entry + ".pending_seconds", &tp.pending_seconds, 0, 365LL * 86400);
    std::string policy = "issue";
    r.String(*t, "policy", entry + ".policy", &policy, false);
    if (policy == "issue") {
      tp.policy = adcsc::ca::IssuancePolicy::kIssue;
    } else if (policy == "pending") {
      tp.policy = adcsc::ca::IssuancePolicy::kPending;
    } else if (policy == "deny") {
      tp.policy = adcsc::ca::IssuancePolicy::kDeny;
    } else {
      r.Error(entry + ".policy", absl::StrCat("unknown policy \"", policy, "\" (use issue, pending or deny)"));
    }
    out->templates.push_back(std::move(tp));
  }
}

}  // namespace adcsc::node
