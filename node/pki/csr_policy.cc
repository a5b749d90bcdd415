#include "node/pki/csr_policy.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/pki/absl_view.h"

namespace adcsc::pki {
namespace {

// Microsoft's SAN URL for strong certificate mapping (KB5014754).
constexpr std::string_view kSidUriPrefix = "tag:microsoft.com,2022-09-14:sid:";
// Application policies (szOID_APPLICATION_CERT_POLICIES): version 1 templates copy them from
// the request into the certificate, which turns any such template into a client-auth or
// enrollment-agent one (ESC15, CVE-2024-49019).
constexpr std::string_view kApplicationPoliciesOid = "1.3.6.1.4.1.311.21.10";
// The CA's SID security extension (szOID_NTDS_CA_SECURITY_EXT): the CA writes it from the
// directory; a request has no business naming an account's SID there.
constexpr std::string_view kSidSecurityExtensionOid = "1.3.6.1.4.1.311.25.2";
// Past these, a name is refused without matching (no Jamf profile comes near them).
constexpr size_t kMaxSubjectChars = 1024;
constexpr size_t kMaxSanChars = 1024;
constexpr size_t kMaxPatternChars = 256;

enum class Token { kOne, kWithinRdn, kAny, kLiteral };

// Positions of `subject` that separate RDNs or their attributes (',' or '+' not escaped).
std::vector<bool> SeparatorsOf(std::string_view subject) {
  std::vector<bool> sep(subject.size(), false);
  for (size_t i = 0; i < subject.size(); ++i) {
    if (subject[i] == '\\') {
      ++i;  // the escaped character is part of the value
    } else if (subject[i] == ',' || subject[i] == '+') {
      sep[i] = true;
    }
  }
  return sep;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

bool MatchesAny(const std::vector<std::string>& patterns, std::string_view text, bool subject) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return GlobMatches(p, text, subject); });
}

// S-1-<authority>-<sub>... digits only.
bool IsSid(std::string_view sid) {
  if (!absl::StartsWith(AbslView(sid), "S-1-") || sid.size() > 184) return false;
  int parts = 0;
  bool digit_seen = false;
  for (char c : sid.substr(4)) {
    if (c == '-') {
      if (!digit_seen) return false;
      ++parts;
      digit_seen = false;
    } else if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit_seen = true;
    } else {
      return false;
    }
  }
  return digit_seen && parts >= 1;
}

std::string KeyTypeKey(std::string_view key_type) { return absl::AsciiStrToLower(AbslView(key_type)); }

const char* SanTypeName(CsrSan::Type t) {
  switch (t) {
    case CsrSan::Type::kDns:
      return "DNS";
    case CsrSan::Type::kEmail:
      return "email";
    case CsrSan::Type::kUri:
      return "URI";
    case CsrSan::Type::kIp:
      return "IP";
    case CsrSan::Type::kUpn:
      return "UPN";
    case CsrSan::Type::kOtherName:
      return "otherName";
    case CsrSan::Type::kOther:
      return "other";
  }
  return "other";
}

class Judge {
 public:
  Judge(const CsrPolicy& policy, std::string_view policy_key) : policy_(policy), key_(policy_key) {}

  PolicyDecision Evaluate(const CsrFacts& csr) {
    if (!csr.undecodable.empty()) {
      return Deny("extensions", absl::StrCat(csr.undecodable, ", so what the request asks for cannot be judged"));
    }
    if (PolicyDecision d = Key(csr); !d.allowed) return d;
    if (csr.subject.size() > kMaxSubjectChars) {
      return Deny("subject_patterns", absl::StrCat("subject is longer than ", kMaxSubjectChars, " characters"));
    }
    if (!MatchesAny(policy_.subject_patterns, csr.subject, /*subject=*/true)) {
      return Deny("subject_patterns", absl::StrCat("subject ", Quote(csr.subject), " matches no pattern"));
    }
    int sid_uris = 0;
    for (const CsrSan& san : csr.subject_alt_names) {
      if (PolicyDecision d = San(san, &sid_uris); !d.allowed) return d;
    }
    for (const auto& [name, value] : csr.name_value_pairs) {
      if (absl::EqualsIgnoreCase(name, "ValidityPeriod") || absl::EqualsIgnoreCase(name, "ValidityPeriodUnits")) {
        if (policy_.requested_validity == RequestedValidity::kRefuse) {
          return Deny("requested_validity", absl::StrCat("the request asks for its own validity period (", Quote(name),
                                                         " = ", Quote(value), ")"));
        }
      } else if (absl::EqualsIgnoreCase(name, "SAN")) {
        // With EDITF_ATTRIBUTESUBJECTALTNAME2 a CA takes SANs from this attribute (ESC6),
        // past every SAN rule above.
        return Deny("san_attribute", absl::StrCat("the request asks for SANs in a SAN request attribute (",
                                                  Quote(value), "); ask for them in the subjectAltName extension"));
      }
    }
    for (const std::string& oid : csr.other_extension_oids) {
      if (oid == kApplicationPoliciesOid) {
        return Deny("extensions", absl::StrCat("the request asks for application policies (extension ", oid, ")"));
      }
      if (oid == kSidSecurityExtensionOid) {
        return Deny("extensions", absl::StrCat("the request carries the CA's SID security extension (", oid, ")"));
      }
    }
    return {};
  }

