// libFuzzer target for the connection-oriented PDU layer (node/rpc/pdu.h): treats the input as
// a byte stream from a peer, frames it with NextPduSize, decodes every PDU type, locates auth
// verifiers, feeds request/response fragments to a Reassembler, and re-encodes what decoded.
// Also fragments the input as a stub and checks reassembly returns it. Crashes (or
// __builtin_trap on a broken invariant) are findings. Seeds: tests/fuzz/corpus/rpc_pdu/.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "node/rpc/pdu.h"

namespace {

using adcsc::rpc::AuthSpec;
using adcsc::rpc::Bytes;
using adcsc::rpc::ByteView;
using adcsc::rpc::CallFragmentHeader;
using adcsc::rpc::Pdu;
using adcsc::rpc::PduType;
using adcsc::rpc::Reassembler;

// Small bound so the fuzzer reaches the "too large" path quickly.
constexpr size_t kFuzzMaxStub = 64 * 1024;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void FuzzStream(ByteView stream) {
  Reassembler reassembler(kFuzzMaxStub);
  while (!stream.empty()) {
    absl::StatusOr<size_t> need = adcsc::rpc::NextPduSize(stream);
    if (!need.ok()) return;
    Check(*need >= adcsc::rpc::kCommonHeaderSize);
    if (*need > stream.size()) return;  // a socket reader would wait for more bytes
    const ByteView one = stream.first(*need);
    stream = stream.subspan(*need);

    absl::StatusOr<adcsc::rpc::AuthLayout> layout = adcsc::rpc::LocateAuth(one);
    if (layout.ok()) {
      Check(layout->seal_offset() + layout->seal_length() <= one.size());
      Check(layout->auth_value_offset + layout->auth_value_length == one.size());
      Check(layout->stub_offset + layout->stub_length + layout->pad_length == layout->trailer_offset);
    }

    absl::StatusOr<Pdu> pdu = adcsc::rpc::DecodePdu(one);
    if (!pdu.ok()) continue;
    Check(pdu->header.frag_length == one.size());
    if (pdu->header.type == PduType::kRequest || pdu->header.type == PduType::kResponse) {
      absl::StatusOr<bool> done = reassembler.Add(*pdu);
      if (done.ok() && *done) Check(reassembler.TakeStub().size() <= kFuzzMaxStub);
    }
    // What decoded must re-encode to something that decodes again (unless it grew past the
    // 16-bit frag_length, which re-padding can do).
    absl::StatusOr<Bytes> again = adcsc::rpc::EncodePdu(*pdu);
    if (again.ok()) {
      absl::StatusOr<Pdu> redecoded = adcsc::rpc::DecodePdu(*again);
      Check(redecoded.ok());
      Check(redecoded->header.type == pdu->header.type);
      Check(redecoded->body.index() == pdu->body.index());
    }
  }
}

void FuzzFragmentation(ByteView input) {
  if (input.size() < 3) return;
  // The first bytes choose the fragment size and whether a verifier is present.
  const size_t max_frag = 25 + (static_cast<size_t>(input[0]) << 3 | input[1] >> 5);
  const bool with_auth = (input[1] & 1) != 0;
  const bool response = (input[1] & 2) != 0;
  const ByteView stub = input.subspan(2);
  CallFragmentHeader header;
  header.type = response ? PduType::kResponse : PduType::kRequest;
  header.call_id = input[2];
  std::optional<AuthSpec> auth;
  if (with_auth) auth = AuthSpec{};
  absl::StatusOr<std::vector<adcsc::rpc::OutgoingPdu>> fragments =
      adcsc::rpc::FragmentStub(header, stub, max_frag, auth);
  if (!fragments.ok()) return;
  Reassembler reassembler;
  bool done = false;
  for (const adcsc::rpc::OutgoingPdu& f : *fragments) {
    Check(f.bytes.size() <= max_frag);
    absl::StatusOr<Pdu> pdu = adcsc::rpc::DecodePdu(f.bytes);
    Check(pdu.ok());
    absl::StatusOr<bool> added = reassembler.Add(*pdu);
    Check(added.ok());
    done = *added;
  }
  Check(done);
  const Bytes back = reassembler.TakeStub();
  Check(back.size() == stub.size() && std::equal(back.begin(), back.end(), stub.begin()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  FuzzStream(input);
  FuzzFragmentation(input);
  return 0;
}
