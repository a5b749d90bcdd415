#include "node/rpc/uuid.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace adcsc::rpc {
namespace {

// Positions of the dashes in the 36-character text form.
constexpr std::array<size_t, 4> kDashPositions = {8, 13, 18, 23};

// Byte offsets where the 64-bit feature bitmask of the negotiation UUID sits in wire order.
constexpr size_t kFeatureBitsOffset = 8;
constexpr size_t kFeaturePrefixSize = 8;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Uuid Uuid::FromWire(ByteView bytes) {
  std::array<uint8_t, kWireSize> wire{};
  std::copy_n(bytes.begin(), std::min(bytes.size(), kWireSize), wire.begin());
  return Uuid(wire);
}

absl::StatusOr<Uuid> Uuid::Parse(std::string_view text) {
  std::string_view body = text;
  if (body.size() == kTextSize + 2 && body.front() == '{' && body.back() == '}') {
    body = body.substr(1, kTextSize);
  }
  if (body.size() != kTextSize) {
    return absl::InvalidArgumentError(absl::StrCat("UUID \"", AbslView(text), "\" is not 36 characters (8-4-4-4-12)"));
  }
  std::array<uint8_t, kWireSize> text_order{};
  size_t pos = 0;
  for (size_t i = 0; i < kWireSize; ++i) {
    if (std::find(kDashPositions.begin(), kDashPositions.end(), pos) != kDashPositions.end()) {
      if (body[pos] != '-') {
        return absl::InvalidArgumentError(absl::StrCat("UUID \"", AbslView(text), "\" lacks a dash at position ", pos));
      }
      ++pos;
    }
    const int hi = HexDigit(body[pos]);
    const int lo = HexDigit(body[pos + 1]);
    if (hi < 0 || lo < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("UUID \"", AbslView(text), "\" has a non-hex digit near position ", pos));
    }
    text_order[i] = static_cast<uint8_t>(hi << 4 | lo);
    pos += 2;
  }
  return Uuid(TextOrderToWire(text_order));
}

std::string Uuid::ToString() const {
  static constexpr char kHex[] = "0123456789abcdef";
  const std::array<uint8_t, kWireSize> t = TextOrderToWire(wire_);
  std::string out;
  out.reserve(kTextSize);
  for (size_t i = 0; i < kWireSize; ++i) {
    if (std::find(kDashPositions.begin(), kDashPositions.end(), out.size()) != kDashPositions.end()) {
      out.push_back('-');
    }
    out.push_back(kHex[t[i] >> 4]);
    out.push_back(kHex[t[i] & 0x0f]);
  }
  return out;
}

std::string SyntaxId::ToString() const { return absl::StrCat(uuid.ToString(), " v", major, ".", minor); }

SyntaxId BindTimeFeatureSyntax(uint16_t features) {
  std::array<uint8_t, Uuid::kWireSize> wire = kBindTimeFeatureSyntax.uuid.wire();
  std::fill(wire.begin() + kFeatureBitsOffset, wire.end(), 0);
  wire[kFeatureBitsOffset] = static_cast<uint8_t>(features & 0xff);
  wire[kFeatureBitsOffset + 1] = static_cast<uint8_t>(features >> 8);
  return SyntaxId{Uuid(wire), kBindTimeFeatureSyntax.major, kBindTimeFeatureSyntax.minor};
}

std::optional<uint64_t> BindTimeFeatureBits(const Uuid& uuid) {
  const auto& prefix = kBindTimeFeatureSyntax.uuid.wire();
  if (!std::equal(prefix.begin(), prefix.begin() + kFeaturePrefixSize, uuid.wire().begin())) return std::nullopt;
  uint64_t bits = 0;
  for (size_t i = 0; i < 8; ++i) bits |= static_cast<uint64_t>(uuid.wire()[kFeatureBitsOffset + i]) << (8 * i);
  return bits;
}

}  // namespace adcsc::rpc
