// Configuration of the ADCS emulator (a TOML file), and its accounts file: who may log on with
// NTLM (DOMAIN\user and NT hash per line, as pwdump writes them). Every problem is reported
// at start-up with the file and key. Thread-safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "node/ca/local_ca.h"
#include "node/ntlm/ntlm.h"

namespace adcsc::emulator {

struct Account {
  std::string domain;
  std::string user;
  ntlm::Key16 nt_hash{};
};

// Knobs for drills; also changeable at run time through the admin socket.
struct Faults {
  std::chrono::milliseconds latency{0};  // added before every ICertPassage answer
  // Added to every NTLM logon: a Windows CA checks each logon with a domain controller
  // (NETLOGON pass-through), a network round trip this emulator does not otherwise have.
  std::chrono::milliseconds logon_latency{0};
  // Added after a submit is recorded, before its answer goes out: the window in which a
  // caller that dies leaves the CA with a request it never heard about.
  std::chrono::milliseconds submit_reply_latency{0};
  double failure_rate = 0;          // share of calls dropped unanswered (0..1)
  bool refuse_connections = false;  // close every new connection at once
  // The next N submits are taken by the CA (recorded, issued or pending as usual) and then
  // answered with an unsigned fault (nca_s_fault_cant_perform) instead of their result, or
  // their connection is dropped without an answer: the lost-answer cases a connector must
  // resolve by searching the CA, never by submitting again. Each submit so treated counts
  // one down.
  int fault_after_accept = 0;
  int drop_after_accept = 0;
  // The next N admin calls that change a request (ResubmitRequest, DenyRequest,
  // RevokeCertificate) are carried out, then their connection is dropped without an answer:
  // the CA changed, the caller never heard (each such call counts one down).
  int drop_admin_after_apply = 0;
};

struct EmulatorConfig {
  std::filesystem::path source;
  std::string listen_address = "127.0.0.1";
  uint16_t epm_port = 0;   // the endpoint mapper (135 on Windows); 0: any free port
  uint16_t icpr_port = 0;  // ICertPassage; 0: any free port (announced by the endpoint mapper)
  // The DCOM object exporter serving ICertAdminD(2) and IRemUnknown (a Windows CA's dynamic
  // DCOM port); 0: any free port (announced in the activation's OXID bindings). Activation
  // itself (IRemoteSCMActivator) is served on epm_port, as Windows serves it on 135.
  uint16_t dcom_port = 0;
  std::filesystem::path data_dir;
  std::filesystem::path admin_socket;  // default <data_dir>/admin.sock
  std::filesystem::path accounts_file;
  std::vector<Account> accounts;  // read from accounts_file
  // NTLM logons allowed (false plays a domain that blocks network NTLM).
  bool ntlm = true;
  // Kerberos (auth types 9 and 16) with this service keytab (the CA computer account's
  // host/<fqdn> key); empty: Kerberos binds are refused as an NTLM-only server would.
  std::filesystem::path kerberos_keytab;
  std::string kerberos_principal;  // the one principal of the keytab to accept for; empty: any
  // The domain a Kerberos caller is checked under (ca.enroll, permissions, "only the submitter
  // may retrieve"); empty: emulator.netbios_domain, as a Windows CA sees DOMAIN\user either way.
  std::string kerberos_realm_domain;
  ntlm::ServerNames names;       // what the NTLM CHALLENGE says about this "server"
  adcsc::ca::LocalCaOptions ca;  // the CA engine (name, key, templates)
  // DOMAIN\user (case-insensitive) allowed to request certificates from the CA; "*" for any
  // authenticated account. Others get CERTSRV_E_ENROLL_DENIED.
  std::vector<std::string> ca_enroll = {"*"};
  // DOMAIN\user (case-insensitive; "*" any) holding the CA's Officer right ("Issue and Manage
  // Certificates"): who may call ResubmitRequest, DenyRequest and RevokeCertificate. Others
  // get E_ACCESSDENIED. Empty (the default): nobody.
  std::vector<std::string> ca_officers;
  // Per template: who has Enroll. A template not listed here allows any account in ca_enroll.
  std::vector<std::pair<std::string, std::vector<std::string>>> template_enroll;
  Faults faults;
  int max_connections = 256;
};

absl::StatusOr<EmulatorConfig> LoadEmulatorConfig(const std::filesystem::path& path);

// "EXAMPLE\\svc:8846f7eaee8fb117ad06bdd830b7586c" per line; '#' starts a comment.
absl::StatusOr<std::vector<Account>> LoadAccounts(const std::filesystem::path& path);

}  // namespace adcsc::emulator
