// RequestStore, the mutation log: what this node holds from each origin (the version vector),
// the mutations a peer misses, and applying a peer's mutations (ApplyRemote).
#include <algorithm>
#include <limits>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/request_store.h"
#include "store/store_rows.h"

namespace adcsc::store {

using rows::AdvanceContiguous;
using rows::CachedStatement;
using rows::Connection;
using rows::kAppendMutationSql;
using rows::kLoggedOriginsSql;
using rows::kMutationHeldSql;
using rows::kVersionVectorSql;
using rows::MergeIntoStore;
using rows::Mutation;
using rows::ReadMutationsSince;
using rows::ReadVectorEntry;

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsSince(const std::string& origin, uint64_t after,
                                                                   size_t limit) const {
  std::vector<Mutation> mutations;
  if (limit == 0) return mutations;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  if (absl::Status s = ReadMutationsSince(**reader, impl_->options().path, origin, after, limit, mutations); !s.ok()) {
    return s;
  }
  return mutations;
}

absl::StatusOr<RemoteApplyResult> RequestStore::ApplyRemote(const std::vector<Mutation>& mutations) {
  for (const Mutation& m : mutations) {
    if (m.origin().empty() || m.sequence() == 0 || m.record().ca_config().empty() || m.record().request_id() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("RequestStore::ApplyRemote: mutation '", m.origin(), "'/", m.sequence(), " for '",
                       m.record().ca_config(), "' #", m.record().request_id(),
                       " lacks an origin, a sequence or a record key; the peer that sent it is faulty"));
    }
  }
  Impl& impl = *impl_;
  const std::string& self = impl.options().node_id;
  RemoteApplyResult result;
  absl::Status written = impl.Write([&](Connection& c) -> absl::Status {
    // Reset per attempt: the writer may run this function once only, but the result must
    // describe exactly what this transaction did.
    result.is_new.assign(mutations.size(), false);
    std::map<std::string, uint64_t> touched;  // origin -> vector entry before this batch
    for (size_t i = 0; i < mutations.size(); ++i) {
      const Mutation& m = mutations[i];
      if (m.origin() == self) continue;  // we are the authority on our own log
      auto [it, inserted] = touched.try_emplace(m.origin(), 0);
      if (inserted) {
        absl::StatusOr<uint64_t> entry = ReadVectorEntry(c, m.origin());
        if (!entry.ok()) return entry.status();
        it->second = *entry;
      }
      if (m.sequence() <= it->second) continue;
      {
        absl::StatusOr<CachedStatement> held = c.PrepareCached(kMutationHeldSql);
        if (!held.ok()) return held.status();
        (*held)->BindText(1, m.origin()).BindInt64(2, static_cast<int64_t>(m.sequence()));
        absl::StatusOr<bool> row = (*held)->Step();
        if (!row.ok()) return row.status();
        if (*row) continue;
      }
      absl::StatusOr<CachedStatement> append = c.PrepareCached(kAppendMutationSql);
      if (!append.ok()) return append.status();
      (*append)
          ->BindText(1, m.origin())
          .BindInt64(2, static_cast<int64_t>(m.sequence()))
          .BindInt64(3, static_cast<int64_t>(m.record().hlc()))
          .BindText(4, m.record().ca_config())
          .BindInt64(5, m.record().request_id());
      if (absl::Status s = (*append)->Run(); !s.ok()) return s;
      if (absl::Status s = MergeIntoStore(c, m.record()).status(); !s.ok()) return s;
      result.is_new[i] = true;
    }
    for (const auto& [origin, before] : touched) {
      if (absl::Status s = AdvanceContiguous(c, origin, before); !s.ok()) return s;
    }
    return absl::OkStatus();
  });
  if (!written.ok()) return written;
  // Later local writes must order after what peers stamped, as after a restart.
  for (const Mutation& m : mutations) impl.hlc().Observe(m.record().hlc());
  absl::StatusOr<VersionVector> vv = GetVersionVector();
  if (!vv.ok()) return vv.status();
  result.version_vector = *std::move(vv);
  return result;
}

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsMissing(const VersionVector& theirs, size_t limit) const {
  return MutationsMissing(theirs, HeldSequences{}, limit);
}

absl::StatusOr<HeldSequences> RequestStore::HeldBeyondVector(size_t max_per_origin) const {
  HeldSequences held;
  if (max_per_origin == 0) return held;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(
      "SELECT m.origin, m.sequence FROM mutations m LEFT JOIN version_vector v ON v.origin = m.origin "
      "WHERE m.sequence > IFNULL(v.sequence, 0) ORDER BY m.origin, m.sequence");
  if (!st.ok()) return st.status();
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    std::vector<uint64_t>& seqs = held[(*st)->ColumnText(0)];
    if (seqs.size() < max_per_origin) seqs.push_back(static_cast<uint64_t>((*st)->ColumnInt64(1)));
  }
  return held;
}

absl::StatusOr<std::vector<Mutation>> RequestStore::MutationsMissing(const VersionVector& theirs,
                                                                     const HeldSequences& also_held,
                                                                     size_t limit) const {
  std::vector<Mutation> mutations;
  if (limit == 0) return mutations;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  std::vector<std::string> origins;
  {
    absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(kLoggedOriginsSql);
    if (!st.ok()) return st.status();
    while (true) {
      absl::StatusOr<bool> row = (*st)->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      origins.push_back((*st)->ColumnText(0));
    }
  }
  for (const std::string& origin : origins) {
    if (mutations.size() >= limit) break;
    auto it = theirs.find(origin);
    const uint64_t after = it == theirs.end() ? 0 : it->second;
    auto held_it = also_held.find(origin);
    static const std::vector<uint64_t> kNone;
    const std::vector<uint64_t>& held = held_it == also_held.end() ? kNone : held_it->second;
    // Read enough rows that skipping every held one still leaves the room we have.
    const size_t first_new = mutations.size();
    if (absl::Status s = ReadMutationsSince(**reader, impl_->options().path, origin, after,
                                            limit - mutations.size() + held.size(), mutations);
        !s.ok()) {
      return s;
    }
    auto skip = [&held](const Mutation& m) { return std::binary_search(held.begin(), held.end(), m.sequence()); };
    mutations.erase(std::remove_if(mutations.begin() + static_cast<std::ptrdiff_t>(first_new), mutations.end(), skip),
                    mutations.end());
    if (mutations.size() > limit) mutations.resize(limit);
  }
  return mutations;
}

absl::StatusOr<VersionVector> RequestStore::GetVersionVector() const {
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(kVersionVectorSql);
  if (!st.ok()) return st.status();
  VersionVector vv;
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    vv[(*st)->ColumnText(0)] = static_cast<uint64_t>((*st)->ColumnInt64(1));
  }
  return vv;
}

}  // namespace adcsc::store
