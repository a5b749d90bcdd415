// The response headers every answer of a node's listeners carries (API and ops port): no
// caching, no content sniffing, no framing, no scripts or loads from what we send, and HSTS.
// Our callers are programs (Jamf Pro's Java client, load balancers, curl), so these change
// nothing for them; they keep a browser that lands on a port from doing anything with it, and
// they are what TLS scanners look for. Header-only; no state.
#pragma once

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>

namespace adcsc::node {

// Two years, as HSTS preload lists ask; a connector's name never serves plain HTTP.
inline constexpr const char* kHstsValue = "max-age=63072000";

template <typename Body>
void SetSecurityHeaders(boost::beast::http::response<Body>& res) {
  namespace http = boost::beast::http;
  res.set(http::field::strict_transport_security, kHstsValue);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.set("X-Frame-Options", "DENY");
  res.set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  res.set("Referrer-Policy", "no-referrer");
}

}  // namespace adcsc::node
