// A request record and the rules for merging two versions of it. Pure functions, no I/O;
// safe from any thread.
//
// Status lattice (a record only moves up):
//   SUBMITTED < PENDING < {ISSUED, DENIED, FAILED};  ISSUED < REVOKED
// Merge picks the version whose status ranks higher; between versions of equal rank it
// picks the higher (hlc, node_id). Versions that tie on all three (which a correct cluster
// never produces) are ordered by their remaining fields (status value, disposition,
// hresult, message, certificate, ...), so the choice never depends on argument order.
// Merge is commutative, associative and idempotent, so replicas converge whatever order
// updates arrive in.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "adcsc/store/v1/record.pb.h"

namespace adcsc::store {

using RecordStatus = adcsc::store::v1::RecordStatus;
using RequestRecord = adcsc::store::v1::RequestRecord;

// Rank of a status in the lattice: SUBMITTED 1, PENDING 2, ISSUED/DENIED/FAILED 3,
// REVOKED 4, UNSPECIFIED 0.
int StatusRank(RecordStatus s);

// True when `candidate` should replace `current` (i.e. Merge(current, candidate) ==
// candidate and they differ in the fields that matter: every field but created_ms).
bool Supersedes(const RequestRecord& candidate, const RequestRecord& current);

// The merged record: whichever of a, b wins by the rules above. created_ms of the result
// is the smaller of the two non-zero values.
RequestRecord Merge(const RequestRecord& a, const RequestRecord& b);

// "dc\ca" — the canonical CA config string used as the first half of a record key.
std::string CaConfigKey(std::string_view dc, std::string_view ca);

// Human-readable status name, e.g. "issued".
std::string_view StatusName(RecordStatus s);

}  // namespace adcsc::store