 private:
  PolicyDecision Deny(std::string_view rule, std::string_view why) const {
    return {false, std::string(rule), absl::StrCat(AbslView(key_), ".", AbslView(rule), ": ", AbslView(why))};
  }

  PolicyDecision Key(const CsrFacts& csr) const {
    const std::string type = KeyTypeKey(csr.key_type);
    if (std::find(policy_.key_types.begin(), policy_.key_types.end(), type) == policy_.key_types.end()) {
      return Deny("key_types", absl::StrCat("key type ", Quote(type), " is not allowed"));
    }
    if (type == "rsa" && csr.key_bits < policy_.min_rsa_bits) {
      return Deny("min_rsa_bits",
                  absl::StrCat("RSA key of ", csr.key_bits, " bits is below the minimum of ", policy_.min_rsa_bits));
    }
    if (type == "rsa" && csr.key_bits > policy_.max_rsa_bits) {
      return Deny("max_rsa_bits",
                  absl::StrCat("RSA key of ", csr.key_bits, " bits is above the maximum of ", policy_.max_rsa_bits));
    }
    if (type == "ec" &&
        std::find(policy_.ec_curves.begin(), policy_.ec_curves.end(), csr.ec_curve) == policy_.ec_curves.end()) {
      return Deny("ec_curves", absl::StrCat("EC curve ", Quote(csr.ec_curve), " is not allowed"));
    }
    return {};
  }

  PolicyDecision San(const CsrSan& san, int* sid_uris) const {
    const char* rule = nullptr;
    const std::vector<std::string>* patterns = nullptr;
    switch (san.type) {
      case CsrSan::Type::kDns:
        rule = "san_dns", patterns = &policy_.san_dns;
        break;
      case CsrSan::Type::kEmail:
        rule = "san_email", patterns = &policy_.san_email;
        break;
      case CsrSan::Type::kUpn:
        rule = "san_upn", patterns = &policy_.san_upn;
        break;
      case CsrSan::Type::kIp:
        rule = "san_ip", patterns = &policy_.san_ip;
        break;
      case CsrSan::Type::kUri:
        if (absl::StartsWithIgnoreCase(AbslView(san.value), AbslView(kSidUriPrefix))) return SidUri(san, sid_uris);
        rule = "san_uri", patterns = &policy_.san_uri;
        break;
      case CsrSan::Type::kOtherName:
        return Deny("san_other", absl::StrCat("otherName SAN of type ", Quote(san.value),
                                              " is not allowed (of the otherNames only UPN can be, with san_upn)"));
      case CsrSan::Type::kOther:
        return Deny("san_other", absl::StrCat(Quote(san.value), " SAN is not allowed"));
    }
    const std::string what = absl::StrCat(SanTypeName(san.type), " SAN ", Quote(san.value));
    if (san.value.size() > kMaxSanChars) return Deny(rule, absl::StrCat(what, " is too long"));
    if (HasControl(san.value)) return Deny(rule, absl::StrCat(what, " holds control characters"));
    if (!MatchesAny(*patterns, san.value, /*subject=*/false)) {
      return Deny(rule, absl::StrCat(what, patterns->empty() ? " is not allowed" : " matches no pattern"));
    }
    return {};
  }

