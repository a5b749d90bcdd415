#include "node/http/forwarded_caller.h"

#include <arpa/inet.h>

#include "absl/strings/str_cat.h"
#include "node/pki/absl_view.h"

namespace adcsc::node {
namespace {

// A certificate's CN longer than this is cut for the logs (an X.509 CN is at most 64
// characters; UTF-8 may take four bytes each).
constexpr size_t kMaxSubjectBytes = 256;

bool IsPin(std::string_view v) {
  if (v.size() != 64) return false;
  for (char c : v) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsIpAddress(std::string_view v) {
  if (v.empty() || v.size() >= INET6_ADDRSTRLEN) return false;
  const std::string s(v);
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// Control characters would break a log line; the access log escapes spaces itself.
std::string CleanSubject(std::string_view v) {
  std::string out;
  for (char c : v.substr(0, kMaxSubjectBytes)) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  return out;
}

absl::Status Malformed(std::string_view header, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("header ", pki::AbslView(header), " from the trusted proxy ",
                                                 pki::AbslView(what),
                                                 " (check the load balancer's http-request set-header lines)"));
}

}  // namespace

absl::StatusOr<Caller> ResolveCaller(const ClientAuthResult& tls_peer, std::string_view tls_remote,
                                     const ForwardedHeaders& headers, const std::set<std::string>& trusted_proxy_pins) {
  Caller caller;
  caller.auth = tls_peer;
  caller.remote = std::string(tls_remote);
  if (!headers.any()) return caller;
  if (!tls_peer.ok || trusted_proxy_pins.count(tls_peer.pin) == 0) {
    caller.forwarded_ignored = true;
    return caller;
  }
  if (!IsIpAddress(headers.addr)) return Malformed(kForwardedAddrHeader, "is missing or not an IP address");
  if (!IsPin(headers.pin)) {
    return Malformed(kForwardedPinHeader, "is missing or not a SHA-256 pin (64 lowercase hex digits)");
  }
  caller.proxy_pin = tls_peer.pin;
  caller.proxy_subject = tls_peer.subject;
  caller.proxy_remote = caller.remote;
  // The proxy let the client in (chain and pin checked there): the decision is its.
  caller.auth = ClientAuthResult{};
  caller.auth.ok = true;
  caller.auth.pin = std::string(headers.pin);
  caller.auth.subject = CleanSubject(headers.subject);
  caller.remote = std::string(headers.addr);
  return caller;
}

}  // namespace adcsc::node
