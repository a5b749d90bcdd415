// RPC UUIDs in their DCE wire layout, presentation-syntax identifiers, and the syntaxes adcsc
// binds to (NDR20, NDR64, bind-time feature negotiation, MS-ICPR, the endpoint mapper).
// Thread-safety: plain value types and constexpr constants; safe to share once constructed.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace adcsc::rpc {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// Debian's abseil has its own absl::string_view, which StrCat needs; this bridges to it.
inline absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// A UUID stored exactly as it travels in DCE/RPC (and in NDR): the first three fields
// (time_low, time_mid, time_hi_and_version) little-endian, the last eight bytes as written.
// The text form "8a885d04-1ceb-11c9-9fe8-08002b104860" reads the first three fields as
// big-endian numbers, so Parse/ToString swap those bytes.
class Uuid {
 public:
  static constexpr size_t kWireSize = 16;
  static constexpr size_t kTextSize = 36;  // 8-4-4-4-12 hex digits with four dashes

  constexpr Uuid() = default;  // the nil UUID
  constexpr explicit Uuid(const std::array<uint8_t, kWireSize>& wire) : wire_(wire) {}

  // Wire bytes; `bytes` must hold at least 16 bytes (callers check lengths first).
  static Uuid FromWire(ByteView bytes);

  // Accepts the 36-character form, either case, optionally wrapped in braces.
  static absl::StatusOr<Uuid> Parse(std::string_view text);

  // Compile-time parse for constants; an invalid literal fails to compile.
  static consteval Uuid Literal(const char (&text)[kTextSize + 1]) {
    std::array<uint8_t, kWireSize> text_order{};  // bytes in the order the text shows them
    size_t pos = 0;
    for (size_t i = 0; i < kWireSize; ++i) {
      if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
        if (text[pos] != '-') BadLiteral();
        ++pos;
      }
      text_order[i] = static_cast<uint8_t>(HexValue(text[pos]) << 4 | HexValue(text[pos + 1]));
      pos += 2;
    }
    return Uuid(TextOrderToWire(text_order));
  }

  // Lowercase 8-4-4-4-12 form.
  std::string ToString() const;

  const std::array<uint8_t, kWireSize>& wire() const { return wire_; }
  constexpr bool IsNil() const {
    for (uint8_t b : wire_) {
      if (b != 0) return false;
    }
    return true;
  }

  friend constexpr bool operator==(const Uuid&, const Uuid&) = default;

 private:
  // Swaps the first three fields between text (big-endian) order and wire (little-endian) order;
  // the swap is its own inverse.
  static constexpr std::array<uint8_t, kWireSize> TextOrderToWire(const std::array<uint8_t, kWireSize>& in) {
    std::array<uint8_t, kWireSize> out = in;
    out[0] = in[3];
    out[1] = in[2];
    out[2] = in[1];
    out[3] = in[0];
    out[4] = in[5];
    out[5] = in[4];
    out[6] = in[7];
    out[7] = in[6];
    return out;
  }
  static constexpr int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    BadLiteral();
    return 0;
  }
  // Not constexpr: reaching it during constant evaluation makes the literal ill-formed.
  static void BadLiteral() {}

  std::array<uint8_t, kWireSize> wire_{};
};

// p_syntax_id_t: an interface or transfer syntax and its version. On the wire: the UUID, then
// a 32-bit version whose low 16 bits are the major and high 16 bits the minor version (so,
// little-endian, major u16 then minor u16). 20 bytes.
struct SyntaxId {
  static constexpr size_t kWireSize = Uuid::kWireSize + 4;

  Uuid uuid;
  uint16_t major = 0;
  uint16_t minor = 0;

  // "8a885d04-1ceb-11c9-9fe8-08002b104860 v2.0"
  std::string ToString() const;
  friend constexpr bool operator==(const SyntaxId&, const SyntaxId&) = default;
};

// NDR 2.0 transfer syntax (the only one adcsc marshals).
inline constexpr SyntaxId kNdr20Syntax{Uuid::Literal("8a885d04-1ceb-11c9-9fe8-08002b104860"), 2, 0};
// NDR64; Windows clients offer it in a second context. adcsc never accepts it.
inline constexpr SyntaxId kNdr64Syntax{Uuid::Literal("71710533-beba-4937-8319-b5dbef9ccc36"), 1, 0};
// MS-ICPR ICertPassage.
inline constexpr SyntaxId kIcprSyntax{Uuid::Literal("91ae6020-9e3c-11cf-8d7c-00aa00c091be"), 0, 0};
// DCE endpoint mapper (ept), served on TCP port 135.
inline constexpr SyntaxId kEpmSyntax{Uuid::Literal("e1af8308-5d1f-11c9-91a4-08002b14a0fa"), 3, 0};

// Bind-time feature negotiation (MS-RPCE 2.2.2.14): a pseudo transfer syntax whose UUID is
// 6cb71c2c-9812-4540-XXXX-XXXXXXXXXXXX, the last 8 wire bytes a little-endian bitmask.
namespace bind_feature {
inline constexpr uint16_t kSecurityContextMultiplexing = 0x0001;
inline constexpr uint16_t kKeepConnectionOnOrphan = 0x0002;
}  // namespace bind_feature
// The syntax Windows clients send: both features requested (…-0300-000000000000 v1.0).
inline constexpr SyntaxId kBindTimeFeatureSyntax{Uuid::Literal("6cb71c2c-9812-4540-0300-000000000000"), 1, 0};
// A negotiation syntax asking for `features` (bind_feature bits).
SyntaxId BindTimeFeatureSyntax(uint16_t features);
// The feature bitmask when `uuid` is a bind-time feature negotiation UUID; nullopt otherwise.
std::optional<uint64_t> BindTimeFeatureBits(const Uuid& uuid);

}  // namespace adcsc::rpc