  PolicyDecision SidUri(const CsrSan& san, int* sid_uris) const {
    if (!policy_.allow_sid_uri) {
      return Deny("allow_sid_uri", absl::StrCat("SID URI SAN ", Quote(san.value), " is not allowed"));
    }
    if (!IsSid(std::string_view(san.value).substr(kSidUriPrefix.size()))) {
      return Deny("allow_sid_uri", absl::StrCat("SID URI SAN ", Quote(san.value), " does not hold a SID (S-1-...)"));
    }
    if (++*sid_uris > 1) return Deny("allow_sid_uri", "the request asks for more than one SID URI SAN");
    return {};
  }

  const CsrPolicy& policy_;
  std::string_view key_;
};

}  // namespace

PolicyDecision EvaluateCsrPolicy(const CsrPolicy& policy, std::string_view policy_key, const CsrFacts& csr) {
  return Judge(policy, policy_key).Evaluate(csr);
}

absl::Status CheckPattern(std::string_view pattern, bool subject) {
  if (pattern.empty()) return absl::InvalidArgumentError("a pattern must not be empty");
  if (pattern.size() > kMaxPatternChars) {
    return absl::InvalidArgumentError(absl::StrCat("a pattern has at most ", kMaxPatternChars, " characters"));
  }
  if (HasControl(pattern)) return absl::InvalidArgumentError("a pattern must not hold control characters");
  if (absl::StrContains(AbslView(pattern), "***")) {
    return absl::InvalidArgumentError(absl::StrCat("pattern ", Quote(pattern), " has *** (use * or **)"));
  }
  if (!subject && absl::StrContains(AbslView(pattern), "**")) {
    return absl::InvalidArgumentError(
        absl::StrCat("pattern ", Quote(pattern), " has ** (only subject patterns tell * from **; here * matches all)"));
  }
  return absl::OkStatus();
}

bool GlobMatches(std::string_view pattern, std::string_view text, bool subject) {
  std::vector<Token> tokens;
  std::vector<char> literals;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '?') {
      tokens.push_back(Token::kOne);
    } else if (pattern[i] == '*') {
      const bool twice = i + 1 < pattern.size() && pattern[i + 1] == '*';
      if (twice) ++i;
      tokens.push_back(subject && !twice ? Token::kWithinRdn : Token::kAny);
    } else {
      tokens.push_back(Token::kLiteral);
    }
    literals.push_back(absl::ascii_tolower(static_cast<unsigned char>(pattern[i])));
  }
  const std::vector<bool> sep = subject ? SeparatorsOf(text) : std::vector<bool>(text.size(), false);
  // matched[j]: the tokens so far match text[0, j). One row per token; O(tokens x text).
  std::vector<char> matched(text.size() + 1, 0), next(text.size() + 1, 0);
  matched[0] = 1;
  for (size_t t = 0; t < tokens.size(); ++t) {
    const Token tok = tokens[t];
    next[0] = (tok == Token::kWithinRdn || tok == Token::kAny) ? matched[0] : 0;
    for (size_t j = 1; j <= text.size(); ++j) {
      const char c = absl::ascii_tolower(static_cast<unsigned char>(text[j - 1]));
      switch (tok) {
        case Token::kLiteral:
          next[j] = matched[j - 1] && c == literals[t];
          break;
        case Token::kOne:
          next[j] = matched[j - 1] && !sep[j - 1];
          break;
        case Token::kWithinRdn:
          next[j] = matched[j] || (next[j - 1] && !sep[j - 1]);
          break;
        case Token::kAny:
          next[j] = matched[j] || next[j - 1];
          break;
      }
    }
    matched.swap(next);
  }
  return matched[text.size()] != 0;
}

std::string CanonicalCurveName(std::string_view name) {
  std::string n = absl::AsciiStrToLower(AbslView(name));
  n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
  if (n == "p256" || n == "prime256v1" || n == "secp256r1") return "P-256";
  if (n == "p384" || n == "secp384r1") return "P-384";
  if (n == "p521" || n == "secp521r1") return "P-521";
  return "";
}

std::string Quote(std::string_view text) {
  std::string out = "\"";
  const size_t n = std::min(text.size(), kMaxQuotedChars);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      absl::StrAppendFormat(&out, "\\x%02X", c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  if (text.size() > n) out += "...";
  return out;
}

}  // namespace adcsc::pki
