#include "store/store_rows.h"

namespace adcsc::store::rows {

const std::string& SelectRecordSql() {
  static const std::string* const kSql = new std::string(
      absl::StrCat("SELECT ", kRecordColumns, " FROM requests WHERE ca_config = ?1 AND request_id = ?2"));
  return *kSql;
}

const std::string& UpsertRecordSql() {
  static const std::string* const kSql =
      new std::string(absl::StrCat("INSERT INTO requests (", kRecordColumns,
                                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) "
                                   "ON CONFLICT (ca_config, request_id) DO UPDATE SET "
                                   "status = excluded.status, disposition = excluded.disposition, "
                                   "message = excluded.message, certificate_der = excluded.certificate_der, "
                                   "csr_sha256 = excluded.csr_sha256, template_name = excluded.template_name, "
                                   "requester = excluded.requester, node_id = excluded.node_id, "
                                   "created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, "
                                   "hlc = excluded.hlc, hresult = excluded.hresult, "
                                   "admin_hlc = excluded.admin_hlc"));
  return *kSql;
}

const std::string& SelectByDedupeKeySql() {
  static const std::string* const kSql =
      new std::string(absl::StrCat("SELECT ", kRecordColumns,
                                   " FROM requests WHERE ca_config = ?1 AND template_name = ?2 AND csr_sha256 = ?3 "
                                   "AND created_ms >= ?4 ORDER BY created_ms DESC, request_id DESC LIMIT 1"));
  return *kSql;
}

const std::string& MutationsSinceSql() {
  static const std::string* const kSql = new std::string(absl::StrCat(
      "SELECT m.sequence, m.record, r.", absl::StrReplaceAll(kRecordColumns, {{", ", ", r."}}),
      " FROM mutations m LEFT JOIN requests r ON r.ca_config = m.ca_config AND r.request_id = m.request_id "
      "WHERE m.origin = ?1 AND m.sequence > ?2 ORDER BY m.sequence LIMIT ?3"));
  return *kSql;
}

RequestRecord RowToRecord(const Statement& row, int first) {
  RequestRecord r;
  r.set_ca_config(row.ColumnText(first + 0));
  r.set_request_id(static_cast<uint32_t>(row.ColumnInt64(first + 1)));
  r.set_status(static_cast<RecordStatus>(row.ColumnInt64(first + 2)));
  r.set_disposition(static_cast<uint32_t>(row.ColumnInt64(first + 3)));
  r.set_message(row.ColumnText(first + 4));
  r.set_certificate_der(row.ColumnBlob(first + 5));
  r.set_csr_sha256(row.ColumnBlob(first + 6));
  r.set_template_name(row.ColumnText(first + 7));
  r.set_requester(row.ColumnText(first + 8));
  r.set_node_id(row.ColumnText(first + 9));
  r.set_created_ms(row.ColumnInt64(first + 10));
  r.set_updated_ms(row.ColumnInt64(first + 11));
  r.set_hlc(static_cast<uint64_t>(row.ColumnInt64(first + 12)));  // stored bit for bit
  r.set_hresult(static_cast<uint32_t>(row.ColumnInt64(first + 13)));
  r.set_admin_hlc(static_cast<uint64_t>(row.ColumnInt64(first + 14)));  // bit for bit
  return r;
}

absl::StatusOr<std::optional<RequestRecord>> ReadRecord(Connection& c, const std::string& ca_config,
                                                        uint32_t request_id) {
  absl::StatusOr<CachedStatement> st = c.PrepareCached(SelectRecordSql());
  if (!st.ok()) return st.status();
  (*st)->BindText(1, ca_config).BindInt64(2, request_id);
  absl::StatusOr<bool> row = (*st)->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::nullopt;
  return RowToRecord(**st);
}

absl::Status WriteRecord(Connection& c, const RequestRecord& r) {
  absl::StatusOr<CachedStatement> st = c.PrepareCached(UpsertRecordSql());
  if (!st.ok()) return st.status();
  (*st)
      ->BindText(1, r.ca_config())
      .BindInt64(2, r.request_id())
      .BindInt64(3, r.status())
      .BindInt64(4, r.disposition())
      .BindText(5, r.message())
      .BindBlob(6, r.certificate_der())
      .BindBlob(7, r.csr_sha256())
      .BindText(8, r.template_name())
      .BindText(9, r.requester())
      .BindText(10, r.node_id())
      .BindInt64(11, r.created_ms())
      .BindInt64(12, r.updated_ms())
      .BindInt64(13, static_cast<int64_t>(r.hlc()))
      .BindInt64(14, r.hresult())
      .BindInt64(15, static_cast<int64_t>(r.admin_hlc()));
  return (*st)->Run();
}

