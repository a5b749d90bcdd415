// A signing policy: what a CSR may ask a CA to certify (subject, subjectAltNames, key, request
// attributes), judged before the request goes anywhere near a CA. One policy belongs to each
// [[ca.allow]] entry of the node's configuration (docs/security.md, "Writing a signing policy").
// Thread-safety: a CsrPolicy is a plain value; the functions are pure and safe from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "node/pki/csr.h"

namespace adcsc::pki {

// What to do with a CSR that asks for its own validity period (the ValidityPeriod and
// ValidityPeriodUnits name/value pairs, which ADCS honours when EDITF_ATTRIBUTEENDDATE is set).
enum class RequestedValidity {
  kRefuse,  // deny the request
  kIgnore,  // let it through; the CA's own settings decide (a signed CSR cannot be edited)
};

// Patterns are globs compared without regard to ASCII case: `?` is one character, `*` any
// run of characters. In subject patterns `*` stays inside one attribute value (it never
// spans an unescaped ',' or '+' of the RFC 2253 subject) and `**` spans anything.
// Each list allows a name that matches any of its patterns; an empty list allows none.
// The defaults are restrictive: any subject (profiles name devices from variables), no
// subjectAltName of any type until the operator lists the patterns the profiles send, the
// usual key sizes, no requested validity.
struct CsrPolicy {
  std::vector<std::string> subject_patterns = {"**"};
  std::vector<std::string> san_dns;  // a DNS SAN can map to a computer account (dNSHostName)
  std::vector<std::string> san_email;
  std::vector<std::string> san_uri;  // never matches a SID URI: see allow_sid_uri
  std::vector<std::string> san_upn;  // Microsoft UPN otherName
  std::vector<std::string> san_ip;   // addresses as text: "10.1.2.3", "2001:db8::1"
  // One URI tag:microsoft.com,2022-09-14:sid:<SID> (strong certificate mapping, KB5014754).
  bool allow_sid_uri = false;
  std::vector<std::string> key_types = {"rsa", "ec"};  // rsa, ec, ed25519, ed448
  int min_rsa_bits = 2048;
  int max_rsa_bits = 4096;
  std::vector<std::string> ec_curves = {"P-256", "P-384"};  // P-256, P-384, P-521
  RequestedValidity requested_validity = RequestedValidity::kRefuse;
};

// The policy's verdict on one CSR.
struct PolicyDecision {
  bool allowed = true;
  // When denied: the rule that refused, a bounded set of names fit for a metric label
  // (a policy key such as "san_upn", or "san_other", "san_attribute", "extensions", "subject").
  std::string rule;
  // "<policy_key>.<rule>: <why>", e.g. `ca.allow[0].san_upn: UPN SAN "admin@corp" is not
  // allowed`. Text taken from the CSR is quoted, escaped and cut to kMaxQuotedChars.
  std::string reason;
};

// Longest piece of CSR text a reason quotes.
inline constexpr size_t kMaxQuotedChars = 256;

// Judges `csr` (from CheckCsr) against `policy`; `policy_key` names the policy in reasons,
// e.g. "ca.allow[0]". The first rule that refuses decides.
PolicyDecision EvaluateCsrPolicy(const CsrPolicy& policy, std::string_view policy_key, const CsrFacts& csr);

// Whether `pattern` is usable in a list (subject patterns when `subject`): not empty, at most
// 256 characters, no control characters, `**` only in subject patterns, never `***`.
// InvalidArgument saying what is wrong.
absl::Status CheckPattern(std::string_view pattern, bool subject);

// Whether `text` matches the glob `pattern` as described above CsrPolicy.
bool GlobMatches(std::string_view pattern, std::string_view text, bool subject);

// "P-256" for "p-256", "P256", "prime256v1" or "secp256r1" (and so on for P-384 and P-521);
// empty for other names.
std::string CanonicalCurveName(std::string_view name);

// `text` for a message: at most kMaxQuotedChars bytes, control characters, '"' and '\'
// written as \xNN, and "..." when it was cut.
std::string Quote(std::string_view text);

}  // namespace adcsc::pki
