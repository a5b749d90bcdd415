// Writes the seed corpus of tests/fuzz/ntlm_messages_fuzz.cc, and checks that the messages it
// contains work with the fuzz target's fixed parties. Writing is off by default; run by hand,
// from the repository root, with ADCSC_NTLM_CORPUS_DIR=tests/fuzz/corpus/ntlm_messages and
// build/tests/ntlm_test --gtest_also_run_disabled_tests --gtest_filter='FuzzCorpus*'.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "node/ntlm/messages.h"
#include "tests/unit/ntlm/impacket_vectors.h"
#include "tests/unit/ntlm/ntlm_fuzz_fixture.h"
#include "tests/unit/ntlm/ntlm_test_util.h"

namespace adcsc::ntlm {
namespace {

using testing::FromHex;
using testing::kSpecAuthenticate;
using testing::kSpecChallenge;

std::vector<std::pair<std::string, Bytes>> CorpusFiles() {
  auto server = fuzz::MakeServer();
  auto client = fuzz::MakeClient();
  Bytes negotiate = client->Negotiate();
  Bytes challenge = server->Challenge(negotiate).value();
  Bytes authenticate = client->Authenticate(challenge).value();
  return {
      {"negotiate_adcsc.bin", negotiate},
      {"negotiate_impacket.bin", FromHex(impacket::kImpacketNegotiate)},
      {"challenge_adcsc.bin", challenge},
      {"challenge_ms_nlmp_4_2_4_3.bin", FromHex(kSpecChallenge)},
      {"authenticate_adcsc_mic.bin", authenticate},
      {"authenticate_ms_nlmp_4_2_4_3.bin", FromHex(kSpecAuthenticate)},
      {"authenticate_impacket.bin", FromHex(impacket::kImpacketAuthenticate)},
  };
}

TEST(FuzzCorpusTest, SeedsGetThroughTheFuzzTargetsParties) {
  std::vector<std::pair<std::string, Bytes>> files = CorpusFiles();
  // The client's answer is accepted by a fresh fuzz server, as in the fuzz target.
  auto server = fuzz::MakeServer();
  auto client = fuzz::MakeClient();
  ASSERT_TRUE(server->Challenge(client->Negotiate()).ok());
  absl::StatusOr<AuthenticatedUser> user = server->Accept(files[4].second);
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->user, fuzz::kUser);
  // Every seed parses as what its name says.
  for (const auto& [name, bytes] : files) {
    absl::StatusOr<MessageType> type = PeekMessageType(bytes);
    ASSERT_TRUE(type.ok()) << name;
    absl::Status parsed = *type == MessageType::kNegotiate   ? ParseNegotiate(bytes).status()
                          : *type == MessageType::kChallenge ? ParseChallenge(bytes).status()
                                                             : ParseAuthenticate(bytes).status();
    EXPECT_TRUE(parsed.ok()) << name << ": " << parsed;
  }
}

TEST(FuzzCorpusTest, DISABLED_WriteSeedCorpus) {
  const char* directory = std::getenv("ADCSC_NTLM_CORPUS_DIR");
  ASSERT_NE(directory, nullptr) << "set ADCSC_NTLM_CORPUS_DIR to the corpus folder";
  for (const auto& [name, bytes] : CorpusFiles()) {
    std::ofstream out(std::string(directory) + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << name;
  }
}

}  // namespace
}  // namespace adcsc::ntlm
