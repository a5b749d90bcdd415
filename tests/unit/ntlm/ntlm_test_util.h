// Helpers shared by the NTLM unit tests: hex conversion, scripted randomness and a fixed
// clock so every handshake in a test is deterministic.
// Thread-safety: test-only helpers; each object is used from one thread.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "node/ntlm/bytes.h"
#include "node/ntlm/ntlm.h"

namespace adcsc::ntlm::testing {

inline Bytes FromHex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  int high = -1;
  for (char c : hex) {
    int value = nibble(c);
    if (value < 0) continue;  // Lets vectors be written with spaces.
    if (high < 0) {
      high = value;
    } else {
      out.push_back(static_cast<uint8_t>((high << 4) | value));
      high = -1;
    }
  }
  EXPECT_LT(high, 0) << "odd number of hex digits in test vector";
  return out;
}

inline std::string ToHex(ByteView bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0x0f]);
  }
  return out;
}

inline Bytes ToVector(ByteView bytes) { return Bytes(bytes.begin(), bytes.end()); }

inline Bytes Utf16(std::string_view ascii) {
  Bytes out;
  for (char c : ascii) {
    out.push_back(static_cast<uint8_t>(c));
    out.push_back(0);
  }
  return out;
}

inline Key16 KeyFromHex(std::string_view hex) {
  Bytes bytes = FromHex(hex);
  Key16 key{};
  EXPECT_EQ(bytes.size(), key.size());
  std::copy_n(bytes.begin(), std::min(bytes.size(), key.size()), key.begin());
  return key;
}

// Hands out pre-recorded byte strings in order; a request of the wrong size or past the end
// fails the test, so a change in how much randomness the code draws is noticed.
inline RandomSource ScriptedRandom(std::deque<Bytes> script) {
  auto remaining = std::make_shared<std::deque<Bytes>>(std::move(script));
  return [remaining](std::span<uint8_t> out) -> absl::Status {
    if (remaining->empty()) {
      ADD_FAILURE() << "randomness requested beyond the script";
      return absl::InternalError("scripted randomness exhausted");
    }
    Bytes next = std::move(remaining->front());
    remaining->pop_front();
    EXPECT_EQ(next.size(), out.size()) << "randomness requested with an unexpected size";
    std::fill(out.begin(), out.end(), 0);
    std::copy_n(next.begin(), std::min(next.size(), out.size()), out.begin());
    return absl::OkStatus();
  };
}

// Deterministic bytes that differ per call (for tests that need many handshakes).
inline RandomSource CountingRandom(uint8_t seed) {
  auto counter = std::make_shared<uint32_t>(seed);
  return [counter](std::span<uint8_t> out) -> absl::Status {
    for (uint8_t& b : out) {
      *counter = *counter * 1103515245u + 12345u;
      b = static_cast<uint8_t>(*counter >> 16);
    }
    return absl::OkStatus();
  };
}

inline FileTimeClock FixedClock(uint64_t filetime) {
  return [filetime] { return filetime; };
}

}  // namespace adcsc::ntlm::testing
