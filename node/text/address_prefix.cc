#include "node/text/address_prefix.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace adcsc::text {
namespace {

constexpr uint8_t kV4MappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool IsV4Mapped(const Address16& a) { return std::memcmp(a.data(), kV4MappedPrefix, 12) == 0; }

}  // namespace

absl::StatusOr<Address16> ParseAddress(std::string_view text) {
  const std::string s(text);
  Address16 out{};
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(out.data(), kV4MappedPrefix, 12);
    std::memcpy(out.data() + 12, &v4, 4);
    return out;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    std::memcpy(out.data(), &v6, 16);
    return out;
  }
  return absl::InvalidArgumentError(absl::StrCat("not an IP address: \"", s, "\""));
}

bool AddressPrefix::Contains(const Address16& a) const {
  const int whole = bits / 8;
  if (std::memcmp(a.data(), bytes.data(), static_cast<size_t>(whole)) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (bytes[whole] & mask);
}

absl::StatusOr<AddressPrefix> ParseAddressPrefix(std::string_view text) {
  const size_t slash = text.find('/');
  auto address = ParseAddress(text.substr(0, slash));
  if (!address.ok()) return address.status();
  AddressPrefix p;
  p.bytes = *address;
  const bool v4 = IsV4Mapped(p.bytes) && text.substr(0, slash).find(':') == std::string_view::npos;
  const int max_bits = v4 ? 32 : 128;
  int bits = max_bits;
  if (slash != std::string_view::npos) {
    const std::string length(text.substr(slash + 1));
    if (!absl::SimpleAtoi(length, &bits) || bits < 0 || bits > max_bits) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad prefix length in \"", std::string(text), "\" (0 to ", max_bits, ")"));
    }
  }
  p.bits = v4 ? 96 + bits : bits;
  // Clear host bits so that equal prefixes compare equal.
  for (int i = 0; i < 16; ++i) {
    const int keep = std::max(0, std::min(8, p.bits - 8 * i));
    p.bytes[i] &= static_cast<uint8_t>(keep == 0 ? 0 : 0xff << (8 - keep));
  }
  return p;
}

std::string SourceKey(const Address16& a) {
  char buf[INET6_ADDRSTRLEN];
  if (IsV4Mapped(a)) {
    inet_ntop(AF_INET, a.data() + 12, buf, sizeof buf);
    return buf;
  }
  Address16 net = a;
  std::memset(net.data() + 8, 0, 8);
  inet_ntop(AF_INET6, net.data(), buf, sizeof buf);
  return absl::StrCat(buf, "/64");
}

}  // namespace adcsc::text
