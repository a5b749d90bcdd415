// UTF-8 <-> UTF-16 conversions for the Windows protocols adcsc speaks (NTLMSSP strings, NDR
// wide strings, ADCS attribute and disposition texts), strict by default: malformed UTF-8
// (overlong forms, surrogates, > U+10FFFF) and unpaired surrogates are errors naming where.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace adcsc::text {

absl::StatusOr<std::u16string> Utf8ToUtf16(std::string_view utf8);
absl::StatusOr<std::string> Utf16ToUtf8(std::u16string_view utf16);
// Unpaired surrogates become U+FFFD (for text a peer wrote that we only display).
std::string Utf16ToUtf8Lossy(std::u16string_view utf16);

// Code units as little-endian bytes and back; an odd byte count is an error.
std::vector<uint8_t> Utf16ToLeBytes(std::u16string_view utf16);
absl::StatusOr<std::u16string> LeBytesToUtf16(std::span<const uint8_t> bytes);

// UTF-8 straight to UTF-16LE bytes and back, as NTLMSSP carries strings.
absl::StatusOr<std::vector<uint8_t>> Utf8ToUtf16Le(std::string_view utf8);
absl::StatusOr<std::string> Utf16LeToUtf8(std::span<const uint8_t> utf16le);

}  // namespace adcsc::text
