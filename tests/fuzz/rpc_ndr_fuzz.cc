// libFuzzer target for the NDR stub decoders (node/rpc/icpr_stub.h, epm_stub.h): runs the
// CertServerRequest request/response and ept_map request/response decoders over the input,
// and for every successful decode checks that encoding the result decodes to the same value.
// Also exercises the tower, attribute and disposition-message parsers. A crash or
// __builtin_trap is a finding. Seeds: tests/fuzz/corpus/rpc_ndr/.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "node/rpc/epm_stub.h"
#include "node/rpc/icpr_stub.h"

namespace {

using adcsc::rpc::Bytes;
using adcsc::rpc::ByteView;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void FuzzIcpr(ByteView input) {
  absl::StatusOr<adcsc::rpc::CertServerRequestIn> in = adcsc::rpc::DecodeCertServerRequestIn(input);
  if (in.ok()) {
    absl::StatusOr<Bytes> stub = adcsc::rpc::EncodeCertServerRequestIn(*in);
    Check(stub.ok());  // decoded authorities are valid UTF-8 by construction
    absl::StatusOr<adcsc::rpc::CertServerRequestIn> again = adcsc::rpc::DecodeCertServerRequestIn(*stub);
    Check(again.ok() && *again == *in);
    (void)adcsc::rpc::DecodeRequestAttributes(in->attributes);
  }
  absl::StatusOr<adcsc::rpc::CertServerRequestOut> out = adcsc::rpc::DecodeCertServerRequestOut(input);
  if (out.ok()) {
    absl::StatusOr<adcsc::rpc::CertServerRequestOut> again =
        adcsc::rpc::DecodeCertServerRequestOut(adcsc::rpc::EncodeCertServerRequestOut(*out));
    Check(again.ok() && *again == *out);
    (void)adcsc::rpc::DecodeDispositionMessage(out->disposition_message);
  }
}

void FuzzEpm(ByteView input) {
  absl::StatusOr<adcsc::rpc::EptMapRequest> request = adcsc::rpc::DecodeEptMapRequest(input);
  if (request.ok()) {
    absl::StatusOr<adcsc::rpc::EptMapRequest> again =
        adcsc::rpc::DecodeEptMapRequest(adcsc::rpc::EncodeEptMapRequest(*request));
    Check(again.ok() && *again == *request);
    if (request->map_tower.has_value()) (void)adcsc::rpc::ParseTcpTower(*request->map_tower);
  }
  absl::StatusOr<adcsc::rpc::EptMapResponse> response = adcsc::rpc::DecodeEptMapResponse(input);
  if (response.ok()) {
    absl::StatusOr<adcsc::rpc::EptMapResponse> again =
        adcsc::rpc::DecodeEptMapResponse(adcsc::rpc::EncodeEptMapResponse(*response));
    Check(again.ok() && *again == *response);
    for (const Bytes& tower : response->towers) {
      absl::StatusOr<adcsc::rpc::TcpTower> parsed = adcsc::rpc::ParseTcpTower(tower);
      if (parsed.ok()) {
        absl::StatusOr<adcsc::rpc::TcpTower> rebuilt = adcsc::rpc::ParseTcpTower(adcsc::rpc::BuildTcpTower(*parsed));
        Check(rebuilt.ok() && *rebuilt == *parsed);
      }
    }
  }
  // The input as raw tower octets, too.
  absl::StatusOr<std::vector<adcsc::rpc::TowerFloor>> floors = adcsc::rpc::DecodeTowerFloors(input);
  if (floors.ok()) {
    const Bytes again = adcsc::rpc::EncodeTowerFloors(*floors);
    Check(again.size() == input.size() && std::equal(again.begin(), again.end(), input.begin()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);
  FuzzIcpr(input);
  FuzzEpm(input);
  return 0;
}
