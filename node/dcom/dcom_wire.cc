// MS-DCOM marshalling; see dcom_wire.h.
#include "node/dcom/dcom_wire.h"

#include <random>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace adcsc::dcom {
namespace {

using rpc::NdrReader;
using rpc::NdrWriter;

// MS-DCOM 2.2.22: at most this many property structures in an activation blob, and
// interfaces in one activation.
constexpr uint32_t kMaxActivationProperties = 10;
constexpr uint32_t kMaxRequestedInterfaces = 0x8000;
// Bounds on what a peer may make us allocate or walk (far above what Windows sends).
constexpr size_t kMaxOrpcExtents = 64;
constexpr size_t kMaxInterfaceRefs = 4096;

// MS-RPCE 2.2.6.1: version 1, little-endian, 8-byte common header, filler 0xcccccccc.
constexpr uint8_t kTypeSerializationVersion = 1;
constexpr uint8_t kTypeSerializationLittleEndian = 0x10;
constexpr uint16_t kCommonHeaderLength = 8;
constexpr uint32_t kCommonHeaderFiller = 0xcccccccc;
constexpr size_t kTypeSerializationHeaders = 16;

absl::Status Bad(std::string_view what, std::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(rpc::AbslView(what), ": ", rpc::AbslView(problem)));
}

uint32_t LoadU32(ByteView b, size_t at) {
  return static_cast<uint32_t>(b[at]) | static_cast<uint32_t>(b[at + 1]) << 8 | static_cast<uint32_t>(b[at + 2]) << 16 |
         static_cast<uint32_t>(b[at + 3]) << 24;
}

