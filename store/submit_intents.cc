// RequestStore, submit intents: the durable "a CA call for this CSR may have happened" rows
// written before each CA submit and removed with the answer (see SubmitIntentRow).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "store/request_store.h"
#include "store/store_rows.h"

namespace adcsc::store {
namespace {

using rows::CachedStatement;
using rows::Connection;

constexpr size_t kCsrSha256Bytes = 32;

constexpr char kIntentColumns[] =
    "ca_config, template_name, csr_sha256, after_request_id, requester, csr_der, created_ms, updated_ms, attempts";

// A repeated attempt keeps the first attempt's time and the lowest after_request_id: the CA
// request of any attempt is after it.
constexpr char kUpsertIntentSql[] =
    "INSERT INTO submit_intents (ca_config, template_name, csr_sha256, after_request_id, requester, csr_der, "
    "created_ms, updated_ms, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1) "
    "ON CONFLICT (ca_config, template_name, csr_sha256) DO UPDATE SET "
    "after_request_id = min(after_request_id, excluded.after_request_id), requester = excluded.requester, "
    "csr_der = excluded.csr_der, updated_ms = excluded.updated_ms, attempts = attempts + 1";

constexpr char kDeleteIntentSql[] =
    "DELETE FROM submit_intents WHERE ca_config = ?1 AND template_name = ?2 AND csr_sha256 = ?3";

absl::Status ValidateKey(const SubmitKey& key, const char* what) {
  if (key.ca_config.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("RequestStore::", what, ": ca_config is empty"));
  }
  if (key.csr_sha256.size() != kCsrSha256Bytes) {
    return absl::InvalidArgumentError(absl::StrCat("RequestStore::", what,
                                                   ": csr_sha256 must be the 32-byte binary digest, got ",
                                                   key.csr_sha256.size(), " bytes"));
  }
  return absl::OkStatus();
}

SubmitIntentRow RowToIntent(const sqlite::Statement& row) {
  SubmitIntentRow intent;
  intent.key.ca_config = row.ColumnText(0);
  intent.key.template_name = row.ColumnText(1);
  intent.key.csr_sha256 = row.ColumnBlob(2);
  intent.after_request_id = static_cast<uint32_t>(row.ColumnInt64(3));
  intent.requester = row.ColumnText(4);
  intent.csr_der = row.ColumnBlob(5);
  intent.created_ms = row.ColumnInt64(6);
  intent.updated_ms = row.ColumnInt64(7);
  intent.attempts = static_cast<int>(row.ColumnInt64(8));
  return intent;
}

}  // namespace

namespace rows {

absl::Status DeleteSubmitIntent(Connection& c, const SubmitKey& key) {
  absl::StatusOr<CachedStatement> st = c.PrepareCached(kDeleteIntentSql);
  if (!st.ok()) return st.status();
  (*st)->BindText(1, key.ca_config).BindText(2, key.template_name).BindBlob(3, key.csr_sha256);
  return (*st)->Run();
}

}  // namespace rows

absl::Status RequestStore::RecordSubmitIntent(const SubmitIntentRow& intent) {
  if (absl::Status s = ValidateKey(intent.key, "RecordSubmitIntent"); !s.ok()) return s;
  if (intent.csr_der.empty()) {
    return absl::InvalidArgumentError("RequestStore::RecordSubmitIntent: the CSR is empty");
  }
  const int64_t now_ms = impl_->clock().NowUnixMillis();
  absl::Status written = impl_->Write([&](Connection& c) -> absl::Status {
    absl::StatusOr<CachedStatement> st = c.PrepareCached(kUpsertIntentSql);
    if (!st.ok()) return st.status();
    (*st)
        ->BindText(1, intent.key.ca_config)
        .BindText(2, intent.key.template_name)
        .BindBlob(3, intent.key.csr_sha256)
        .BindInt64(4, intent.after_request_id)
        .BindText(5, intent.requester)
        .BindBlob(6, intent.csr_der)
        .BindInt64(7, now_ms);
    return (*st)->Run();
  });
  if (written.ok()) return written;
  return absl::Status(written.code(), absl::StrCat("request store ", impl_->options().path.string(),
                                                   ": cannot record the submit intent: ", written.message()));
}

absl::StatusOr<std::optional<SubmitIntentRow>> RequestStore::FindSubmitIntent(const SubmitKey& key) const {
  if (absl::Status s = ValidateKey(key, "FindSubmitIntent"); !s.ok()) return s;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  static const std::string sql = absl::StrCat("SELECT ", kIntentColumns,
                                              " FROM submit_intents WHERE ca_config = ?1 AND "
                                              "template_name = ?2 AND csr_sha256 = ?3");
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(sql);
  if (!st.ok()) return st.status();
  (*st)->BindText(1, key.ca_config).BindText(2, key.template_name).BindBlob(3, key.csr_sha256);
  absl::StatusOr<bool> row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return RowToIntent(**st);
}

absl::StatusOr<std::vector<SubmitIntentRow>> RequestStore::OpenSubmitIntents(size_t limit) const {
  std::vector<SubmitIntentRow> out;
  if (limit == 0) return out;
  absl::StatusOr<sqlite::ReaderPool::Lease> reader = impl_->Reader();
  if (!reader.ok()) return reader.status();
  static const std::string sql =
      absl::StrCat("SELECT ", kIntentColumns, " FROM submit_intents ORDER BY created_ms LIMIT ?1");
  absl::StatusOr<CachedStatement> st = (*reader)->PrepareCached(sql);
  if (!st.ok()) return st.status();
  (*st)->BindInt64(1, static_cast<int64_t>(std::min<size_t>(limit, std::numeric_limits<int64_t>::max())));
  for (;;) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.push_back(RowToIntent(**st));
  }
  return out;
}

absl::Status RequestStore::DropSubmitIntent(const SubmitKey& key) {
  if (absl::Status s = ValidateKey(key, "DropSubmitIntent"); !s.ok()) return s;
  return impl_->Write([&](Connection& c) { return rows::DeleteSubmitIntent(c, key); });
}

}  // namespace adcsc::store
