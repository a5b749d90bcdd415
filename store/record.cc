#include "store/record.h"

#include <algorithm>
#include <compare>
#include <string>

#include "absl/strings/ascii.h"

namespace adcsc::store {
namespace {

using adcsc::store::v1::RECORD_STATUS_DENIED;
using adcsc::store::v1::RECORD_STATUS_FAILED;
using adcsc::store::v1::RECORD_STATUS_ISSUED;
using adcsc::store::v1::RECORD_STATUS_PENDING;
using adcsc::store::v1::RECORD_STATUS_REVOKED;
using adcsc::store::v1::RECORD_STATUS_SUBMITTED;
using adcsc::store::v1::RECORD_STATUS_UNSPECIFIED;

// The merge order: a total order over every field except created_ms (which merges by
// min instead) and the submit's facts csr_sha256, template_name and requester (each merges
// on its own, see SubmitFact). admin_hlc, rank, then (hlc, node_id) as documented; the remaining fields only
// break ties between versions that share rank, hlc and node_id — which a correct cluster
// never produces, but without them Merge would depend on argument order for such inputs
// and replicas could diverge.
std::strong_ordering CompareForMerge(const RequestRecord& a, const RequestRecord& b) {
  if (auto c = a.admin_hlc() <=> b.admin_hlc(); c != 0) return c;
  if (auto c = StatusRank(a.status()) <=> StatusRank(b.status()); c != 0) return c;
  if (auto c = a.hlc() <=> b.hlc(); c != 0) return c;
  if (auto c = a.node_id() <=> b.node_id(); c != 0) return c;
  // Same rank, different status (e.g. ISSUED vs DENIED): the enum value decides.
  if (auto c = static_cast<int>(a.status()) <=> static_cast<int>(b.status()); c != 0) return c;
  if (auto c = a.disposition() <=> b.disposition(); c != 0) return c;
  if (auto c = a.hresult() <=> b.hresult(); c != 0) return c;
  if (auto c = a.message() <=> b.message(); c != 0) return c;
  if (auto c = a.certificate_der() <=> b.certificate_der(); c != 0) return c;
  if (auto c = a.updated_ms() <=> b.updated_ms(); c != 0) return c;
  if (auto c = a.ca_config() <=> b.ca_config(); c != 0) return c;
  return a.request_id() <=> b.request_id();
}

// The earlier of two creation times, where 0 means "unknown" rather than 1970.
int64_t MinKnownCreated(int64_t a, int64_t b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

// What the submit knew (the CSR's hash, the template, the submitting identity) is fixed once
// known, but a later version may lack it: a retrieve recorded on a node that had not seen the
// submit yet. So each of these fields merges on its own, known over empty; two different
// known values (which a correct cluster never produces) resolve to the larger, so that Merge
// stays commutative, associative and idempotent.
const std::string& SubmitFact(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return std::max(a, b);
}

}  // namespace

int StatusRank(RecordStatus s) {
  switch (s) {
    case RECORD_STATUS_SUBMITTED:
      return 1;
    case RECORD_STATUS_PENDING:
      return 2;
    case RECORD_STATUS_ISSUED:
    case RECORD_STATUS_DENIED:
    case RECORD_STATUS_FAILED:
      return 3;
    case RECORD_STATUS_REVOKED:
      return 4;
    default:
      // UNSPECIFIED, and values from a newer schema this build does not know: lowest, so
      // they can never overwrite a status we understand.
      return 0;
  }
}

bool Supersedes(const RequestRecord& candidate, const RequestRecord& current) {
  return CompareForMerge(candidate, current) > 0;
}

bool IsSettled(const RequestRecord& record) {
  switch (record.status()) {
    case adcsc::store::v1::RECORD_STATUS_ISSUED:
      return !record.certificate_der().empty();
    case adcsc::store::v1::RECORD_STATUS_DENIED:
    case adcsc::store::v1::RECORD_STATUS_REVOKED:
      return true;
    default:
      return false;
  }
}

RequestRecord Merge(const RequestRecord& a, const RequestRecord& b) {
  RequestRecord merged = CompareForMerge(a, b) >= 0 ? a : b;
  merged.set_created_ms(MinKnownCreated(a.created_ms(), b.created_ms()));
  merged.set_csr_sha256(SubmitFact(a.csr_sha256(), b.csr_sha256()));
  merged.set_template_name(SubmitFact(a.template_name(), b.template_name()));
  merged.set_requester(SubmitFact(a.requester(), b.requester()));
  return merged;
}

std::string CaConfigKey(std::string_view dc, std::string_view ca) {
  // Host names are case-insensitive, so "CA01.Contoso.com" and "ca01.contoso.com" must
  // key the same records. The CA instance name is kept as given: it is what ADCS reports.
  std::string key = absl::AsciiStrToLower(absl::string_view(dc.data(), dc.size()));
  key.push_back('\\');
  key.append(ca);
  return key;
}

std::string_view StatusName(RecordStatus s) {
  switch (s) {
    case RECORD_STATUS_UNSPECIFIED:
      return "unspecified";
    case RECORD_STATUS_SUBMITTED:
      return "submitted";
    case RECORD_STATUS_PENDING:
      return "pending";
    case RECORD_STATUS_ISSUED:
      return "issued";
    case RECORD_STATUS_DENIED:
      return "denied";
    case RECORD_STATUS_FAILED:
      return "failed";
    case RECORD_STATUS_REVOKED:
      return "revoked";
    default:
      return "unknown";
  }
}

}  // namespace adcsc::store
