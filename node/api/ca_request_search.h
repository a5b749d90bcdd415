// Finds the CA's answer to a submit whose reply was lost (the node that sent it died), by
// reading request IDs with the ordinary retrieve call and comparing each issued
// certificate's public key with the CSR's. MS-ICPR offers no lookup by anything but request
// ID, and ADCS hands out IDs in order, so the request is among the IDs after the highest one
// the cluster knew when the submit started.
//
// The first Pass() finds the end of the CA's IDs (the first ID it reports as not existing,
// CERTSRV_E_PROPERTY_EMPTY) by doubling steps and bisection from `after_request_id`, then
// reads backwards from there, newest first; later passes read only the IDs added since. At
// most `limit` CA calls in all. What it cannot recognise: a request still pending (ADCS
// returns no certificate for it) and one submitted under an identity this node's cannot read.
// Not thread-safe: one search per waiting submit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <vector>

#include "absl/status/statusor.h"
#include "node/ca/ca_backend.h"

namespace adcsc::node {

class CaRequestSearch {
 public:
  // `known(id)`: the cluster already holds request `id` for another CSR, so it needs no CA
  // call. `backend` is borrowed.
  CaRequestSearch(adcsc::ca::CaBackend* backend, adcsc::ca::CaTarget target, adcsc::ca::CallerIdentity caller,
                  std::vector<uint8_t> csr_der, uint32_t after_request_id, int limit,
                  std::function<bool(uint32_t)> known);

  // The CA's answer for the CSR's request, or nullopt when this pass did not find it. A CA
  // failure other than "no such request" and "access denied" ends the search with its error.
  absl::StatusOr<std::optional<adcsc::ca::CaResponse>> Pass();

  int ca_reads() const { return ca_reads_; }
  bool exhausted() const { return ca_reads_ >= limit_; }

 private:
  enum class Seen { kMissing, kOther, kMatch };
  absl::StatusOr<Seen> Read(uint32_t id);

  adcsc::ca::CaBackend* backend_;
  const adcsc::ca::CaTarget target_;
  const adcsc::ca::CallerIdentity caller_;
  const std::vector<uint8_t> csr_der_;
  const uint32_t after_;
  const int limit_;
  std::function<bool(uint32_t)> known_;

  uint32_t end_ = 0;         // the first ID the CA reported missing; 0: not found yet
  std::set<uint32_t> read_;  // IDs already looked at
  int ca_reads_ = 0;
  std::optional<adcsc::ca::CaResponse> match_;
};

}  // namespace adcsc::node
