#include "node/api/ca_request_search.h"

#include <limits>

#include "node/ca/hresult.h"
#include "node/pki/csr.h"

namespace adcsc::node {

using adcsc::ca::CaResponse;
using adcsc::ca::Disposition;

CaRequestSearch::CaRequestSearch(adcsc::ca::CaBackend* backend, adcsc::ca::CaTarget target,
                                 adcsc::ca::CallerIdentity caller, std::vector<uint8_t> csr_der,
                                 uint32_t after_request_id, int limit, std::function<bool(uint32_t)> known)
    : backend_(backend),
      target_(std::move(target)),
      caller_(std::move(caller)),
      csr_der_(std::move(csr_der)),
      after_(after_request_id),
      limit_(limit),
      known_(std::move(known)) {}

absl::StatusOr<CaRequestSearch::Seen> CaRequestSearch::Read(uint32_t id) {
  read_.insert(id);
  if (known_ && known_(id)) return Seen::kOther;
  ++ca_reads_;
  adcsc::ca::RetrieveRequest request;
  request.target = target_;
  request.caller = caller_;
  request.request_id = id;
  absl::StatusOr<CaResponse> answer = backend_->Retrieve(request);
  if (!answer.ok()) {
    const std::optional<uint32_t> hr = adcsc::ca::HresultOf(answer.status());
    if (hr == adcsc::ca::hr::kPropertyEmpty) return Seen::kMissing;
    if (hr == adcsc::ca::hr::kAccessDenied) return Seen::kOther;  // someone else's request
    return answer.status();
  }
  const bool has_cert = answer->disposition == Disposition::kIssued ||
                        answer->disposition == Disposition::kIssuedOutOfBand ||
                        answer->disposition == Disposition::kRevoked;
  if (!has_cert || answer->cert_der.empty()) return Seen::kOther;
  absl::StatusOr<bool> same = adcsc::pki::CertifiesCsrKey(answer->cert_der, csr_der_);
  if (!same.ok() || !*same) return Seen::kOther;
  answer->request_id = id;
  match_ = std::move(*answer);
  return Seen::kMatch;
}

absl::StatusOr<std::optional<CaResponse>> CaRequestSearch::Pass() {
  constexpr uint32_t kMaxId = std::numeric_limits<uint32_t>::max();
  auto budget_left = [&] { return ca_reads_ < limit_; };
  if (end_ == 0) {
    // Find the end: double the step until an ID is missing, then bisect.
    uint64_t exists = after_;  // the largest ID known to exist (after_ itself, or 0)
    uint64_t missing = 0;
    for (uint64_t step = 1; budget_left(); step *= 2) {
      const uint64_t id = exists + step;
      if (id > kMaxId) break;
      absl::StatusOr<Seen> seen = Read(static_cast<uint32_t>(id));
      if (!seen.ok()) return seen.status();
      if (*seen == Seen::kMatch) return match_;
      if (*seen == Seen::kMissing) {
        missing = id;
        break;
      }
      exists = id;
    }
    if (missing == 0) return std::nullopt;  // out of budget before the end
    while (missing - exists > 1 && budget_left()) {
      const uint64_t mid = exists + (missing - exists) / 2;
      absl::StatusOr<Seen> seen = Read(static_cast<uint32_t>(mid));
      if (!seen.ok()) return seen.status();
      if (*seen == Seen::kMatch) return match_;
      (*seen == Seen::kMissing ? missing : exists) = mid;
    }
    if (missing - exists > 1) return std::nullopt;
    end_ = static_cast<uint32_t>(missing);
    // Newest first: the lost submit is most likely near the end.
    for (uint32_t id = end_ - 1; id > after_ && budget_left(); --id) {
      if (read_.count(id) != 0) continue;
      absl::StatusOr<Seen> seen = Read(id);
      if (!seen.ok()) return seen.status();
      if (*seen == Seen::kMatch) return match_;
    }
    return std::nullopt;
  }
  // Later passes: the IDs the CA added since.
  while (budget_left() && end_ < kMaxId) {
    absl::StatusOr<Seen> seen = Read(end_);
    if (!seen.ok()) return seen.status();
    if (*seen == Seen::kMatch) return match_;
    if (*seen == Seen::kMissing) break;
    ++end_;
  }
  return std::nullopt;
}

}  // namespace adcsc::node
