// libFuzzer target for NTLMSSP parsing on untrusted bytes: the CHALLENGE parser as the client
// sees it, the NEGOTIATE and AUTHENTICATE parsers as the server sees them (through
// ServerContext with one fixed account), and Session unsealing of arbitrary PDUs.
// Seed corpus: tests/fuzz/corpus/ntlm_messages/ (written by fuzz_corpus_test.cc).
// Thread-safety: libFuzzer calls this from one thread; all state is per call.
#include <cstddef>
#include <cstdint>

#include "node/ntlm/messages.h"
#include "node/ntlm/ntlm.h"
#include "node/ntlm/session.h"
#include "tests/unit/ntlm/ntlm_fuzz_fixture.h"

namespace {

using adcsc::ntlm::Bytes;
using adcsc::ntlm::ByteView;

void FuzzParsers(ByteView input) {
  (void)adcsc::ntlm::PeekMessageType(input);
  (void)adcsc::ntlm::ParseNegotiate(input);
  (void)adcsc::ntlm::ParseChallenge(input);
  (void)adcsc::ntlm::ParseAuthenticate(input);
  (void)adcsc::ntlm::ParseAvPairs(input);
  (void)adcsc::ntlm::Utf16LeToUtf8(input);
}

// Client side: the bytes as the server's CHALLENGE.
void FuzzClient(ByteView input) {
  auto client = adcsc::ntlm::fuzz::MakeClient();
  client->Negotiate();
  if (client->Authenticate(input).ok()) {
    std::unique_ptr<adcsc::ntlm::Session> session = client->TakeSession();
    Bytes message = {1, 2, 3, 4};
    (void)session->SealMessage(message, 1, 2);
  }
}

// Server side: the bytes as the client's NEGOTIATE, then as its AUTHENTICATE after a valid
// NEGOTIATE (the fixed server challenge lets recorded AUTHENTICATE messages verify).
void FuzzServer(ByteView input) {
  {
    auto server = adcsc::ntlm::fuzz::MakeServer();
    (void)server->Challenge(input);
  }
  auto server = adcsc::ntlm::fuzz::MakeServer();
  auto client = adcsc::ntlm::fuzz::MakeClient();
  if (!server->Challenge(client->Negotiate()).ok()) return;
  if (server->Accept(input).ok()) {
    std::unique_ptr<adcsc::ntlm::Session> session = server->TakeSession();
    Bytes message = {1, 2, 3, 4};
    (void)session->SealMessage(message, 0, 4);
  }
}

// Unsealing: byte 0 and 1 pick the region, the last 16 bytes are the signature.
void FuzzUnseal(ByteView input) {
  constexpr size_t kControlBytes = 2;
  if (input.size() < kControlBytes + adcsc::ntlm::kSignatureBytes) return;
  static const adcsc::ntlm::Key16 kKey = {9, 8, 7, 6, 5, 4, 3, 2, 1};
  absl::StatusOr<std::unique_ptr<adcsc::ntlm::Session>> session =
      adcsc::ntlm::Session::Create(kKey, adcsc::ntlm::Role::kServer);
  if (!session.ok()) return;
  Bytes message(input.begin() + kControlBytes, input.end() - adcsc::ntlm::kSignatureBytes);
  ByteView signature = input.last(adcsc::ntlm::kSignatureBytes);
  // Offsets may point past the message on purpose: that must be refused, not read.
  (void)(*session)->UnsealMessage(message, input[0], input[1], signature);
  (void)(*session)->VerifyMessage(message, signature);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView input(data, size);
  FuzzParsers(input);
  FuzzClient(input);
  FuzzServer(input);
  FuzzUnseal(input);
  return 0;
}
