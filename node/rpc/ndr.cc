#include "node/rpc/ndr.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace adcsc::rpc {
namespace {

constexpr size_t kU16Size = 2;
constexpr size_t kU32Size = 4;
constexpr size_t kU64Size = 8;
constexpr size_t kUuidAlignment = 4;  // a GUID's largest member is a 32-bit field
constexpr size_t kPointerSize = 4;    // referent IDs are 32-bit in NDR20

size_t PaddingFor(size_t offset, size_t alignment) { return (alignment - offset % alignment) % alignment; }

absl::Status NdrError(std::string_view field, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("NDR ", AbslView(field), ": ", AbslView(problem)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// NdrWriter

NdrWriter::NdrWriter(Options options) : options_(options), next_referent_(options.first_referent_id) {
  // A zero first ID would be read back as a null pointer.
  if (next_referent_ == 0) next_referent_ = 1;
  if (options_.referent_id_step == 0) options_.referent_id_step = 1;
}

void NdrWriter::Align(size_t alignment) { out_.resize(out_.size() + PaddingFor(out_.size(), alignment), 0); }

void NdrWriter::WriteU8(uint8_t v) { out_.push_back(v); }

void NdrWriter::WriteU16(uint16_t v) {
  Align(kU16Size);
  out_.push_back(static_cast<uint8_t>(v));
  out_.push_back(static_cast<uint8_t>(v >> 8));
}

void NdrWriter::WriteU32(uint32_t v) {
  Align(kU32Size);
  for (size_t i = 0; i < kU32Size; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void NdrWriter::WriteU64(uint64_t v) {
  Align(kU64Size);
  for (size_t i = 0; i < kU64Size; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void NdrWriter::WriteRaw(ByteView bytes) { out_.insert(out_.end(), bytes.begin(), bytes.end()); }

void NdrWriter::WriteUuid(const Uuid& uuid) {
  Align(kUuidAlignment);
  WriteRaw(uuid.wire());
}

uint32_t NdrWriter::WriteReferent(bool present) {
  uint32_t id = 0;
  if (present) {
    id = next_referent_;
    next_referent_ += options_.referent_id_step;
    if (next_referent_ == 0) next_referent_ = options_.referent_id_step;  // skip 0 on wrap
  }
  WriteU32(id);
  return id;
}

void NdrWriter::WriteUniquePointer(bool present, std::function<void(NdrWriter&)> pointee) {
  WriteReferent(present);
  if (present) Defer(std::move(pointee));
}

void NdrWriter::WriteConformantBytes(ByteView data) {
  WriteU32(static_cast<uint32_t>(data.size()));
  WriteRaw(data);
}

void NdrWriter::WriteConformantVaryingBytes(ByteView data, uint32_t max_count) {
  WriteU32(max_count);
  WriteU32(0);  // offset
  WriteU32(static_cast<uint32_t>(data.size()));
  WriteRaw(data);
}

void NdrWriter::WriteWideString(std::u16string_view text) {
  const auto units = static_cast<uint32_t>(text.size() + 1);  // + terminating NUL
  WriteU32(units);
  WriteU32(0);
  WriteU32(units);
  for (char16_t c : text) {
    out_.push_back(static_cast<uint8_t>(c));
    out_.push_back(static_cast<uint8_t>(c >> 8));
  }
  out_.push_back(0);
  out_.push_back(0);
}

void NdrWriter::Defer(std::function<void(NdrWriter&)> pointee) { deferred_.push_back(std::move(pointee)); }

void NdrWriter::FlushDeferred() {
  // Take the queue so pointees queued while writing one pointee land after it, before the
  // next sibling: the depth-first order NDR engines use.
  std::vector<std::function<void(NdrWriter&)>> pending = std::move(deferred_);
  deferred_.clear();
  for (auto& pointee : pending) {
    pointee(*this);
    FlushDeferred();
  }
}

Bytes NdrWriter::Finish() {
  FlushDeferred();
  return std::move(out_);
}

// ---------------------------------------------------------------------------------------------
// NdrReader

absl::Status NdrReader::Need(std::string_view field, size_t n) const {
  if (n > remaining()) {
    return NdrError(field,
                    absl::StrCat("needs ", n, " bytes at stub offset ", pos_, " but only ", remaining(), " remain"));
  }
  return absl::OkStatus();
}

absl::Status NdrReader::Align(size_t alignment, std::string_view field) {
  const size_t pad = PaddingFor(pos_, alignment);
  if (absl::Status s = Need(field, pad); !s.ok()) return s;
  pos_ += pad;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadU8(std::string_view field, uint8_t* out) {
  if (absl::Status s = Need(field, 1); !s.ok()) return s;
  *out = in_[pos_++];
  return absl::OkStatus();
}

absl::Status NdrReader::ReadU16(std::string_view field, uint16_t* out) {
  if (absl::Status s = Align(kU16Size, field); !s.ok()) return s;
  if (absl::Status s = Need(field, kU16Size); !s.ok()) return s;
  *out = static_cast<uint16_t>(in_[pos_] | in_[pos_ + 1] << 8);
  pos_ += kU16Size;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadU32(std::string_view field, uint32_t* out) {
  if (absl::Status s = Align(kU32Size, field); !s.ok()) return s;
  if (absl::Status s = Need(field, kU32Size); !s.ok()) return s;
  uint32_t v = 0;
  for (size_t i = 0; i < kU32Size; ++i) v |= static_cast<uint32_t>(in_[pos_ + i]) << (8 * i);
  *out = v;
  pos_ += kU32Size;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadU64(std::string_view field, uint64_t* out) {
  if (absl::Status s = Align(kU64Size, field); !s.ok()) return s;
  if (absl::Status s = Need(field, kU64Size); !s.ok()) return s;
  uint64_t v = 0;
  for (size_t i = 0; i < kU64Size; ++i) v |= static_cast<uint64_t>(in_[pos_ + i]) << (8 * i);
  *out = v;
  pos_ += kU64Size;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadRaw(std::string_view field, size_t n, ByteView* out) {
  if (absl::Status s = Need(field, n); !s.ok()) return s;
  *out = in_.subspan(pos_, n);
  pos_ += n;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadUuid(std::string_view field, Uuid* out) {
  if (absl::Status s = Align(kUuidAlignment, field); !s.ok()) return s;
  ByteView raw;
  if (absl::Status s = ReadRaw(field, Uuid::kWireSize, &raw); !s.ok()) return s;
  *out = Uuid::FromWire(raw);
  return absl::OkStatus();
}

absl::Status NdrReader::ReadReferent(std::string_view field, uint32_t* referent_id) {
  static_assert(kPointerSize == kU32Size);
  return ReadU32(field, referent_id);
}

absl::Status NdrReader::ReadCount(std::string_view field, size_t element_size, uint32_t* count) {
  if (absl::Status s = ReadU32(field, count); !s.ok()) return s;
  // Compare in 64 bits: count * element_size cannot overflow for element sizes we use.
  const uint64_t bytes = static_cast<uint64_t>(*count) * element_size;
  if (bytes > remaining()) {
    return NdrError(field, absl::StrCat("count ", *count, " needs ", bytes, " bytes but only ", remaining(),
                                        " remain in the stub"));
  }
  return absl::OkStatus();
}

absl::Status NdrReader::ReadVaryingHeader(std::string_view field, size_t element_size, VaryingHeader* out) {
  if (absl::Status s = ReadU32(field, &out->max_count); !s.ok()) return s;
  if (absl::Status s = ReadU32(field, &out->offset); !s.ok()) return s;
  if (out->offset != 0) return NdrError(field, absl::StrCat("varying offset is ", out->offset, ", expected 0"));
  if (absl::Status s = ReadCount(field, element_size, &out->actual_count); !s.ok()) return s;
  if (out->actual_count > out->max_count) {
    return NdrError(field, absl::StrCat("actual count ", out->actual_count, " exceeds maximum count ", out->max_count));
  }
  return absl::OkStatus();
}

absl::Status NdrReader::ReadConformantBytes(std::string_view field, Bytes* out) {
  uint32_t count = 0;
  if (absl::Status s = ReadCount(field, 1, &count); !s.ok()) return s;
  out->assign(in_.begin() + pos_, in_.begin() + pos_ + count);
  pos_ += count;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadConformantVaryingBytes(std::string_view field, Bytes* out, uint32_t* max_count) {
  VaryingHeader header;
  if (absl::Status s = ReadVaryingHeader(field, 1, &header); !s.ok()) return s;
  out->assign(in_.begin() + pos_, in_.begin() + pos_ + header.actual_count);
  pos_ += header.actual_count;
  if (max_count != nullptr) *max_count = header.max_count;
  return absl::OkStatus();
}

absl::Status NdrReader::ReadWideString(std::string_view field, std::u16string* out) {
  VaryingHeader header;
  if (absl::Status s = ReadVaryingHeader(field, kNdrWcharSize, &header); !s.ok()) return s;
  if (header.actual_count == 0) return NdrError(field, "string has no terminating NUL (actual count 0)");
  const size_t units = header.actual_count;
  const size_t last = pos_ + (units - 1) * kNdrWcharSize;
  if (in_[last] != 0 || in_[last + 1] != 0) return NdrError(field, "string's last character is not NUL");
  out->clear();
  out->reserve(units - 1);
  for (size_t i = 0; i + 1 < units; ++i) {
    const size_t at = pos_ + i * kNdrWcharSize;
    out->push_back(static_cast<char16_t>(in_[at] | in_[at + 1] << 8));
  }
  pos_ += units * kNdrWcharSize;
  return absl::OkStatus();
}

void NdrReader::Defer(std::function<absl::Status(NdrReader&)> pointee) { deferred_.push_back(std::move(pointee)); }

absl::Status NdrReader::FlushDeferred() {
  std::vector<std::function<absl::Status(NdrReader&)>> pending = std::move(deferred_);
  deferred_.clear();
  for (auto& pointee : pending) {
    if (absl::Status s = pointee(*this); !s.ok()) return s;
    if (absl::Status s = FlushDeferred(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status NdrReader::ExpectEnd(std::string_view what) const {
  if (remaining() >= kNdrMaxAlignment) {
    return NdrError(what, absl::StrCat(remaining(), " unexpected bytes follow the last field"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::u16string> LeBytesToUtf16(ByteView bytes, std::string_view field) {
  auto text = text::LeBytesToUtf16(bytes);
  if (!text.ok()) return absl::InvalidArgumentError(absl::StrCat(AbslView(field), ": ", text.status().message()));
  return text;
}

}  // namespace adcsc::rpc
