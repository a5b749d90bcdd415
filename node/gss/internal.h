// Private to node/gss: MIT GSS-API handles as RAII types, the mechanism OIDs and small
// conversions. Not for use outside this folder (its types are MIT's).
// Thread-safety: the handles are owned by one object at a time (move-only).
#pragma once

#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>

#include <string>
#include <utility>

#include "node/gss/mech.h"

namespace adcsc::gss::internal {

gss_OID MechOid(Mech mech);
// {krb5, SPNEGO}: credentials are acquired for both, so a context of either mech can use them.
gss_OID_set BothMechs();

// A gss_buffer_desc that MIT allocated (output tokens, display strings), released on scope exit.
class OwnedBuffer {
 public:
  OwnedBuffer() = default;
  ~OwnedBuffer();
  OwnedBuffer(const OwnedBuffer&) = delete;
  OwnedBuffer& operator=(const OwnedBuffer&) = delete;
  gss_buffer_t get() { return &buffer_; }
  Bytes ToBytes() const;
  std::string ToString() const;

 private:
  gss_buffer_desc buffer_{0, nullptr};
};

class Name {
 public:
  Name() = default;
  explicit Name(gss_name_t name) : name_(name) {}
  ~Name();
  Name(Name&& other) noexcept : name_(std::exchange(other.name_, GSS_C_NO_NAME)) {}
  Name& operator=(Name&& other) noexcept;
  gss_name_t get() const { return name_; }
  gss_name_t* out() { return &name_; }
  std::string Display() const;

 private:
  gss_name_t name_ = GSS_C_NO_NAME;
};

// A credential handle and, when this process made one for it, the memory ccache behind it
// (destroyed with the handle, so renewed-away TGTs do not pile up in the process).
class CredHandle {
 public:
  CredHandle(gss_cred_id_t cred, std::string owned_memory_ccache)
      : cred_(cred), owned_memory_ccache_(std::move(owned_memory_ccache)) {}
  ~CredHandle();
  CredHandle(const CredHandle&) = delete;
  CredHandle& operator=(const CredHandle&) = delete;
  gss_cred_id_t get() const { return cred_; }

 private:
  gss_cred_id_t cred_;
  std::string owned_memory_ccache_;
};

// The realm of user@REALM, or krb5.conf's default_realm when `principal` has none.
std::string RealmOf(const std::string& principal);

// A borrowed view of caller bytes as a gss_buffer_desc (GSS-API takes non-const pointers).
inline gss_buffer_desc View(ByteView bytes) {
  return gss_buffer_desc{bytes.size(), const_cast<uint8_t*>(bytes.data())};
}

}  // namespace adcsc::gss::internal
