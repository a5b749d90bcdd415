// IP addresses and prefixes as 16 bytes (an IPv4 address as its IPv4-mapped IPv6 form), for
// matching a connection's source against configured prefixes and for grouping sources:
// "192.0.2.10", "192.0.2.0/24", "2001:db8::/64". Plain values; no DNS.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace adcsc::text {

using Address16 = std::array<uint8_t, 16>;

// An address in text form (IPv4 dotted quad or IPv6, no zone, no brackets).
absl::StatusOr<Address16> ParseAddress(std::string_view text);

struct AddressPrefix {
  Address16 bytes{};
  int bits = 128;  // of the 16-byte form: an IPv4 /24 is 96 + 24
  bool Contains(const Address16& a) const;
};

// An address (a single-host prefix) or address/length.
absl::StatusOr<AddressPrefix> ParseAddressPrefix(std::string_view text);

// The key sources are counted by: an IPv4 address as itself, an IPv6 address by its /64 (one
// host usually owns a whole /64, so counting single addresses would be no limit at all).
std::string SourceKey(const Address16& a);

}  // namespace adcsc::text