// An ORPC_EXTENT_ARRAY pointee (after the structure that points to it): read and dropped.
absl::Status SkipExtents(NdrReader& r) {
  uint32_t size = 0, reserved = 0, array_ref = 0;
  if (auto s = r.ReadU32("ORPC_EXTENT_ARRAY.size", &size); !s.ok()) return s;
  if (auto s = r.ReadU32("ORPC_EXTENT_ARRAY.reserved", &reserved); !s.ok()) return s;
  if (auto s = r.ReadReferent("ORPC_EXTENT_ARRAY.extent", &array_ref); !s.ok()) return s;
  if (array_ref == 0) return absl::OkStatus();
  uint32_t count = 0;
  if (auto s = r.ReadCount("ORPC_EXTENT_ARRAY.extent count", 4, &count); !s.ok()) return s;
  if (count > kMaxOrpcExtents) return Bad("ORPC_EXTENT_ARRAY", absl::StrCat(count, " extents"));
  std::vector<uint32_t> present(count);
  for (uint32_t& p : present) {
    if (auto s = r.ReadReferent("ORPC_EXTENT pointer", &p); !s.ok()) return s;
  }
  for (uint32_t p : present) {
    if (p == 0) continue;
    uint32_t max_count = 0, extent_size = 0;
    Uuid id;
    ByteView data;
    if (auto s = r.ReadCount("ORPC_EXTENT.data count", 1, &max_count); !s.ok()) return s;
    if (auto s = r.ReadUuid("ORPC_EXTENT.id", &id); !s.ok()) return s;
    if (auto s = r.ReadU32("ORPC_EXTENT.size", &extent_size); !s.ok()) return s;
    if (auto s = r.ReadRaw("ORPC_EXTENT.data", max_count, &data); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// MInterfacePointer { ulCntData; [size_is(ulCntData)] byte abData[]; } as a pointee: the
// conformance first, as for every conformant structure.
void WriteInterfacePointerBody(NdrWriter& w, const Bytes& data) {
  w.WriteU32(static_cast<uint32_t>(data.size()));
  w.WriteU32(static_cast<uint32_t>(data.size()));
  w.WriteRaw(data);
}

absl::Status ReadInterfacePointerBody(NdrReader& r, std::string_view what, Bytes* out) {
  uint32_t max_count = 0, count = 0;
  if (auto s = r.ReadU32(absl::StrCat(rpc::AbslView(what), " max_count"), &max_count); !s.ok()) return s;
  if (auto s = r.ReadCount(absl::StrCat(rpc::AbslView(what), ".ulCntData"), 1, &count); !s.ok()) return s;
  if (count != max_count) return Bad(what, "ulCntData differs from its conformance");
  ByteView data;
  if (auto s = r.ReadRaw(what, count, &data); !s.ok()) return s;
  out->assign(data.begin(), data.end());
  return absl::OkStatus();
}

void AppendUnits(std::vector<uint16_t>& units, std::string_view utf8) {
  auto wide = rpc::Utf8ToUtf16(utf8);
  if (wide.ok()) units.insert(units.end(), wide->begin(), wide->end());
}

std::vector<uint16_t> DualStringUnits(const DualStringArray& v, uint16_t* security_offset) {
  std::vector<uint16_t> units;
  for (const StringBinding& b : v.strings) {
    units.push_back(b.tower_id);
    AppendUnits(units, b.network_address);
    units.push_back(0);
  }
  if (v.strings.empty()) units.push_back(0);  // an empty section is two NULs
  units.push_back(0);
  *security_offset = static_cast<uint16_t>(units.size());
  for (const SecurityBinding& b : v.security) {
    units.push_back(b.authn_svc);
    units.push_back(0xffff);  // Reserved: MUST be 0xffff
    AppendUnits(units, b.principal_name);
    units.push_back(0);
  }
  if (v.security.empty()) units.push_back(0);
  units.push_back(0);
  return units;
}

// The text of NUL-terminated UTF-16 at units[*at...]; moves *at past the NUL.
absl::StatusOr<std::string> ReadUnitsString(const std::vector<uint16_t>& units, size_t* at, size_t end) {
  std::u16string text;
  while (*at < end && units[*at] != 0) text.push_back(static_cast<char16_t>(units[(*at)++]));
  if (*at >= end) return Bad("DUALSTRINGARRAY", "a binding is not NUL-terminated");
  ++*at;
  return rpc::Utf16ToUtf8Lossy(text);
}

// The serialized property at `index` of a decoded activation blob.
struct Blob {
  std::vector<Uuid> clsids;
  std::vector<ByteView> properties;
};

Bytes EncodeCustomHeader(uint32_t total_size, uint32_t header_size, const std::vector<Uuid>& clsids,
                         const std::vector<uint32_t>& sizes) {
  NdrWriter w;
  w.WriteU32(total_size);
  w.WriteU32(header_size);
  w.WriteU32(0);  // dwReserved
  w.WriteU32(kDestContextDifferentMachine);
  w.WriteU32(static_cast<uint32_t>(clsids.size()));
  w.WriteUuid(Uuid());  // classInfoClsid: unused
  w.WriteUniquePointer(true, [&clsids](NdrWriter& pw) {
    pw.WriteU32(static_cast<uint32_t>(clsids.size()));
    for (const Uuid& c : clsids) pw.WriteUuid(c);
  });
  w.WriteUniquePointer(true, [&sizes](NdrWriter& pw) {
    pw.WriteU32(static_cast<uint32_t>(sizes.size()));
    for (uint32_t s : sizes) pw.WriteU32(s);
  });
  w.WriteReferent(false);  // pdwReserved
  return TypeSerialize(w.Finish());
}

// OBJREF_CUSTOM holding an activation properties blob of serialized `properties`.
Bytes EncodeActivationObjref(const Uuid& iid, const Uuid& clsid, const std::vector<Uuid>& property_clsids,
                             const std::vector<Bytes>& properties) {
  std::vector<uint32_t> sizes;
  size_t properties_size = 0;
  for (const Bytes& p : properties) {
    sizes.push_back(static_cast<uint32_t>(p.size()));
    properties_size += p.size();
  }
  // The header's size does not depend on the values it carries: measure, then fill in.
  const size_t header_size = EncodeCustomHeader(0, 0, property_clsids, sizes).size();
  const auto total = static_cast<uint32_t>(header_size + properties_size);
  Bytes header = EncodeCustomHeader(total, static_cast<uint32_t>(header_size), property_clsids, sizes);

  Bytes blob;
  NdrWriter b;
  b.WriteU32(total);  // dwSize: the blob after dwSize and dwReserved
  b.WriteU32(0);      // dwReserved
  blob = b.Finish();
  blob.insert(blob.end(), header.begin(), header.end());
  for (const Bytes& p : properties) blob.insert(blob.end(), p.begin(), p.end());

  NdrWriter o;
  o.WriteU32(kObjrefSignature);
  o.WriteU32(kObjrefCustom);
  o.WriteUuid(iid);
  o.WriteUuid(clsid);
  o.WriteU32(0);  // cbExtension
  // "reserved" in MS-DCOM 2.2.18.6 (ignored on receipt); impacket writes the blob's size
  // plus 8 here, and so do we.
  o.WriteU32(static_cast<uint32_t>(blob.size() + 8));
  o.WriteRaw(blob);
  return o.Finish();
}

absl::StatusOr<Blob> DecodeActivationObjref(ByteView objref, const Uuid& expected_clsid) {
  NdrReader r(objref);
  uint32_t signature = 0, flags = 0, cb_extension = 0, reserved = 0;
  Uuid iid, clsid;
  if (auto s = r.ReadU32("OBJREF.signature", &signature); !s.ok()) return s;
  if (signature != kObjrefSignature) return Bad("OBJREF", "signature is not MEOW");
  if (auto s = r.ReadU32("OBJREF.flags", &flags); !s.ok()) return s;
  if (flags != kObjrefCustom) return Bad("activation properties", absl::StrCat("OBJREF flags ", flags, ", not custom"));
  if (auto s = r.ReadUuid("OBJREF.iid", &iid); !s.ok()) return s;
  if (auto s = r.ReadUuid("OBJREF_CUSTOM.clsid", &clsid); !s.ok()) return s;
  if (clsid != expected_clsid) {
    return Bad("activation properties",
               absl::StrCat("OBJREF_CUSTOM class ", clsid.ToString(), ", expected ", expected_clsid.ToString()));
  }
  if (auto s = r.ReadU32("OBJREF_CUSTOM.cbExtension", &cb_extension); !s.ok()) return s;
  if (auto s = r.ReadU32("OBJREF_CUSTOM.reserved", &reserved); !s.ok()) return s;
  const ByteView blob = objref.subspan(r.offset());

  NdrReader br(blob);
  uint32_t dw_size = 0, dw_reserved = 0;
  if (auto s = br.ReadU32("activation blob dwSize", &dw_size); !s.ok()) return s;
  if (auto s = br.ReadU32("activation blob dwReserved", &dw_reserved); !s.ok()) return s;
  if (dw_size > blob.size() - 8) return Bad("activation blob", "dwSize exceeds the data");
  const ByteView rest = blob.subspan(8, dw_size);
  auto header_body = TypeDeserialize(rest, "CustomHeader");
  if (!header_body.ok()) return header_body.status();
  NdrReader h(*header_body);
  uint32_t total_size = 0, header_size = 0, reserved2 = 0, dest_ctx = 0, count = 0;
  Uuid class_info;
  uint32_t clsid_ref = 0, sizes_ref = 0, reserved_ref = 0;
  if (auto s = h.ReadU32("CustomHeader.totalSize", &total_size); !s.ok()) return s;
  if (auto s = h.ReadU32("CustomHeader.headerSize", &header_size); !s.ok()) return s;
  if (auto s = h.ReadU32("CustomHeader.dwReserved", &reserved2); !s.ok()) return s;
  if (auto s = h.ReadU32("CustomHeader.destCtx", &dest_ctx); !s.ok()) return s;
  if (auto s = h.ReadU32("CustomHeader.cIfs", &count); !s.ok()) return s;
  if (count == 0 || count > kMaxActivationProperties) {
    return Bad("CustomHeader", absl::StrCat(count, " property structures (1 to ", kMaxActivationProperties, ")"));
  }
  if (auto s = h.ReadUuid("CustomHeader.classInfoClsid", &class_info); !s.ok()) return s;
  if (auto s = h.ReadReferent("CustomHeader.pclsid", &clsid_ref); !s.ok()) return s;
  if (auto s = h.ReadReferent("CustomHeader.pSizes", &sizes_ref); !s.ok()) return s;
  if (auto s = h.ReadReferent("CustomHeader.pdwReserved", &reserved_ref); !s.ok()) return s;
  if (clsid_ref == 0 || sizes_ref == 0) return Bad("CustomHeader", "no property classes or sizes");
  Blob out;
  uint32_t n = 0;
  if (auto s = h.ReadCount("CustomHeader.pclsid count", 16, &n); !s.ok()) return s;
  if (n != count) return Bad("CustomHeader", "pclsid count differs from cIfs");
  out.clsids.resize(n);
  for (Uuid& c : out.clsids) {
    if (auto s = h.ReadUuid("CustomHeader.pclsid", &c); !s.ok()) return s;
  }
  if (auto s = h.ReadCount("CustomHeader.pSizes count", 4, &n); !s.ok()) return s;
  if (n != count) return Bad("CustomHeader", "pSizes count differs from cIfs");
  std::vector<uint32_t> sizes(n);
  for (uint32_t& s : sizes) {
    if (auto st = h.ReadU32("CustomHeader.pSizes", &s); !st.ok()) return st;
  }
  if (header_size > rest.size()) return Bad("CustomHeader", "headerSize exceeds the blob");
  size_t at = header_size;
  for (uint32_t s : sizes) {
    if (s > rest.size() - at) return Bad("activation blob", "a property's size exceeds the blob");
    out.properties.push_back(rest.subspan(at, s));
    at += s;
  }
  return out;
}

std::optional<ByteView> FindProperty(const Blob& blob, const Uuid& clsid) {
  for (size_t i = 0; i < blob.clsids.size(); ++i) {
    if (blob.clsids[i] == clsid) return blob.properties[i];
  }
  return std::nullopt;
}

absl::Status ReadDualStringArrayNdr(NdrReader& r, DualStringArray* out) {
  uint32_t max_count = 0;
  uint16_t entries = 0, security_offset = 0;
  if (auto s = r.ReadCount("DUALSTRINGARRAY max_count", 2, &max_count); !s.ok()) return s;
  if (auto s = r.ReadU16("DUALSTRINGARRAY.wNumEntries", &entries); !s.ok()) return s;
  if (auto s = r.ReadU16("DUALSTRINGARRAY.wSecurityOffset", &security_offset); !s.ok()) return s;
  if (entries != max_count) return Bad("DUALSTRINGARRAY", "wNumEntries differs from its conformance");
  std::vector<uint16_t> units(entries);
  for (uint16_t& u : units) {
    if (auto s = r.ReadU16("DUALSTRINGARRAY.aStringArray", &u); !s.ok()) return s;
  }
  auto decoded = DecodeDualStringArrayUnits(units, security_offset);
  if (!decoded.ok()) return decoded.status();
  *out = *std::move(decoded);
  return absl::OkStatus();
}

}  // namespace

Uuid RandomUuid() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<uint8_t, Uuid::kWireSize> wire{};
  for (size_t i = 0; i < wire.size(); i += 8) {
    const uint64_t v = rng();
    for (size_t j = 0; j < 8; ++j) wire[i + j] = static_cast<uint8_t>(v >> (8 * j));
  }
  wire[7] = static_cast<uint8_t>((wire[7] & 0x0f) | 0x40);  // version 4 (time_hi_and_version, wire LE)
  wire[8] = static_cast<uint8_t>((wire[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return Uuid(wire);
}

void WriteOrpcThis(NdrWriter& w, const OrpcThis& v) {
  w.Align(4);
  w.WriteU16(v.major);
  w.WriteU16(v.minor);
  w.WriteU32(v.flags);
  w.WriteU32(0);  // reserved1
  w.WriteUuid(v.cid);
  w.WriteReferent(false);  // extensions
}

absl::Status ReadOrpcThis(NdrReader& r, OrpcThis* v) {
  uint32_t reserved = 0, extensions = 0;
  if (auto s = r.Align(4, "ORPCTHIS"); !s.ok()) return s;
  if (auto s = r.ReadU16("ORPCTHIS.version.MajorVersion", &v->major); !s.ok()) return s;
  if (auto s = r.ReadU16("ORPCTHIS.version.MinorVersion", &v->minor); !s.ok()) return s;
  if (auto s = r.ReadU32("ORPCTHIS.flags", &v->flags); !s.ok()) return s;
  if (auto s = r.ReadU32("ORPCTHIS.reserved1", &reserved); !s.ok()) return s;
  if (auto s = r.ReadUuid("ORPCTHIS.cid", &v->cid); !s.ok()) return s;
  if (auto s = r.ReadReferent("ORPCTHIS.extensions", &extensions); !s.ok()) return s;
  if (v->major != kComVersionMajor) return Bad("ORPCTHIS", absl::StrCat("COM version ", v->major, ".", v->minor));
  return extensions != 0 ? SkipExtents(r) : absl::OkStatus();
}

void WriteOrpcThat(NdrWriter& w, const OrpcThat& v) {
  w.WriteU32(v.flags);
  w.WriteReferent(false);  // extensions
}

absl::Status ReadOrpcThat(NdrReader& r, OrpcThat* v) {
  uint32_t extensions = 0;
  if (auto s = r.ReadU32("ORPCTHAT.flags", &v->flags); !s.ok()) return s;
  if (auto s = r.ReadReferent("ORPCTHAT.extensions", &extensions); !s.ok()) return s;
  return extensions != 0 ? SkipExtents(r) : absl::OkStatus();
}

Bytes EncodeDualStringArrayBody(const DualStringArray& v) {
  uint16_t security_offset = 0;
  const std::vector<uint16_t> units = DualStringUnits(v, &security_offset);
  NdrWriter w;
  w.WriteU16(static_cast<uint16_t>(units.size()));
  w.WriteU16(security_offset);
  for (uint16_t u : units) w.WriteU16(u);
  return w.Finish();
}

absl::StatusOr<DualStringArray> DecodeDualStringArrayUnits(const std::vector<uint16_t>& units,
                                                           uint16_t security_offset) {
  if (security_offset > units.size()) return Bad("DUALSTRINGARRAY", "wSecurityOffset beyond the entries");
  DualStringArray out;
  size_t at = 0;
  while (at < security_offset && units[at] != 0) {
    StringBinding b;
    b.tower_id = units[at++];
    auto text = ReadUnitsString(units, &at, security_offset);
    if (!text.ok()) return text.status();
    b.network_address = *std::move(text);
    out.strings.push_back(std::move(b));
  }
  at = security_offset;
  while (at < units.size() && units[at] != 0) {
    SecurityBinding b;
    b.authn_svc = units[at++];
    if (at >= units.size()) return Bad("DUALSTRINGARRAY", "a security binding is cut short");
    ++at;  // Reserved
    auto text = ReadUnitsString(units, &at, units.size());
    if (!text.ok()) return text.status();
    b.principal_name = *std::move(text);
    out.security.push_back(std::move(b));
  }
  return out;
}

absl::StatusOr<uint16_t> TcpPortOf(const DualStringArray& bindings) {
  for (const StringBinding& b : bindings.strings) {
    if (b.tower_id != kTowerIdTcp) continue;
    const size_t open = b.network_address.rfind('[');
    const size_t close = b.network_address.rfind(']');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    uint32_t port = 0;
    if (absl::SimpleAtoi(b.network_address.substr(open + 1, close - open - 1), &port) && port > 0 && port < 65536) {
      return static_cast<uint16_t>(port);
    }
  }
  return absl::NotFoundError("the object exporter announced no ncacn_ip_tcp binding with a port");
}

Bytes EncodeStandardObjRef(const StandardObjRef& v) {
  NdrWriter w;
  w.WriteU32(kObjrefSignature);
  w.WriteU32(kObjrefStandard);
  w.WriteUuid(v.iid);
  w.WriteU32(v.std.flags);
  w.WriteU32(v.std.public_refs);
  w.WriteU64(v.std.oxid);
  w.WriteU64(v.std.oid);
  w.WriteUuid(v.std.ipid);
  Bytes out = w.Finish();
  Bytes dsa = EncodeDualStringArrayBody(v.resolver_address);
  out.insert(out.end(), dsa.begin(), dsa.end());
  return out;
}

absl::StatusOr<StandardObjRef> DecodeStandardObjRef(ByteView bytes) {
  NdrReader r(bytes);
  StandardObjRef v;
  uint32_t signature = 0, flags = 0;
  if (auto s = r.ReadU32("OBJREF.signature", &signature); !s.ok()) return s;
  if (signature != kObjrefSignature) return Bad("OBJREF", "signature is not MEOW");
  if (auto s = r.ReadU32("OBJREF.flags", &flags); !s.ok()) return s;
  if (flags != kObjrefStandard) return Bad("OBJREF", absl::StrCat("flags ", flags, ": not a standard OBJREF"));
  if (auto s = r.ReadUuid("OBJREF.iid", &v.iid); !s.ok()) return s;
  if (auto s = r.ReadU32("STDOBJREF.flags", &v.std.flags); !s.ok()) return s;
  if (auto s = r.ReadU32("STDOBJREF.cPublicRefs", &v.std.public_refs); !s.ok()) return s;
  if (auto s = r.ReadU64("STDOBJREF.oxid", &v.std.oxid); !s.ok()) return s;
  if (auto s = r.ReadU64("STDOBJREF.oid", &v.std.oid); !s.ok()) return s;
  if (auto s = r.ReadUuid("STDOBJREF.ipid", &v.std.ipid); !s.ok()) return s;
  uint16_t entries = 0, security_offset = 0;
  if (auto s = r.ReadU16("saResAddr.wNumEntries", &entries); !s.ok()) return s;
  if (auto s = r.ReadU16("saResAddr.wSecurityOffset", &security_offset); !s.ok()) return s;
  std::vector<uint16_t> units(entries);
  for (uint16_t& u : units) {
    if (auto s = r.ReadU16("saResAddr.aStringArray", &u); !s.ok()) return s;
  }
  auto dsa = DecodeDualStringArrayUnits(units, security_offset);
  if (!dsa.ok()) return dsa.status();
  v.resolver_address = *std::move(dsa);
  return v;
}

Bytes TypeSerialize(const Bytes& ndr_body) {
  const size_t padded = (ndr_body.size() + 7) / 8 * 8;
  NdrWriter w;
  w.WriteU8(kTypeSerializationVersion);
  w.WriteU8(kTypeSerializationLittleEndian);
  w.WriteU16(kCommonHeaderLength);
  w.WriteU32(kCommonHeaderFiller);
  w.WriteU32(static_cast<uint32_t>(padded));  // ObjectBufferLength, a multiple of 8
  w.WriteU32(0);                              // filler
  Bytes out = w.Finish();
  out.insert(out.end(), ndr_body.begin(), ndr_body.end());
  out.resize(kTypeSerializationHeaders + padded, 0);
  return out;
}

absl::StatusOr<ByteView> TypeDeserialize(ByteView bytes, std::string_view what) {
  if (bytes.size() < kTypeSerializationHeaders) return Bad(what, "shorter than the serialization headers");
  if (bytes[0] != kTypeSerializationVersion || bytes[1] != kTypeSerializationLittleEndian ||
      (bytes[2] | bytes[3] << 8) != kCommonHeaderLength) {
    return Bad(what, "not a little-endian type serialization version 1 header");
  }
  const uint32_t length = LoadU32(bytes, 8);
  // Some writers leave trailing alignment out of ObjectBufferLength; never read past the data.
  const size_t available = bytes.size() - kTypeSerializationHeaders;
  if (length > available) return Bad(what, "ObjectBufferLength exceeds the data");
  return bytes.subspan(kTypeSerializationHeaders, available);
}

absl::StatusOr<Bytes> EncodeRemoteCreateInstanceIn(const ActivationRequest& v) {
  if (v.iids.empty() || v.iids.size() > kMaxRequestedInterfaces) {
    return absl::InvalidArgumentError("activation: 1 or more interfaces must be requested");
  }
  // InstantiationInfoData: thisSize is its own serialized size, which does not depend on it.
  auto instantiation = [&v](uint32_t this_size) {
    NdrWriter w;
    w.WriteUuid(v.clsid);
    w.WriteU32(0);  // classCtx
    w.WriteU32(0);  // actvflags
    w.WriteU32(0);  // fIsSurrogate
    w.WriteU32(static_cast<uint32_t>(v.iids.size()));
    w.WriteU32(0);  // instFlag
    w.WriteUniquePointer(true, [&v](NdrWriter& pw) {
      pw.WriteU32(static_cast<uint32_t>(v.iids.size()));
      for (const Uuid& iid : v.iids) pw.WriteUuid(iid);
    });
    w.WriteU32(this_size);
    w.WriteU16(kComVersionMajor);
    w.WriteU16(kComVersionMinor);
    return TypeSerialize(w.Finish());
  };
  Bytes instantiation_info = instantiation(static_cast<uint32_t>(instantiation(0).size()));

  NdrWriter context;
  context.WriteU32(0);           // clientOK
  context.WriteU32(0);           // bReserved1
  context.WriteU32(0);           // dwReserved1
  context.WriteU32(0);           // dwReserved2
  context.WriteReferent(false);  // pIFDClientCtx
  context.WriteReferent(false);  // pIFDPrototypeCtx
  Bytes context_info = TypeSerialize(context.Finish());

  NdrWriter location;
  location.WriteReferent(false);  // machineName
  location.WriteU32(0);           // processId
  location.WriteU32(0);           // apartmentId
  location.WriteU32(0);           // contextId
  Bytes location_info = TypeSerialize(location.Finish());

  NdrWriter scm;
  scm.WriteReferent(false);  // pdwReserved
  scm.WriteUniquePointer(true, [&v](NdrWriter& pw) {
    pw.WriteU32(v.client_imp_level);
    pw.WriteU16(static_cast<uint16_t>(v.protseqs.size()));
    pw.WriteUniquePointer(!v.protseqs.empty(), [&v](NdrWriter& aw) {
      aw.WriteU32(static_cast<uint32_t>(v.protseqs.size()));
      for (uint16_t p : v.protseqs) aw.WriteU16(p);
    });
  });
  Bytes scm_info = TypeSerialize(scm.Finish());

  const Bytes objref = EncodeActivationObjref(
      kIidActivationPropertiesIn, kClsidActivationPropertiesIn,
      {kClsidInstantiationInfo, kClsidActivationContextInfo, kClsidServerLocationInfo, kClsidScmRequestInfo},
      {instantiation_info, context_info, location_info, scm_info});

  NdrWriter w;
  WriteOrpcThis(w, v.orpc);
  w.WriteReferent(false);  // pUnkOuter
  w.WriteUniquePointer(true, [&objref](NdrWriter& pw) { WriteInterfacePointerBody(pw, objref); });
  w.FlushDeferred();
  return w.Finish();
}

absl::StatusOr<ActivationRequest> DecodeRemoteCreateInstanceIn(ByteView stub) {
  NdrReader r(stub);
  ActivationRequest v;
  v.protseqs.clear();
  uint32_t outer = 0, props = 0;
  if (auto s = ReadOrpcThis(r, &v.orpc); !s.ok()) return s;
  if (auto s = r.ReadReferent("pUnkOuter", &outer); !s.ok()) return s;
  if (outer != 0) {
    Bytes ignored;
    if (auto s = ReadInterfacePointerBody(r, "pUnkOuter", &ignored); !s.ok()) return s;
  }
  if (auto s = r.ReadReferent("pActProperties", &props); !s.ok()) return s;
  if (props == 0) return Bad("RemoteCreateInstance", "no activation properties");
  Bytes objref;
  if (auto s = ReadInterfacePointerBody(r, "pActProperties", &objref); !s.ok()) return s;
  if (auto s = r.ExpectEnd("RemoteCreateInstance request"); !s.ok()) return s;

  auto blob = DecodeActivationObjref(objref, kClsidActivationPropertiesIn);
  if (!blob.ok()) return blob.status();
  auto instantiation = FindProperty(*blob, kClsidInstantiationInfo);
  if (!instantiation) return Bad("activation properties", "no InstantiationInfoData");
  auto body = TypeDeserialize(*instantiation, "InstantiationInfoData");
  if (!body.ok()) return body.status();
  NdrReader ir(*body);
  uint32_t class_ctx = 0, actv_flags = 0, surrogate = 0, count = 0, inst_flag = 0, iid_ref = 0, this_size = 0;
  uint16_t major = 0, minor = 0;
  if (auto s = ir.ReadUuid("InstantiationInfoData.classId", &v.clsid); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.classCtx", &class_ctx); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.actvflags", &actv_flags); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.fIsSurrogate", &surrogate); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.cIID", &count); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.instFlag", &inst_flag); !s.ok()) return s;
  if (auto s = ir.ReadReferent("InstantiationInfoData.pIID", &iid_ref); !s.ok()) return s;
  if (auto s = ir.ReadU32("InstantiationInfoData.thisSize", &this_size); !s.ok()) return s;
  if (auto s = ir.ReadU16("InstantiationInfoData.clientCOMVersion.MajorVersion", &major); !s.ok()) return s;
  if (auto s = ir.ReadU16("InstantiationInfoData.clientCOMVersion.MinorVersion", &minor); !s.ok()) return s;
  if (count == 0 || count > kMaxRequestedInterfaces || iid_ref == 0) {
    return Bad("InstantiationInfoData", absl::StrCat(count, " interfaces requested"));
  }
  uint32_t n = 0;
  if (auto s = ir.ReadCount("InstantiationInfoData.pIID count", 16, &n); !s.ok()) return s;
  if (n != count) return Bad("InstantiationInfoData", "pIID count differs from cIID");
  v.iids.resize(n);
  for (Uuid& iid : v.iids) {
    if (auto s = ir.ReadUuid("InstantiationInfoData.pIID", &iid); !s.ok()) return s;
  }

  auto scm = FindProperty(*blob, kClsidScmRequestInfo);
  if (!scm) return Bad("activation properties", "no ScmRequestInfoData");
  auto scm_body = TypeDeserialize(*scm, "ScmRequestInfoData");
  if (!scm_body.ok()) return scm_body.status();
  NdrReader sr(*scm_body);
  uint32_t reserved_ref = 0, request_ref = 0;
  if (auto s = sr.ReadReferent("ScmRequestInfoData.pdwReserved", &reserved_ref); !s.ok()) return s;
  if (auto s = sr.ReadReferent("ScmRequestInfoData.remoteRequest", &request_ref); !s.ok()) return s;
  if (reserved_ref != 0) {
    uint32_t ignored = 0;
    if (auto s = sr.ReadU32("ScmRequestInfoData.pdwReserved", &ignored); !s.ok()) return s;
  }
  if (request_ref == 0) return Bad("ScmRequestInfoData", "no remoteRequest");
  uint16_t protseq_count = 0;
  uint32_t protseq_ref = 0;
  if (auto s = sr.ReadU32("customREMOTE_REQUEST_SCM_INFO.ClientImpLevel", &v.client_imp_level); !s.ok()) return s;
  if (auto s = sr.ReadU16("customREMOTE_REQUEST_SCM_INFO.cRequestedProtseqs", &protseq_count); !s.ok()) return s;
  if (auto s = sr.ReadReferent("customREMOTE_REQUEST_SCM_INFO.pRequestedProtseqs", &protseq_ref); !s.ok()) return s;
  if (protseq_ref != 0) {
    if (auto s = sr.ReadCount("pRequestedProtseqs count", 2, &n); !s.ok()) return s;
    if (n != protseq_count) return Bad("customREMOTE_REQUEST_SCM_INFO", "protseq count differs");
    v.protseqs.resize(n);
    for (uint16_t& p : v.protseqs) {
      if (auto s = sr.ReadU16("pRequestedProtseqs", &p); !s.ok()) return s;
    }
  }
  return v;
}

absl::StatusOr<Bytes> EncodeRemoteCreateInstanceOut(const ActivationReply& v) {
  NdrWriter w;
  WriteOrpcThat(w, v.orpc);
  const bool succeeded = (v.error_code & 0x80000000u) == 0;
  if (!succeeded) {
    w.WriteReferent(false);
    w.WriteU32(v.error_code);
    return w.Finish();
  }
  // PropsOutInfo: per interface its IID, HRESULT and OBJREF.
  std::vector<Bytes> objrefs;
  for (const ActivatedInterface& i : v.interfaces) {
    objrefs.push_back(i.objref ? EncodeStandardObjRef(*i.objref) : Bytes{});
  }
  NdrWriter po;
  po.WriteU32(static_cast<uint32_t>(v.interfaces.size()));
  po.WriteUniquePointer(true, [&v](NdrWriter& pw) {
    pw.WriteU32(static_cast<uint32_t>(v.interfaces.size()));
    for (const ActivatedInterface& i : v.interfaces) pw.WriteUuid(i.iid);
  });
  po.WriteUniquePointer(true, [&v](NdrWriter& pw) {
    pw.WriteU32(static_cast<uint32_t>(v.interfaces.size()));
    for (const ActivatedInterface& i : v.interfaces) pw.WriteU32(i.hresult);
  });
  po.WriteUniquePointer(true, [&objrefs](NdrWriter& pw) {
    pw.WriteU32(static_cast<uint32_t>(objrefs.size()));
    for (const Bytes& o : objrefs) {
      pw.WriteUniquePointer(!o.empty(), [&o](NdrWriter& ow) { WriteInterfacePointerBody(ow, o); });
    }
  });
  Bytes props_out = TypeSerialize(po.Finish());

  uint16_t security_offset = 0;
  const std::vector<uint16_t> units = DualStringUnits(v.oxid_bindings, &security_offset);
  NdrWriter sc;
  sc.WriteReferent(false);  // pdwReserved
  sc.WriteUniquePointer(true, [&](NdrWriter& pw) {
    pw.WriteU64(v.oxid);
    pw.WriteUniquePointer(true, [&](NdrWriter& dw) {
      dw.WriteU32(static_cast<uint32_t>(units.size()));
      dw.WriteU16(static_cast<uint16_t>(units.size()));
      dw.WriteU16(security_offset);
      for (uint16_t u : units) dw.WriteU16(u);
    });
    pw.WriteUuid(v.ipid_rem_unknown);
    pw.WriteU32(v.authn_hint);
    pw.WriteU16(v.server_major);
    pw.WriteU16(v.server_minor);
  });
  Bytes scm_reply = TypeSerialize(sc.Finish());

  const Bytes objref = EncodeActivationObjref(kIidActivationPropertiesOut, kClsidActivationPropertiesOut,
                                              {kClsidPropsOutInfo, kClsidScmReplyInfo}, {props_out, scm_reply});
  w.WriteUniquePointer(true, [&objref](NdrWriter& pw) { WriteInterfacePointerBody(pw, objref); });
  w.FlushDeferred();
  w.WriteU32(v.error_code);
  return w.Finish();
}

absl::StatusOr<ActivationReply> DecodeRemoteCreateInstanceOut(ByteView stub) {
  NdrReader r(stub);
  ActivationReply v;
  if (auto s = ReadOrpcThat(r, &v.orpc); !s.ok()) return s;
  uint32_t props_ref = 0;
  if (auto s = r.ReadReferent("ppActProperties", &props_ref); !s.ok()) return s;
  Bytes objref;
  if (props_ref != 0) {
    if (auto s = ReadInterfacePointerBody(r, "ppActProperties", &objref); !s.ok()) return s;
  }
  if (auto s = r.ReadU32("RemoteCreateInstance return value", &v.error_code); !s.ok()) return s;
  if (auto s = r.ExpectEnd("RemoteCreateInstance response"); !s.ok()) return s;
  if ((v.error_code & 0x80000000u) != 0) return v;
  if (props_ref == 0) return Bad("RemoteCreateInstance", "succeeded without activation properties");

  auto blob = DecodeActivationObjref(objref, kClsidActivationPropertiesOut);
  if (!blob.ok()) return blob.status();
  auto props = FindProperty(*blob, kClsidPropsOutInfo);
  auto scm = FindProperty(*blob, kClsidScmReplyInfo);
  if (!props || !scm) return Bad("activation reply", "PropsOutInfo or ScmReplyInfoData missing");

  auto scm_body = TypeDeserialize(*scm, "ScmReplyInfoData");
  if (!scm_body.ok()) return scm_body.status();
  NdrReader sr(*scm_body);
  uint32_t reserved_ref = 0, reply_ref = 0, bindings_ref = 0;
  if (auto s = sr.ReadReferent("ScmReplyInfoData.pdwReserved", &reserved_ref); !s.ok()) return s;
  if (auto s = sr.ReadReferent("ScmReplyInfoData.remoteReply", &reply_ref); !s.ok()) return s;
  if (reserved_ref != 0) {
    uint32_t ignored = 0;
    if (auto s = sr.ReadU32("ScmReplyInfoData.pdwReserved", &ignored); !s.ok()) return s;
  }
  if (reply_ref == 0) return Bad("ScmReplyInfoData", "no remoteReply");
  if (auto s = sr.ReadU64("customREMOTE_REPLY_SCM_INFO.Oxid", &v.oxid); !s.ok()) return s;
  if (auto s = sr.ReadReferent("customREMOTE_REPLY_SCM_INFO.pdsaOxidBindings", &bindings_ref); !s.ok()) return s;
  if (auto s = sr.ReadUuid("customREMOTE_REPLY_SCM_INFO.ipidRemUnknown", &v.ipid_rem_unknown); !s.ok()) return s;
  if (auto s = sr.ReadU32("customREMOTE_REPLY_SCM_INFO.authnHint", &v.authn_hint); !s.ok()) return s;
  if (auto s = sr.ReadU16("serverVersion.MajorVersion", &v.server_major); !s.ok()) return s;
  if (auto s = sr.ReadU16("serverVersion.MinorVersion", &v.server_minor); !s.ok()) return s;
  if (bindings_ref == 0) return Bad("customREMOTE_REPLY_SCM_INFO", "no OXID bindings");
  if (auto s = ReadDualStringArrayNdr(sr, &v.oxid_bindings); !s.ok()) return s;

  auto props_body = TypeDeserialize(*props, "PropsOutInfo");
  if (!props_body.ok()) return props_body.status();
  NdrReader pr(*props_body);
  uint32_t count = 0, iid_ref = 0, hr_ref = 0, intf_ref = 0, n = 0;
  if (auto s = pr.ReadU32("PropsOutInfo.cIfs", &count); !s.ok()) return s;
  if (auto s = pr.ReadReferent("PropsOutInfo.piid", &iid_ref); !s.ok()) return s;
  if (auto s = pr.ReadReferent("PropsOutInfo.phresults", &hr_ref); !s.ok()) return s;
  if (auto s = pr.ReadReferent("PropsOutInfo.ppIntfData", &intf_ref); !s.ok()) return s;
  if (count == 0 || count > kMaxRequestedInterfaces || iid_ref == 0 || hr_ref == 0 || intf_ref == 0) {
    return Bad("PropsOutInfo", "no interfaces");
  }
  v.interfaces.resize(count);
  if (auto s = pr.ReadCount("PropsOutInfo.piid count", 16, &n); !s.ok()) return s;
  if (n != count) return Bad("PropsOutInfo", "piid count differs from cIfs");
  for (auto& i : v.interfaces) {
    if (auto s = pr.ReadUuid("PropsOutInfo.piid", &i.iid); !s.ok()) return s;
  }
  if (auto s = pr.ReadCount("PropsOutInfo.phresults count", 4, &n); !s.ok()) return s;
  if (n != count) return Bad("PropsOutInfo", "phresults count differs from cIfs");
  for (auto& i : v.interfaces) {
    if (auto s = pr.ReadU32("PropsOutInfo.phresults", &i.hresult); !s.ok()) return s;
  }
  if (auto s = pr.ReadCount("PropsOutInfo.ppIntfData count", 4, &n); !s.ok()) return s;
  if (n != count) return Bad("PropsOutInfo", "ppIntfData count differs from cIfs");
  std::vector<uint32_t> present(count);
  for (uint32_t& p : present) {
    if (auto s = pr.ReadReferent("PropsOutInfo.ppIntfData", &p); !s.ok()) return s;
  }
  for (size_t i = 0; i < count; ++i) {
    if (present[i] == 0) continue;
    Bytes data;
    if (auto s = ReadInterfacePointerBody(pr, "PropsOutInfo.ppIntfData", &data); !s.ok()) return s;
    if ((v.interfaces[i].hresult & 0x80000000u) != 0) continue;
    auto decoded = DecodeStandardObjRef(data);
    if (!decoded.ok()) return decoded.status();
    v.interfaces[i].objref = *std::move(decoded);
  }
  return v;
}

absl::StatusOr<Bytes> EncodeRemReleaseIn(const RemReleaseIn& v) {
  if (v.refs.empty() || v.refs.size() > kMaxInterfaceRefs) {
    return absl::InvalidArgumentError("RemRelease: 1 or more interface references");
  }
  NdrWriter w;
  WriteOrpcThis(w, v.orpc);
  w.WriteU16(static_cast<uint16_t>(v.refs.size()));
  w.WriteU32(static_cast<uint32_t>(v.refs.size()));
  for (const InterfaceRef& ref : v.refs) {
    w.WriteUuid(ref.ipid);
    w.WriteU32(static_cast<uint32_t>(ref.public_refs));
    w.WriteU32(static_cast<uint32_t>(ref.private_refs));
  }
  return w.Finish();
}

absl::StatusOr<RemReleaseIn> DecodeRemReleaseIn(ByteView stub) {
  NdrReader r(stub);
  RemReleaseIn v;
  uint16_t count = 0;
  uint32_t n = 0;
  if (auto s = ReadOrpcThis(r, &v.orpc); !s.ok()) return s;
  if (auto s = r.ReadU16("cInterfaceRefs", &count); !s.ok()) return s;
  if (auto s = r.ReadCount("InterfaceRefs count", 24, &n); !s.ok()) return s;
  if (n != count || n == 0 || n > kMaxInterfaceRefs) return Bad("RemRelease", "interface reference count");
  v.refs.resize(n);
  for (InterfaceRef& ref : v.refs) {
    uint32_t pub = 0, priv = 0;
    if (auto s = r.ReadUuid("REMINTERFACEREF.ipid", &ref.ipid); !s.ok()) return s;
    if (auto s = r.ReadU32("REMINTERFACEREF.cPublicRefs", &pub); !s.ok()) return s;
    if (auto s = r.ReadU32("REMINTERFACEREF.cPrivateRefs", &priv); !s.ok()) return s;
    ref.public_refs = static_cast<int32_t>(pub);
    ref.private_refs = static_cast<int32_t>(priv);
  }
  if (auto s = r.ExpectEnd("RemRelease request"); !s.ok()) return s;
  return v;
}

Bytes EncodeOrpcThatAndHresult(uint32_t hresult) {
  NdrWriter w;
  WriteOrpcThat(w, OrpcThat{});
  w.WriteU32(hresult);
  return w.Finish();
}

absl::StatusOr<uint32_t> DecodeOrpcThatAndHresult(ByteView stub, std::string_view what) {
  NdrReader r(stub);
  OrpcThat that;
  uint32_t hresult = 0;
  if (auto s = ReadOrpcThat(r, &that); !s.ok()) return s;
  if (auto s = r.ReadU32(absl::StrCat(rpc::AbslView(what), " return value"), &hresult); !s.ok()) return s;
  if (auto s = r.ExpectEnd(what); !s.ok()) return s;
  return hresult;
}

}  // namespace adcsc::dcom
