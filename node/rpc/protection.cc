#include "node/rpc/protection.h"

#include <algorithm>

namespace adcsc::rpc {

void ProtectPdu(ntlm::Session& session, uint8_t level, OutgoingPdu& pdu) {
  const AuthLayout& l = *pdu.auth;
  std::span<uint8_t> signed_part(pdu.bytes.data(), l.sign_length());
  const ntlm::Signature signature = level == authn_level::kPktPrivacy
                                        ? session.SealMessage(signed_part, l.seal_offset(), l.seal_length())
                                        : session.SignMessage(signed_part);
  std::copy(signature.begin(), signature.end(), pdu.bytes.begin() + static_cast<ptrdiff_t>(l.auth_value_offset));
}

absl::Status UnprotectPdu(ntlm::Session& session, uint8_t level, Bytes& pdu, size_t max_frag_length) {
  auto layout = LocateAuth(pdu, max_frag_length);
  if (!layout.ok()) return layout.status();
  std::span<uint8_t> signed_part(pdu.data(), layout->sign_length());
  ByteView signature(pdu.data() + layout->auth_value_offset, layout->auth_value_length);
  if (level == authn_level::kPktPrivacy) {
    return session.UnsealMessage(signed_part, layout->seal_offset(), layout->seal_length(), signature);
  }
  return session.VerifyMessage(signed_part, signature);
}

}  // namespace adcsc::rpc
