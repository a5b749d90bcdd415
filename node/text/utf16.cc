#include "node/text/utf16.h"

#include "absl/strings/str_cat.h"

namespace adcsc::text {
namespace {

constexpr char32_t kMaxCodePoint = 0x10FFFF;
constexpr char32_t kReplacementChar = 0xFFFD;
constexpr char16_t kHighSurrogateFirst = 0xD800;
constexpr char16_t kLowSurrogateFirst = 0xDC00;
constexpr char16_t kSurrogateLast = 0xDFFF;

bool IsHigh(char16_t u) { return u >= kHighSurrogateFirst && u < kLowSurrogateFirst; }
bool IsLow(char16_t u) { return u >= kLowSurrogateFirst && u <= kSurrogateLast; }

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// UTF-16 -> UTF-8; unpaired surrogates become U+FFFD when `lossy`, else an error naming the
// byte offset (2 bytes per unit, as the text sat in a message).
absl::StatusOr<std::string> ConvertUtf16(std::u16string_view in, bool lossy) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char16_t unit = in[i];
    char32_t cp = unit;
    if (IsHigh(unit) && i + 1 < in.size() && IsLow(in[i + 1])) {
      cp = 0x10000 + ((static_cast<char32_t>(unit - kHighSurrogateFirst) << 10) |
                      static_cast<char32_t>(in[i + 1] - kLowSurrogateFirst));
      ++i;
    } else if (IsHigh(unit) || IsLow(unit)) {
      if (!lossy) {
        return absl::InvalidArgumentError(
            absl::StrCat("unpaired ", IsHigh(unit) ? "high" : "low", " surrogate in UTF-16 text at offset ", 2 * i));
      }
      cp = kReplacementChar;
    }
    AppendUtf8(cp, &out);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::u16string> Utf8ToUtf16(std::string_view utf8) {
  std::u16string out;
  out.reserve(utf8.size());
  size_t i = 0;
  while (i < utf8.size()) {
    const auto lead = static_cast<uint8_t>(utf8[i]);
    char32_t cp = 0;
    size_t continuation = 0;
    char32_t minimum = 0;  // the smallest code point this length may encode (no overlong forms)
    if (lead < 0x80) {
      cp = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      cp = lead & 0x1F;
      continuation = 1;
      minimum = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      cp = lead & 0x0F;
      continuation = 2;
      minimum = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      cp = lead & 0x07;
      continuation = 3;
      minimum = 0x10000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 lead byte at offset ", i));
    }
    if (utf8.size() - i - 1 < continuation) {
      return absl::InvalidArgumentError(absl::StrCat("truncated UTF-8 sequence at offset ", i));
    }
    for (size_t k = 1; k <= continuation; ++k) {
      const auto next = static_cast<uint8_t>(utf8[i + k]);
      if ((next & 0xC0) != 0x80) {
        return absl::InvalidArgumentError(absl::StrCat("invalid UTF-8 continuation byte at offset ", i + k));
      }
      cp = (cp << 6) | (next & 0x3F);
    }
    if (continuation > 0 && cp < minimum) {
      return absl::InvalidArgumentError(absl::StrCat("overlong UTF-8 sequence at offset ", i));
    }
    if (cp >= kHighSurrogateFirst && cp <= kSurrogateLast) {
      return absl::InvalidArgumentError(absl::StrCat("UTF-8 encodes a surrogate at offset ", i));
    }
    if (cp > kMaxCodePoint) {
      return absl::InvalidArgumentError(absl::StrCat("UTF-8 code point beyond U+10FFFF at offset ", i));
    }
    if (cp >= 0x10000) {
      const char32_t v = cp - 0x10000;
      out.push_back(static_cast<char16_t>(kHighSurrogateFirst + (v >> 10)));
      out.push_back(static_cast<char16_t>(kLowSurrogateFirst + (v & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
    i += continuation + 1;
  }
  return out;
}

absl::StatusOr<std::string> Utf16ToUtf8(std::u16string_view utf16) { return ConvertUtf16(utf16, /*lossy=*/false); }

std::string Utf16ToUtf8Lossy(std::u16string_view utf16) { return *ConvertUtf16(utf16, /*lossy=*/true); }

std::vector<uint8_t> Utf16ToLeBytes(std::u16string_view utf16) {
  std::vector<uint8_t> out;
  out.reserve(utf16.size() * 2);
  for (char16_t c : utf16) {
    out.push_back(static_cast<uint8_t>(c));
    out.push_back(static_cast<uint8_t>(c >> 8));
  }
  return out;
}

absl::StatusOr<std::u16string> LeBytesToUtf16(std::span<const uint8_t> bytes) {
  if (bytes.size() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("UTF-16LE string has odd length ", bytes.size()));
  }
  std::u16string out;
  out.reserve(bytes.size() / 2);
  for (size_t i = 0; i < bytes.size(); i += 2) out.push_back(static_cast<char16_t>(bytes[i] | bytes[i + 1] << 8));
  return out;
}

absl::StatusOr<std::vector<uint8_t>> Utf8ToUtf16Le(std::string_view utf8) {
  auto wide = Utf8ToUtf16(utf8);
  if (!wide.ok()) return wide.status();
  return Utf16ToLeBytes(*wide);
}

absl::StatusOr<std::string> Utf16LeToUtf8(std::span<const uint8_t> utf16le) {
  auto wide = LeBytesToUtf16(utf16le);
  if (!wide.ok()) return wide.status();
  return Utf16ToUtf8(*wide);
}

}  // namespace adcsc::text
