// `adcsc pki init`: creates the connector's server identity and the client identity Jamf Pro
// presents, like the original Windows installer did. No argument parsing here; the CLI fills
// PkiInitOptions and prints the result. Thread-safety: do not run two InitConnectorPki calls
// on the same output directory at once.
#pragma once

#include <filesystem>
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

}  // namespace adcsc::pki
