// NDR 2.0 marshalling (DCE 1.1 RPC chapter 14), little-endian/ASCII/IEEE: a stub writer, a
// bounds-checked reader for untrusted stubs, and the UTF-8 <-> UTF-16 conversions strings need.
// Thread-safety: NdrWriter/NdrReader are single-owner (no locking); free functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/rpc/uuid.h"
#include "node/text/utf16.h"

namespace adcsc::rpc {

// NDR primitives are aligned to their own size, measured from the first byte of the stub.
inline constexpr size_t kNdrMaxAlignment = 8;
// A wchar_t on the wire: one UTF-16 code unit.
inline constexpr size_t kNdrWcharSize = 2;

// Builds an NDR stub. Pointees of embedded pointers are queued with Defer() and written by
// FlushDeferred(), which the caller invokes after the top-level construct (a parameter, or the
// outermost structure/array) that holds the pointers: that is where NDR puts them. A pointee
// that itself defers pointees gets them written right after it (depth-first, as MIDL does).
//
// Counts are 32-bit on the wire; callers keep data under 4 GiB (PDU limits are far lower).
class NdrWriter {
 public:
  struct Options {
    // MIDL-generated Windows stubs number referents 0x00020000, 0x00020004, ...; the endpoint
    // mapper of old Windows releases demands 1, 2, ... (see epm_stub.h).
    uint32_t first_referent_id = 0x00020000;
    uint32_t referent_id_step = 4;
  };

  NdrWriter() : NdrWriter(Options{}) {}
  explicit NdrWriter(Options options);

  // Pads with zero bytes until the stub length is a multiple of `alignment` (1, 2, 4 or 8).
  void Align(size_t alignment);
  void WriteU8(uint8_t v);
  void WriteU16(uint16_t v);  // aligned to 2
  void WriteU32(uint32_t v);  // aligned to 4
  void WriteU64(uint64_t v);  // aligned to 8
  // Raw bytes, no alignment (byte arrays, the body of a context handle...).
  void WriteRaw(ByteView bytes);
  // A GUID: aligned to 4 (its largest member), 16 bytes in wire layout.
  void WriteUuid(const Uuid& uuid);

  // A unique or full pointer's representation: a fresh non-zero referent ID, or 0 for null.
  // Returns the ID written. (Full pointers are never aliased by this writer: each referent is
  // distinct, which is always valid NDR.)
  uint32_t WriteReferent(bool present);
  // Writes the referent ID and, when present, queues `pointee` for FlushDeferred().
  void WriteUniquePointer(bool present, std::function<void(NdrWriter&)> pointee);

  // Conformant byte array ([size_is(n)] byte[]): max_count then the bytes.
  void WriteConformantBytes(ByteView data);
  // Conformant varying byte array: max_count, offset 0, actual_count, the bytes.
  // `max_count` must be >= data.size().
  void WriteConformantVaryingBytes(ByteView data, uint32_t max_count);
  // [string] wchar_t*: max_count = actual_count = code units + 1 (the terminating NUL is
  // counted and written), offset 0, then UTF-16LE code units.
  void WriteWideString(std::u16string_view text);

  // Queues a pointee to be written by the next FlushDeferred().
  void Defer(std::function<void(NdrWriter&)> pointee);
  // Writes every queued pointee in order (and, after each, the ones it queued).
  void FlushDeferred();

  size_t size() const { return out_.size(); }
  const Bytes& data() const { return out_; }
  // Flushes anything still deferred and hands over the stub.
  Bytes Finish();

 private:
  Options options_;
  uint32_t next_referent_;
  Bytes out_;
  std::vector<std::function<void(NdrWriter&)>> deferred_;
};

// Reads an NDR stub from untrusted bytes. Every read checks bounds; counts are compared with
// the bytes left before anything is allocated; failures are InvalidArgumentError naming the
// field. Deferred pointees work as in NdrWriter: Defer() callbacks run in FlushDeferred().
class NdrReader {
 public:
  // Header of a conformant varying array (or string).
  struct VaryingHeader {
    uint32_t max_count = 0;
    uint32_t offset = 0;
    uint32_t actual_count = 0;
  };

  explicit NdrReader(ByteView stub) : in_(stub) {}

  // Skips alignment padding (its content is not checked: senders may leave garbage there).
  absl::Status Align(size_t alignment, std::string_view field);
  absl::Status ReadU8(std::string_view field, uint8_t* out);
  absl::Status ReadU16(std::string_view field, uint16_t* out);
  absl::Status ReadU32(std::string_view field, uint32_t* out);
  absl::Status ReadU64(std::string_view field, uint64_t* out);
  // A view of the next `n` bytes (no alignment); valid while the input buffer is.
  absl::Status ReadRaw(std::string_view field, size_t n, ByteView* out);
  absl::Status ReadUuid(std::string_view field, Uuid* out);
  // A unique/full pointer's referent ID; 0 means null.
  absl::Status ReadReferent(std::string_view field, uint32_t* referent_id);

  // A 32-bit element count (conformance or actual count) for elements of `element_size` bytes
  // that must follow; fails if they cannot fit in what is left of the stub.
  absl::Status ReadCount(std::string_view field, size_t element_size, uint32_t* count);
  // The three counts of a conformant varying array: offset must be 0 (nobody sends partial
  // arrays to us), actual_count <= max_count, and actual_count elements must fit.
  absl::Status ReadVaryingHeader(std::string_view field, size_t element_size, VaryingHeader* out);

  // Conformant byte array: max_count then that many bytes.
  absl::Status ReadConformantBytes(std::string_view field, Bytes* out);
  // Conformant varying byte array; returns the actual bytes, and the max_count if asked.
  absl::Status ReadConformantVaryingBytes(std::string_view field, Bytes* out, uint32_t* max_count = nullptr);
  // [string] wchar_t*: checks offset 0, actual <= max, at least one unit and a terminating NUL
  // in the last unit; returns the text without that NUL.
  absl::Status ReadWideString(std::string_view field, std::u16string* out);

  void Defer(std::function<absl::Status(NdrReader&)> pointee);
  absl::Status FlushDeferred();

  // Fails when bytes other than alignment padding (< 8 bytes) remain. Stubs end at the
  // last parameter; Windows adds no trailer, so leftovers mean a framing or codec mismatch.
  absl::Status ExpectEnd(std::string_view what) const;

  size_t offset() const { return pos_; }
  size_t remaining() const { return in_.size() - pos_; }

 private:
  absl::Status Need(std::string_view field, size_t n) const;

  ByteView in_;
  size_t pos_ = 0;
  std::vector<std::function<absl::Status(NdrReader&)>> deferred_;
};

// Text conversions live in node/text; the NDR code uses them unqualified.
using text::Utf16ToLeBytes;
using text::Utf16ToUtf8;
using text::Utf16ToUtf8Lossy;
using text::Utf8ToUtf16;
// Little-endian code units to UTF-16; an odd byte count is an error naming `field`.
absl::StatusOr<std::u16string> LeBytesToUtf16(ByteView bytes, std::string_view field);

}  // namespace adcsc::rpc
