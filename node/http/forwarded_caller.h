// Who really called the API when a TLS-terminating load balancer stands in front: HAProxy
// verifies Jamf Pro's certificate, then connects to the node with its own, so the node's TLS
// peer is the balancer. The balancer passes the client's address, certificate pin and name
// in request headers; ResolveCaller believes them only from a TLS peer whose pin is in
// api.trusted_proxy_pins, so nobody else can claim to be someone they are not.
// Pure functions; thread-safe.
#pragma once

#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "node/http/client_auth.h"

namespace adcsc::node {

// The headers (deploy/haproxy/adcsc-tls.cfg sets them, replacing any a client sent).
inline constexpr std::string_view kForwardedAddrHeader = "X-Adcsc-Client-Addr";
inline constexpr std::string_view kForwardedPinHeader = "X-Adcsc-Client-Pin";
inline constexpr std::string_view kForwardedSubjectHeader = "X-Adcsc-Client-Subject";

// Their values as received; empty when the header is absent.
struct ForwardedHeaders {
  std::string_view addr, pin, subject;
  bool any() const { return !addr.empty() || !pin.empty() || !subject.empty(); }
};

struct Caller {
  ClientAuthResult auth;  // the identity the request is decided on and logged as
  std::string remote;     // the client's address, for logs
  // Set when the request came through a trusted proxy: the proxy's own identity.
  std::string proxy_pin, proxy_subject, proxy_remote;
  // Forwarded headers came from a TLS peer that is not a trusted proxy; they were ignored.
  bool forwarded_ignored = false;
};

// `tls_peer` and `tls_remote`: the connection's own client certificate decision and address.
// InvalidArgument (a message naming the header) when a trusted proxy sent a malformed or
// incomplete set: the balancer's configuration is wrong, and guessing would log a lie.
absl::StatusOr<Caller> ResolveCaller(const ClientAuthResult& tls_peer, std::string_view tls_remote,
                                     const ForwardedHeaders& headers, const std::set<std::string>& trusted_proxy_pins);

}  // namespace adcsc::node
