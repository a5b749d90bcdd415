// Byte-buffer vocabulary shared by the NTLM library: owned buffers, read-only views, and the
// 16-byte keys and digests NTLM is built from, plus little-endian helpers for wire formats.
// Thread-safety: plain types and pure functions; no shared state.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace adcsc::ntlm {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// NT hashes, NTOWFv2 results, session keys, HMAC-MD5 and MD5 digests are all 128 bits.
inline constexpr size_t kKeyBytes = 16;
using Key16 = std::array<uint8_t, kKeyBytes>;

inline void AppendLe16(Bytes& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value));
  out.push_back(static_cast<uint8_t>(value >> 8));
}

inline void AppendLe32(Bytes& out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

inline void AppendLe64(Bytes& out, uint64_t value) {
  for (int shift = 0; shift < 64; shift += 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

inline void Append(Bytes& out, ByteView data) { out.insert(out.end(), data.begin(), data.end()); }

// Callers guarantee `at + width <= bytes.size()`.
inline uint16_t LoadLe16(ByteView bytes, size_t at) { return static_cast<uint16_t>(bytes[at] | (bytes[at + 1] << 8)); }

inline uint32_t LoadLe32(ByteView bytes, size_t at) {
  return static_cast<uint32_t>(bytes[at]) | (static_cast<uint32_t>(bytes[at + 1]) << 8) |
         (static_cast<uint32_t>(bytes[at + 2]) << 16) | (static_cast<uint32_t>(bytes[at + 3]) << 24);
}

inline uint64_t LoadLe64(ByteView bytes, size_t at) {
  return static_cast<uint64_t>(LoadLe32(bytes, at)) | (static_cast<uint64_t>(LoadLe32(bytes, at + 4)) << 32);
}

inline void StoreLe32(std::span<uint8_t> bytes, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<uint8_t>(value >> (8 * i));
}

}  // namespace adcsc::ntlm
