// Addresses and prefixes as 16 bytes: IPv4 inside IPv6's mapped form, prefix matching, and
// the source key (IPv6 by /64).
#include "node/text/address_prefix.h"

#include <gtest/gtest.h>

namespace adcsc::text {
namespace {

TEST(AddressPrefix, MatchesIPv4AndIPv6Prefixes) {
  auto v4 = ParseAddressPrefix("192.0.2.0/24");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_TRUE(v4->Contains(*ParseAddress("192.0.2.77")));
  EXPECT_FALSE(v4->Contains(*ParseAddress("192.0.3.1")));
  EXPECT_FALSE(v4->Contains(*ParseAddress("2001:db8::1")));
  auto host = ParseAddressPrefix("10.1.2.3");
  ASSERT_TRUE(host.ok());
  EXPECT_TRUE(host->Contains(*ParseAddress("10.1.2.3")));
  EXPECT_FALSE(host->Contains(*ParseAddress("10.1.2.4")));
  auto v6 = ParseAddressPrefix("2001:db8:aa::/48");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->Contains(*ParseAddress("2001:db8:aa:ffff::1")));
  EXPECT_FALSE(v6->Contains(*ParseAddress("2001:db8:ab::1")));
  auto odd = ParseAddressPrefix("192.0.2.128/25");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->Contains(*ParseAddress("192.0.2.200")));
  EXPECT_FALSE(odd->Contains(*ParseAddress("192.0.2.100")));
}

TEST(AddressPrefix, RefusesWhatIsNotAnAddressOrPrefix) {
  EXPECT_FALSE(ParseAddressPrefix("example.com").ok());
  EXPECT_FALSE(ParseAddressPrefix("192.0.2.0/33").ok());
  EXPECT_FALSE(ParseAddressPrefix("192.0.2.0/x").ok());
  EXPECT_FALSE(ParseAddressPrefix("2001:db8::/129").ok());
  EXPECT_FALSE(ParseAddress("").ok());
}

TEST(AddressPrefix, SourceKeysGroupIPv6ByItsSlash64) {
  EXPECT_EQ(SourceKey(*ParseAddress("192.0.2.1")), "192.0.2.1");
  EXPECT_EQ(SourceKey(*ParseAddress("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
  EXPECT_EQ(SourceKey(*ParseAddress("2001:db8:1:2::9")), SourceKey(*ParseAddress("2001:db8:1:2:ffff::1")));
}

}  // namespace
}  // namespace adcsc::text
