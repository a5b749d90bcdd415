// Byte encodings the connector needs: Base64 as Jamf sends it (armour and line breaks
// tolerated, anything else rejected) and as the ADCS connector returns it (64-character lines
// ended by "\r\n"), lowercase hex, SHA-256, and randomness from OpenSSL's CSPRNG.
// Thread-safety: all functions are pure or use OpenSSL's thread-safe RAND; call from any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adcsc::pki {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using Sha256Digest = std::array<uint8_t, 32>;

// Views text as bytes (no copy); the view lives as long as `text`'s storage.
inline ByteView AsBytes(std::string_view text) {
  return ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size());
}
// Views bytes as text (no copy).
inline std::string_view AsChars(ByteView bytes) {
  return std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Decodes standard Base64 (RFC 4648 alphabet, '=' padding required).
// Tolerated: ASCII whitespace anywhere (spaces, tabs, CR, LF) and whole PEM armour lines
// ("-----BEGIN ...-----" / "-----END ...-----"). Anything else is an InvalidArgument error
// naming the character, its offset, line and column: characters outside the alphabet, data
// after padding, a length that is not a multiple of 4, or non-zero padding bits.
// Empty input (after removing whitespace and armour) is an error too.
absl::StatusOr<Bytes> Base64Decode(std::string_view text);

// Base64 on one line, with padding, no line breaks.
std::string Base64Encode(ByteView bytes);

// Base64 in 64-character lines, each (including the last) ended by "\r\n", no armour: the
// format of the "x509" field of the ADCS connector's responses. Empty input gives "".
std::string Base64EncodeLines(ByteView bytes);

// Lowercase hex, two characters per byte, no separators.
std::string HexLower(ByteView bytes);

// SHA-256 of `bytes`.
Sha256Digest Sha256(ByteView bytes);
inline Sha256Digest Sha256(std::string_view text) { return Sha256(AsBytes(text)); }

// HexLower(Sha256(bytes)): 64 lowercase hex characters.
std::string Sha256Hex(ByteView bytes);

// `n` bytes from OpenSSL's CSPRNG (RAND_bytes). Fails only if the RNG cannot be seeded.
absl::StatusOr<Bytes> SecureRandomBytes(size_t n);

// A password of `length` characters drawn uniformly from [A-Za-z0-9] using RAND_bytes with
// rejection sampling (no modulo bias). Suitable for protecting a PKCS#12 file.
absl::StatusOr<std::string> RandomPassword(size_t length);

}  // namespace adcsc::pki
