#include "node/http/forwarded_caller.h"

#include <gtest/gtest.h>

namespace adcsc::node {
namespace {

const std::string kProxyPin(64, 'a');
const std::string kJamfPin(64, 'b');

ClientAuthResult Peer(const std::string& pin, const std::string& subject, bool ok = true) {
  ClientAuthResult r;
  r.ok = ok;
  r.pin = pin;
  r.subject = subject;
  return r;
}

TEST(ForwardedCaller, WithoutHeadersTheTlsPeerIsTheCaller) {
  auto c = ResolveCaller(Peer(kJamfPin, "jamf"), "192.0.2.7", {}, {kProxyPin});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->auth.pin, kJamfPin);
  EXPECT_EQ(c->remote, "192.0.2.7");
  EXPECT_TRUE(c->proxy_pin.empty());
  EXPECT_FALSE(c->forwarded_ignored);
}

TEST(ForwardedCaller, ATrustedProxyNamesTheClientBehindIt) {
  auto c = ResolveCaller(Peer(kProxyPin, "haproxy-client"), "127.0.0.1",
                         {"198.51.100.20", kJamfPin, "jamf.example.com"}, {kProxyPin});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->auth.ok);
  EXPECT_EQ(c->auth.pin, kJamfPin);
  EXPECT_EQ(c->auth.subject, "jamf.example.com");
  EXPECT_EQ(c->remote, "198.51.100.20");
  EXPECT_EQ(c->proxy_pin, kProxyPin);
  EXPECT_EQ(c->proxy_subject, "haproxy-client");
  EXPECT_EQ(c->proxy_remote, "127.0.0.1");
}

TEST(ForwardedCaller, IPv6AddressesAndAnEmptySubjectAreFine) {
  auto c = ResolveCaller(Peer(kProxyPin, "lb"), "::1", {"2001:db8::5", kJamfPin, ""}, {kProxyPin});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->remote, "2001:db8::5");
  EXPECT_EQ(c->auth.subject, "");
}

TEST(ForwardedCaller, AnyoneElsesHeadersAreIgnored) {
  // A mapped client that is not a trusted proxy cannot claim to be someone else.
  auto c = ResolveCaller(Peer(kJamfPin, "jamf"), "192.0.2.7", {"10.9.9.9", kProxyPin, "admin"}, {kProxyPin});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->forwarded_ignored);
  EXPECT_EQ(c->auth.pin, kJamfPin);
  EXPECT_EQ(c->auth.subject, "jamf");
  EXPECT_EQ(c->remote, "192.0.2.7");
  // Nor can a refused one, even presenting the proxy's pin in a header.
  ClientAuthResult refused = Peer(kProxyPin, "impostor", /*ok=*/false);
  auto r = ResolveCaller(refused, "192.0.2.8", {"10.0.0.1", kJamfPin, "jamf"}, {kProxyPin});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->auth.ok);
  EXPECT_EQ(r->remote, "192.0.2.8");
}

TEST(ForwardedCaller, MalformedHeadersFromATrustedProxyAreAnError) {
  const std::string upper(64, 'B'), short_pin(63, 'b');
  struct Case {
    ForwardedHeaders h;
    const char* names;
  } cases[] = {
      {{"not-an-ip", kJamfPin, "jamf"}, "X-Adcsc-Client-Addr"},
      {{"", kJamfPin, "jamf"}, "X-Adcsc-Client-Addr"},
      {{"192.0.2.1, 10.0.0.1", kJamfPin, "jamf"}, "X-Adcsc-Client-Addr"},
      {{"192.0.2.1", "", "jamf"}, "X-Adcsc-Client-Pin"},
      {{"192.0.2.1", upper, "jamf"}, "X-Adcsc-Client-Pin"},
      {{"192.0.2.1", short_pin, "jamf"}, "X-Adcsc-Client-Pin"},
  };
  for (const Case& c : cases) {
    auto r = ResolveCaller(Peer(kProxyPin, "lb"), "127.0.0.1", c.h, {kProxyPin});
    ASSERT_FALSE(r.ok()) << c.names;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.names), std::string_view::npos) << r.status();
  }
}

TEST(ForwardedCaller, ASubjectCannotBreakALogLine) {
  auto c = ResolveCaller(Peer(kProxyPin, "lb"), "127.0.0.1",
                         {"192.0.2.1", kJamfPin,
                          "a\nb\x01"
                          "c"},
                         {kProxyPin});
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->auth.subject, "a?b?c");
  const std::string long_name(1000, 'x');
  auto l = ResolveCaller(Peer(kProxyPin, "lb"), "127.0.0.1", {"192.0.2.1", kJamfPin, long_name}, {kProxyPin});
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->auth.subject.size(), 256u);
}

}  // namespace
}  // namespace adcsc::node
