#include "node/pki/encoding.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::pki {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kPasswordAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr size_t kPasswordAlphabetSize = sizeof(kPasswordAlphabet) - 1;  // 62
constexpr size_t kBase64LineLength = 64;

// Value of a Base64 symbol, or -1.
int SymbolValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

bool IsBase64Space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; }

std::string DescribeChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7f) return absl::StrFormat("'%c' (0x%02x)", c, u);
  return absl::StrFormat("byte 0x%02x", u);
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && IsBase64Space(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsBase64Space(s.back())) s.remove_suffix(1);
  return s;
}

// A whole line of PEM armour: "-----BEGIN X-----" or "-----END X-----".
bool IsArmourLine(std::string_view trimmed) {
  constexpr std::string_view kDashes = "-----";
  if (trimmed.size() < 2 * kDashes.size()) return false;
  if (trimmed.substr(0, kDashes.size()) != kDashes) return false;
  if (trimmed.substr(trimmed.size() - kDashes.size()) != kDashes) return false;
  std::string_view inner = trimmed.substr(kDashes.size());
  return inner.substr(0, 5) == "BEGIN" || inner.substr(0, 3) == "END";
}

}  // namespace

absl::StatusOr<Bytes> Base64Decode(std::string_view text) {
  std::vector<uint8_t> symbols;  // 6-bit values, padding excluded
  symbols.reserve(text.size());
  size_t padding = 0;
  size_t line_number = 1;
  size_t line_start = 0;
  while (line_start <= text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text.size();
    std::string_view line = text.substr(line_start, line_end - line_start);
    if (!IsArmourLine(TrimSpace(line))) {
      for (size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (IsBase64Space(c)) continue;
        const size_t offset = line_start + i;
        auto where = [&] {
          return absl::StrFormat("%s at offset %d (line %d, column %d)", DescribeChar(c), offset, line_number, i + 1);
        };
        if (c == '=') {
          ++padding;
          if (padding > 2) {
            return absl::InvalidArgumentError(absl::StrCat("invalid base64: too much '=' padding: ", where()));
          }
          continue;
        }
        const int value = SymbolValue(c);
        if (value < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("invalid base64: character ", where(), " is not in the Base64 alphabet [A-Za-z0-9+/=]"));
        }
        if (padding > 0) {
          return absl::InvalidArgumentError(absl::StrCat("invalid base64: data after '=' padding: ", where()));
        }
        symbols.push_back(static_cast<uint8_t>(value));
      }
    }
    if (line_end == text.size()) break;
    line_start = line_end + 1;
    ++line_number;
  }
  const size_t total = symbols.size() + padding;
  if (total == 0) return absl::InvalidArgumentError("invalid base64: no data");
  if (total % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid base64: %d symbols is not a multiple of 4 (truncated, or '=' padding missing)", total));
  }
  // With padding, the last group holds 2 (==) or 3 (=) symbols whose spare bits must be 0.
  if (padding == 2 && (symbols.back() & 0x0f) != 0) {
    return absl::InvalidArgumentError("invalid base64: non-zero bits before '==' padding");
  }
  if (padding == 1 && (symbols.back() & 0x03) != 0) {
    return absl::InvalidArgumentError("invalid base64: non-zero bits before '=' padding");
  }
  Bytes out;
  out.reserve(symbols.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (uint8_t v : symbols) {
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string Base64Encode(ByteView bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t v = uint32_t{bytes[i]} << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const uint32_t v = (uint32_t{bytes[i]} << 16) | (uint32_t{bytes[i + 1]} << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string Base64EncodeLines(ByteView bytes) {
  const std::string flat = Base64Encode(bytes);
  std::string out;
  out.reserve(flat.size() + (flat.size() / kBase64LineLength + 1) * 2);
  for (size_t i = 0; i < flat.size(); i += kBase64LineLength) {
    out.append(flat, i, kBase64LineLength);
    out += "\r\n";
  }
  return out;
}

std::string HexLower(ByteView bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0x0f];
  }
  return out;
}

Sha256Digest Sha256(ByteView bytes) {
  Sha256Digest digest{};
  unsigned int len = 0;
  // EVP_Digest with the default provider's SHA-256 cannot fail for in-memory input.
  EVP_Digest(bytes.data(), bytes.size(), digest.data(), &len, EVP_sha256(), nullptr);
  return digest;
}

std::string Sha256Hex(ByteView bytes) { return HexLower(Sha256(bytes)); }

absl::StatusOr<Bytes> SecureRandomBytes(size_t n) {
  Bytes out(n);
  if (n == 0) return out;
  if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    return absl::InternalError(
        OpenSslFailure("RAND_bytes failed (the OpenSSL random generator could not be seeded; check /dev/urandom)"));
  }
  return out;
}

absl::StatusOr<std::string> RandomPassword(size_t length) {
  // Accept bytes below the largest multiple of 62 that fits in a byte (248), so every
  // character is equally likely.
  constexpr unsigned kLimit = 256 - (256 % kPasswordAlphabetSize);
  std::string out;
  out.reserve(length);
  while (out.size() < length) {
    absl::StatusOr<Bytes> random = SecureRandomBytes(length - out.size() + 8);
    if (!random.ok()) return random.status();
    for (uint8_t b : *random) {
      if (b >= kLimit) continue;
      out += kPasswordAlphabet[b % kPasswordAlphabetSize];
      if (out.size() == length) break;
    }
  }
  return out;
}

}  // namespace adcsc::pki
