// `adcsc pki init`: creates the connector's server identity and the client identity Jamf Pro
// presents, like the original Windows installer did; `adcsc pki rotate` makes their successors
// from what init wrote. No argument parsing here; the CLI fills the options and prints the
// result. Thread-safety: do not run two of these calls on the same output directory at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/pki/keys.h"

namespace adcsc::pki {

// File names inside PkiInitOptions::out_dir.
inline constexpr char kServerKeyFile[] = "server-key.pem";         // 0600, PKCS#8 PEM
inline constexpr char kServerCertDerFile[] = "adcs-proxy-ca.cer";  // DER, upload to Jamf Pro
inline constexpr char kServerCertPemFile[] = "adcs-proxy-ca.pem";  // PEM, for the node config
inline constexpr char kClientPfxFile[] = "client-cert.pfx";        // 0600, upload to Jamf Pro
inline constexpr char kClientCertPemFile[] = "client-cert.pem";    // public client certificate
inline constexpr char kClientPinFile[] = "client-cert.pin";        // SHA-256 pin + "\n"
// Written by `pki rotate` only.
inline constexpr char kClientCaBundleFile[] = "client-ca.pem";       // new + old server certificate
inline constexpr char kRotationSnippetFile[] = "api-rotation.toml";  // the [api] lines to set

struct PkiInitOptions {
  std::string fqdn;         // the connector's DNS name as Jamf Pro reaches it (or an IP)
  std::string jamf_pro_dn;  // the Jamf Pro host name: the client certificate's CN
  std::filesystem::path out_dir;
  int client_years = 10;
  int server_years = 10;
  KeyType key_type = KeyType::kEcP256;  // for both identities
  // When set, the PKCS#12 password is also written there (mode 0600, followed by "\n").
  std::filesystem::path password_file;
  bool force = false;  // replace existing output files
};

struct PkiInitResult {
  std::vector<std::filesystem::path> files;  // every file written, in order
  std::string client_pin;                    // SHA-256 of client-cert.pem's DER, 64 hex
  std::string server_pin;                    // SHA-256 of the server certificate, 64 hex
  std::string client_password;               // protects client-cert.pfx; show once, never log
};

// Creates `out_dir` (mode 0700) if absent, then writes:
//   server-key.pem     the server key (0600)
//   adcs-proxy-ca.cer  the server certificate, DER: self-signed CA:TRUE for CN=<fqdn>,
//   adcs-proxy-ca.pem  the same in PEM           SAN <fqdn>, EKU serverAuth+clientAuth
//   client-cert.pfx    PKCS#12 (0600) of the client key and certificate (CN=<jamf_pro_dn>,
//                      EKU clientAuth, signed by the server identity) with the server
//                      certificate as chain, under a random 20-character password
//   client-cert.pem    the client certificate (public)
//   client-cert.pin    its SHA-256 pin and a newline
// and the password file if asked. Unless `force`, fails before writing anything if any of
// these files exists, naming each.
absl::StatusOr<PkiInitResult> InitConnectorPki(const PkiInitOptions& options);

struct PkiRotateOptions {
  std::filesystem::path from_dir;  // what `pki init` (or an earlier rotate) wrote
  std::filesystem::path out_dir;   // the new identities; must not hold any output file yet
  std::string jamf_pro_dn;         // the new client certificate's CN; empty: the old one's
  int client_years = 10;
  int server_years = 10;
  KeyType key_type = KeyType::kEcP256;  // the new client key (and a new server key)
  // Keep the server key (default): the renewed server certificate has the old key and subject,
  // so the adcs-proxy-ca.cer Jamf Pro holds still verifies it and the switch has no window.
  // True: a new server key (after a compromise); Jamf Pro distrusts the nodes from the switch
  // until it has the new adcs-proxy-ca.cer.
  bool new_server_key = false;
  int overlap_days = 14;                    // the old client pin stays mapped at least this long
  std::filesystem::path password_file;      // as PkiInitOptions::password_file
  std::optional<int64_t> now_unix_seconds;  // unset: now
};

struct PkiRotateResult {
  std::vector<std::filesystem::path> files;  // every file written, in order
  std::string old_client_pin, client_pin;    // SHA-256 pins, 64 hex
  std::string client_password;               // protects the new client-cert.pfx; show once, never log
  bool server_key_kept = true;
  int64_t overlap_until_unix = 0;  // when the old pin stops being mapped: midnight UTC after the overlap
  std::string overlap_until;       // the same as a TOML date-time, "2027-01-15T00:00:00Z"
  std::string snippet;             // the [api] lines to set on every node (also in api-rotation.toml)
};

// Reads `from_dir`'s server-key.pem, adcs-proxy-ca.pem and client-cert.pem, creates `out_dir`
// (mode 0700) if absent, and writes there:
//   server-key.pem     the same server key (0600), or a new one with new_server_key
//   adcs-proxy-ca.cer  a renewed server certificate (DER; .pem the same): same subject, SANs
//   adcs-proxy-ca.pem  and EKUs, new serial and validity
//   client-ca.pem      the new server certificate, then the old one: api.client_ca_file
//                      during the overlap (both client identities chain to it)
//   client-cert.pfx    a new client identity for Jamf Pro (0600, new random password), signed
//   client-cert.pem    by the new server certificate, and its pin
//   client-cert.pin
//   api-rotation.toml  the [api] lines to set: old pin `until` the end of the overlap, new pin
// and the password file if asked. Never overwrites: fails before writing anything if any of
// these files exists, naming each. Refuses a server certificate that is not pki init's
// (self-signed, CN only, matching server-key.pem).
absl::StatusOr<PkiRotateResult> RotateConnectorPki(const PkiRotateOptions& options);

}  // namespace adcsc::pki
