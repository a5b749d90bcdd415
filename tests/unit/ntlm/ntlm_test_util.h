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

// MS-NLMP 4.2.4.3: the CHALLENGE_MESSAGE and the AUTHENTICATE_MESSAGE (Windows' layout:
// domain, user, workstation, LM, NT, key), as hex with spaces for readability.
inline constexpr char kSpecChallenge[] =
    "4e544c4d53535000 02000000 0c000c00 38000000 33828ae2 0123456789abcdef 0000000000000000"
    "24002400 44000000 060070170000000f 530065007200760065007200"
    "02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000";
inline constexpr char kSpecAuthenticate[] =
    "4e544c4d53535000 03000000 18001800 6c000000 54005400 84000000 0c000c00 48000000"
    "08000800 54000000 10001000 5c000000 10001000 d8000000 358288e2 0501280a0000000f"
    "44006f006d00610069006e00 5500730065007200 43004f004d0050005500540045005200"
    "86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa"
    "68cd0ab851e51c96aabc927bebef6a1c"
    "0101000000000000 0000000000000000 aaaaaaaaaaaaaaaa 00000000"
    "02000c0044006f006d00610069006e00 01000c00530065007200760065007200 00000000 00000000"
    "c5dad2544fc9799094ce1ce90bc9d03e";

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
