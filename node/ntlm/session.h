// NTLM2 session security (MS-NLMP 3.4.4.2, 3.4.5.2-3.4.5.3) for one authenticated connection:
// extended session security, 128-bit keys, key exchange. Shaped for connection-oriented
// DCE/RPC, where the whole PDU is signed but only the stub is sealed.
// Thread-safety: the outgoing side (Seal/Sign) and the incoming side (Unseal/Verify) use
// disjoint state, so one sending thread and one receiving thread may share a Session; two
// threads on the same side need external locking.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/ntlm/bytes.h"
#include "node/ntlm/legacy_crypto.h"

namespace adcsc::ntlm {

// NTLMSSP_MESSAGE_SIGNATURE with extended session security: version 1, 8-byte checksum,
// 4-byte sequence number.
inline constexpr size_t kSignatureBytes = 16;
using Signature = std::array<uint8_t, kSignatureBytes>;

enum class Direction { kClientToServer, kServerToClient };
enum class Role { kClient, kServer };

// SIGNKEY / SEALKEY for 128-bit extended session security: MD5 of the exported session key
// and the direction's magic constant.
absl::StatusOr<Key16> DeriveSignKey(const Key16& exported_session_key, Direction direction);
absl::StatusOr<Key16> DeriveSealKey(const Key16& exported_session_key, Direction direction);

class Session {
 public:
  // `role` picks which direction is outgoing: a client sends client-to-server.
  static absl::StatusOr<std::unique_ptr<Session>> Create(const Key16& exported_session_key, Role role);

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  // PKT_PRIVACY send: signs the plaintext `message` with the outgoing sequence number, then
  // RC4-encrypts message[seal_offset, seal_offset + seal_length) in place, then the checksum,
  // both on the outgoing keystream. Returns the signature to put in the auth verifier.
  // The region must lie inside `message` (a caller bug otherwise: the process aborts).
  Signature SealMessage(std::span<uint8_t> message, size_t seal_offset, size_t seal_length);

  // PKT_PRIVACY receive: decrypts the region in place, then checks `signature` against the
  // now-plaintext `message` and the incoming sequence number. A region outside `message` or a
  // signature that is not 16 bytes is INVALID_ARGUMENT and changes nothing. A signature that
  // does not verify is PERMISSION_DENIED; the region is then zeroed (never hand out
  // unauthenticated plaintext) and the incoming side stays unusable, as its keystream is
  // out of step with the peer's: drop the connection.
  absl::Status UnsealMessage(std::span<uint8_t> message, size_t seal_offset, size_t seal_length, ByteView signature);

  // PKT_INTEGRITY: signature only. With key exchange the checksum is still RC4-encrypted on
  // the outgoing / incoming keystream, so signing and sealing share one stream per direction.
  Signature SignMessage(ByteView message);
  absl::Status VerifyMessage(ByteView message, ByteView signature);

  uint32_t outgoing_sequence() const { return outgoing_.sequence; }
  uint32_t incoming_sequence() const { return incoming_.sequence; }

 private:
  struct DirectionState {
    Key16 sign_key{};
    Rc4 seal;
    // Wraps after 2^32 messages; harmless, as the RC4 stream never repeats with it.
    uint32_t sequence = 0;
  };

  Session(DirectionState outgoing, DirectionState incoming)
      : outgoing_(std::move(outgoing)), incoming_(std::move(incoming)) {}

  std::array<uint8_t, 8> Checksum(const DirectionState& state, ByteView message) const;
  Signature FinishOutgoing(std::array<uint8_t, 8> checksum);
  absl::Status CheckIncoming(ByteView plaintext_message, ByteView signature);

  DirectionState outgoing_;
  DirectionState incoming_;
  bool incoming_broken_ = false;
};

}  // namespace adcsc::ntlm
