// A request record and the rules for merging two versions of it. Pure functions, no I/O;
// safe from any thread.
//
// Status lattice (a record only moves up):
//   SUBMITTED < PENDING < {ISSUED, DENIED, FAILED};  ISSUED < REVOKED
// Above the status sits the stamp of the last administrator action (admin_hlc): each revoke,
// release from hold, approve or deny through the CA's admin interface records the CA's answer
// with admin_hlc = its own hlc, so it wins over every version recorded before the action on
// any node, and a later action wins over it. That is how a certificate released from hold
// moves from REVOKED back to ISSUED, and why a retrieve recorded late from an answer the CA
// gave before a revocation cannot undo it.
// Merge picks the version of the higher admin_hlc; then the one whose status ranks higher;
// between versions of equal rank it picks the higher (hlc, node_id). Versions that tie on all three (which a correct
// cluster never produces) are ordered by their remaining fields (status value, disposition, hresult, message,
// certificate, ...), so the choice never depends on argument order. Merge is commutative, associative and idempotent,
// so replicas converge whatever order updates arrive in.
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

// True when `candidate`'s version should replace `current`'s (Merge(current, candidate)
// takes candidate's content and they differ in it: every field but created_ms and the
// submit's facts below).
bool Supersedes(const RequestRecord& candidate, const RequestRecord& current);

// The merged record: whichever of a, b wins by the rules above. created_ms of the result
// is the smaller of the two non-zero values. csr_sha256, template_name and requester are
// facts of the submit, fixed once known but missing from a version recorded by a node that
// had not seen the submit: each is taken from whichever input knows it (the larger value if
// both do and differ, which a correct cluster never produces). They play no part in which
// version wins.
RequestRecord Merge(const RequestRecord& a, const RequestRecord& b);

// A record whose answer can no longer change at the CA except by revocation (issued with its
// certificate, denied, revoked): served without asking the CA or the peers.
bool IsSettled(const RequestRecord& record);

// "dc\ca" — the canonical CA config string used as the first half of a record key.
std::string CaConfigKey(std::string_view dc, std::string_view ca);

// Human-readable status name, e.g. "issued".
std::string_view StatusName(RecordStatus s);

}  // namespace adcsc::store
