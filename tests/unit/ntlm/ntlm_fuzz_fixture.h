// The fixed client and server the NTLM fuzz target drives, shared with the test that writes
// its seed corpus (fuzz_corpus_test.cc), so the corpus's AUTHENTICATE is one the fuzz
// target's server accepts and mutations start from a message that gets all the way through.
// Thread-safety: each call builds fresh contexts; the account hash is computed once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "absl/status/status.h"
#include "node/ntlm/ntlm.h"

namespace adcsc::ntlm::fuzz {

inline constexpr char kDomain[] = "CORP";
inline constexpr char kUser[] = "fuzzer";
inline constexpr char kPassword[] = "fuzz-password";
inline constexpr uint64_t kFileTime = 133'000'000'000'000'000;  // A FILETIME in 2022.

// The same bytes on every call: a server challenge and a client challenge / session key that
// never change, so recorded messages stay valid.
inline absl::Status PatternRandom(std::span<uint8_t> out) {
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(0x11 * (i + 1) + 3);
  return absl::OkStatus();
}

inline uint64_t FixedFileTime() { return kFileTime; }

inline const Key16& AccountHash() {
  static const Key16 hash = NtHash(kPassword).value();
  return hash;
}

inline std::unique_ptr<ServerContext> MakeServer() {
  return std::make_unique<ServerContext>(
      [](std::string_view domain, std::string_view user) -> std::optional<Key16> {
        if (domain == kDomain && user == kUser) return AccountHash();
        return std::nullopt;
      },
      ServerNames{"CORP", "CA01", "corp.example.com", "ca01.corp.example.com"}, PatternRandom, FixedFileTime);
}

inline std::unique_ptr<ClientContext> MakeClient() {
  return std::make_unique<ClientContext>(Credentials{kDomain, kUser, AccountHash(), "LINUX01"}, PatternRandom,
                                         FixedFileTime);
}

}  // namespace adcsc::ntlm::fuzz
