// The GSS-API mechanisms adcsc speaks to ADCS, and their DCE/RPC auth types (MS-RPCE 2.2.1.1.7).
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace adcsc::gss {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

enum class Mech {
  kSpnego,    // RPC_C_AUTHN_GSS_NEGOTIATE (9): SPNEGO around krb5, what Windows clients use for ICPR
  kKerberos,  // RPC_C_AUTHN_GSS_KERBEROS (16): raw krb5 tokens
};

inline constexpr uint8_t kAuthTypeSpnego = 9;
inline constexpr uint8_t kAuthTypeKerberos = 16;

inline uint8_t DceAuthType(Mech mech) { return mech == Mech::kSpnego ? kAuthTypeSpnego : kAuthTypeKerberos; }
inline std::string_view MechName(Mech mech) { return mech == Mech::kSpnego ? "spnego" : "krb5"; }

}  // namespace adcsc::gss