absl::StatusOr<uint64_t> AppendMutation(Connection& c, const std::string& origin, const RequestRecord& record) {
  uint64_t sequence = 0;
  {
    // Scoped so the read is reset before the writes below touch the same table.
    absl::StatusOr<CachedStatement> read = c.PrepareCached(kSelectLocalSequenceSql);
    if (!read.ok()) return read.status();
    (*read)->BindText(1, origin);
    absl::StatusOr<bool> row = (*read)->Step();
    if (!row.ok()) return row.status();
    sequence = (*row ? static_cast<uint64_t>((*read)->ColumnInt64(0)) : 0) + 1;
  }

  absl::StatusOr<CachedStatement> append = c.PrepareCached(kAppendMutationSql);
  if (!append.ok()) return append.status();
  (*append)
      ->BindText(1, origin)
      .BindInt64(2, static_cast<int64_t>(sequence))
      .BindInt64(3, static_cast<int64_t>(record.hlc()))
      .BindText(4, record.ca_config())
      .BindInt64(5, record.request_id());
  if (absl::Status s = (*append)->Run(); !s.ok()) return s;

  absl::StatusOr<CachedStatement> advance = c.PrepareCached(kAdvanceVersionVectorSql);
  if (!advance.ok()) return advance.status();
  (*advance)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(sequence));
  if (absl::Status s = (*advance)->Run(); !s.ok()) return s;
  return sequence;
}

absl::StatusOr<uint64_t> ReadVectorEntry(Connection& c, const std::string& origin) {
  absl::StatusOr<CachedStatement> read = c.PrepareCached(kSelectLocalSequenceSql);
  if (!read.ok()) return read.status();
  (*read)->BindText(1, origin);
  absl::StatusOr<bool> row = (*read)->Step();
  if (!row.ok()) return row.status();
  return *row ? static_cast<uint64_t>((*read)->ColumnInt64(0)) : 0;
}

absl::Status WriteVectorEntry(Connection& c, const std::string& origin, uint64_t sequence) {
  absl::StatusOr<CachedStatement> advance = c.PrepareCached(kAdvanceVersionVectorSql);
  if (!advance.ok()) return advance.status();
  (*advance)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(sequence));
  return (*advance)->Run();
}

absl::Status AdvanceContiguous(Connection& c, const std::string& origin, uint64_t from) {
  uint64_t next = from;
  {
    absl::StatusOr<CachedStatement> scan = c.PrepareCached(kLoggedAfterSql);
    if (!scan.ok()) return scan.status();
    (*scan)->BindText(1, origin).BindInt64(2, static_cast<int64_t>(from));
    while (true) {
      absl::StatusOr<bool> row = (*scan)->Step();
      if (!row.ok()) return row.status();
      if (!*row || static_cast<uint64_t>((*scan)->ColumnInt64(0)) != next + 1) break;
      ++next;
    }
  }
  return WriteVectorEntry(c, origin, next);
}

absl::StatusOr<std::optional<RequestRecord>> MergeIntoStore(Connection& c, const RequestRecord& incoming) {
  absl::StatusOr<std::optional<RequestRecord>> existing = ReadRecord(c, incoming.ca_config(), incoming.request_id());
  if (!existing.ok()) return existing.status();
  RequestRecord merged = existing->has_value() ? Merge(**existing, incoming) : incoming;
  if (existing->has_value() && merged.SerializeAsString() == (*existing)->SerializeAsString()) {
    return std::nullopt;
  }
  if (absl::Status s = WriteRecord(c, merged); !s.ok()) return s;
  return merged;
}

absl::Status ReadMutationsSince(Connection& c, const std::filesystem::path& path, const std::string& origin,
                                uint64_t after, size_t limit, std::vector<Mutation>& out) {
  constexpr uint64_t kMaxStoredSequence = std::numeric_limits<int64_t>::max();
  if (limit == 0 || after >= kMaxStoredSequence) return absl::OkStatus();
  absl::StatusOr<CachedStatement> st = c.PrepareCached(MutationsSinceSql());
  if (!st.ok()) return st.status();
  (*st)
      ->BindText(1, origin)
      .BindInt64(2, static_cast<int64_t>(after))
      .BindInt64(3, static_cast<int64_t>(std::min<uint64_t>(limit, kMaxStoredSequence)));
  while (true) {
    absl::StatusOr<bool> row = (*st)->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    Mutation& m = out.emplace_back();
    m.set_origin(origin);
    m.set_sequence(static_cast<uint64_t>((*st)->ColumnInt64(0)));
    const std::string copy = (*st)->ColumnBlob(1);
    if (copy.empty()) {  // logged by reference: the record as it stands
      *m.mutable_record() = RowToRecord(**st, 2);
      if (m.record().ca_config().empty()) {
        return absl::DataLossError(absl::StrCat("request store ", path.string(), ": mutation ", origin, "/",
                                                m.sequence(),
                                                " names a record that is not in the store; the file is damaged. "
                                                "Restore it from a backup or let the node resync from its peers"));
      }
    } else if (!m.mutable_record()->ParseFromString(copy)) {
      return absl::DataLossError(absl::StrCat("request store ", path.string(), ": mutation ", origin, "/", m.sequence(),
                                              " does not parse as a RequestRecord; the file is damaged. Restore it "
                                              "from a backup or let the node resync from its peers"));
    }
  }
  return absl::OkStatus();
}

}  // namespace adcsc::store::rows
