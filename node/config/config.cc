#include "node/config/config.h"

#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "node/config/toml_reader.h"
#include "node/pki/absl_view.h"
#include "node/pki/cluster.h"
#include "node/pki/keys.h"
#include "node/text/address_prefix.h"
#include "toml++/toml.h"

namespace adcsc::node {
namespace {

// "ADDRESS:PORT" (IPv6 in brackets) from `table`[key], reported as `full`.
void ReadListen(TomlReader& r, const toml::table& table, std::string_view key, std::string_view full,
                std::string* address, uint16_t* port_out) {
  std::string listen;
  r.String(table, key, full, &listen, false);
  if (listen.empty()) return;
  auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    r.Error(full, "expected ADDRESS:PORT, e.g. \"0.0.0.0:8443\" or \"[::]:8443\"");
    return;
  }
  std::string addr = listen.substr(0, colon);
  if (addr.size() >= 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    r.Error(full, absl::StrCat("bad port in \"", listen, "\""));
    return;
  }
  *address = addr.empty() ? "0.0.0.0" : addr;
  *port_out = static_cast<uint16_t>(port);
}

void CheckPrivateKeyMode(TomlReader& r, std::string_view key, const std::filesystem::path& path) {
  struct stat st {};
  if (path.empty()) return;
  if (::stat(path.c_str(), &st) != 0) {
    r.Error(key, absl::StrCat("cannot read ", path.string(), " (does it exist, and may the service user read it?)"));
    return;
  }
  if ((st.st_mode & 077) != 0) {
    r.Error(key, absl::StrFormat("%s is readable by group or others (mode %04o); run: chmod 600 %s", path.string(),
                                 st.st_mode & 07777, path.string()));
  }
}

void CheckReadable(TomlReader& r, std::string_view key, const std::filesystem::path& path) {
  if (path.empty()) return;
  std::ifstream f(path);
  if (!f)
    r.Error(key, absl::StrCat("cannot read ", path.string(), " (does it exist, and may the service user read it?)"));
}

// A list of certificate pins (SHA-256, hex, any case or separators), normalised; each bad
// entry is reported with its index. Returns how many entries the list had.
size_t ReadPins(TomlReader& r, const toml::table& t, std::string_view key, std::string_view full,
                std::vector<std::string>* out, std::vector<size_t>* indices = nullptr) {
  std::vector<std::string> pins;
  r.Strings(t, key, full, &pins);
  for (size_t i = 0; i < pins.size(); ++i) {
    auto pin = adcsc::pki::NormalizePin(pins[i]);
    if (!pin.ok()) {
      r.Error(absl::StrCat(std::string(full), "[", i, "]"), pki::StdView(pin.status().message()));
    } else {
      out->push_back(*pin);
      if (indices != nullptr) indices->push_back(i);
    }
  }
  return pins.size();
}

// Seconds since the epoch of a calendar date and time read as UTC.
int64_t UtcSeconds(const toml::date& date, const toml::time& time) {
  struct tm t {};
  t.tm_year = date.year - 1900;
  t.tm_mon = date.month - 1;
  t.tm_mday = date.day;
  t.tm_hour = time.hour;
  t.tm_min = time.minute;
  t.tm_sec = time.second;
  return static_cast<int64_t>(timegm(&t));
}

// api.client_pins: each entry a pin (as ReadPins takes it) or, during a rotation's overlap,
// `{ pin = "...", until = 2027-01-15T00:00:00Z }` — the pin is mapped until that instant
// (an offset date-time, or a bare date meaning its midnight UTC). Returns how many entries
// the list had.
size_t ReadClientPins(TomlReader& r, const toml::table& api, ApiConfig* out) {
  const toml::node* n = api.get("client_pins");
  if (n == nullptr) return 0;
  const toml::array* list = n->as_array();
  if (list == nullptr) {
    r.Error("api.client_pins", "must be an array of pins (strings) or { pin = \"...\", until = <date-time> } tables");
    return 0;
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string key = absl::StrCat("api.client_pins[", i, "]");
    const toml::node& entry = *list->get(i);
    std::string text;
    std::optional<int64_t> until;
    if (auto s = entry.value<std::string>(); s && entry.is_string()) {
      text = *s;
    } else if (const toml::table* t = entry.as_table()) {
      r.CheckKnown(*t, key + ".", {"pin", "until"});
      r.String(*t, "pin", key + ".pin", &text, true);
      const toml::node* u = t->get("until");
      if (u == nullptr) {
        r.Error(
            key + ".until",
            "missing: the end of the overlap, e.g. until = 2027-01-15T00:00:00Z (or list the pin as a plain string)");
      } else if (const auto* dt = u->as_date_time(); dt != nullptr && dt->get().offset.has_value()) {
        const toml::date_time& v = dt->get();
        until = UtcSeconds(v.date, v.time) - int64_t{v.offset->minutes} * 60;
      } else if (const auto* d = u->as_date(); d != nullptr) {
        until = UtcSeconds(d->get(), toml::time{});
      } else {
        r.Error(key + ".until",
                "must be a date-time with its offset (2027-01-15T00:00:00Z) or a date (2027-01-15, midnight UTC), "
                "unquoted");
      }
    } else {
      r.Error(key, "must be a pin (a string) or { pin = \"...\", until = <date-time> }");
      continue;
    }
    if (text.empty()) continue;
    auto pin = adcsc::pki::NormalizePin(text);
    if (!pin.ok()) {
      r.Error(key, pki::StdView(pin.status().message()));
      continue;
    }
    if (std::find(out->client_pins.begin(), out->client_pins.end(), *pin) != out->client_pins.end()) {
      // A plain pin twice is harmless (and was always accepted); with an `until` it is unclear
      // whether the pin ends.
      if (until.has_value() || out->client_pin_until.count(*pin) != 0) {
        r.Error(key, "this pin is listed twice, once with an until: list it once");
      }
      continue;
    }
    out->client_pins.push_back(*pin);
    if (until.has_value()) out->client_pin_until[*pin] = *until;
  }
  return list->size();
}

// A list of glob patterns (node/pki/csr_policy.h) at `table`[key]; each bad one is reported
// with its index. Absent: `out` keeps its default.
void ReadPatterns(TomlReader& r, const toml::table& t, std::string_view key, const std::string& full, bool subject,
                  std::vector<std::string>* out) {
  r.Strings(t, key, full, out);
  for (size_t i = 0; t.contains(key) && i < out->size(); ++i) {
    if (absl::Status s = pki::CheckPattern((*out)[i], subject); !s.ok()) {
      r.Error(absl::StrCat(full, "[", i, "]"), pki::StdView(s.message()));
    }
  }
}

// The signing policy keys of one [[ca.allow]] entry (`prefix` is e.g. "ca.allow[0].").
void ReadSigningPolicy(TomlReader& r, const toml::table& t, const std::string& prefix, pki::CsrPolicy* out) {
  ReadPatterns(r, t, "subject_patterns", prefix + "subject_patterns", true, &out->subject_patterns);
  if (out->subject_patterns.empty()) {
    r.Error(prefix + "subject_patterns", "an empty list refuses every request (use [\"**\"] for any subject)");
  }
  ReadPatterns(r, t, "san_dns", prefix + "san_dns", false, &out->san_dns);
  ReadPatterns(r, t, "san_email", prefix + "san_email", false, &out->san_email);
  ReadPatterns(r, t, "san_uri", prefix + "san_uri", false, &out->san_uri);
  ReadPatterns(r, t, "san_upn", prefix + "san_upn", false, &out->san_upn);
  ReadPatterns(r, t, "san_ip", prefix + "san_ip", false, &out->san_ip);
  for (size_t i = 0; i < out->san_uri.size(); ++i) {
    if (absl::StartsWithIgnoreCase(out->san_uri[i], "tag:microsoft.com")) {
      r.Error(absl::StrCat(prefix, "san_uri[", i, "]"),
              "SID URIs (tag:microsoft.com,2022-09-14:sid:...) are allowed with allow_sid_uri = true, not by pattern");
    }
  }
  r.Bool(t, "allow_sid_uri", prefix + "allow_sid_uri", &out->allow_sid_uri);
  r.Strings(t, "key_types", prefix + "key_types", &out->key_types);
  for (size_t i = 0; i < out->key_types.size(); ++i) {
    std::string& type = out->key_types[i];
    type = absl::AsciiStrToLower(type);
    if (type != "rsa" && type != "ec" && type != "ed25519" && type != "ed448") {
      r.Error(absl::StrCat(prefix, "key_types[", i, "]"),
              absl::StrCat("unknown key type \"", type, "\" (use rsa, ec, ed25519 or ed448)"));
    }
  }
  if (out->key_types.empty()) r.Error(prefix + "key_types", "an empty list refuses every request");
  r.Int(t, "min_rsa_bits", prefix + "min_rsa_bits", &out->min_rsa_bits, 1024, 16384);
  r.Int(t, "max_rsa_bits", prefix + "max_rsa_bits", &out->max_rsa_bits, 1024, 16384);
  if (out->min_rsa_bits > out->max_rsa_bits) {
    r.Error(prefix + "min_rsa_bits", absl::StrCat("is ", out->min_rsa_bits, ", more than max_rsa_bits (",
                                                  out->max_rsa_bits, "): no RSA key could pass"));
  }
  r.Strings(t, "ec_curves", prefix + "ec_curves", &out->ec_curves);
  for (size_t i = 0; i < out->ec_curves.size(); ++i) {
    std::string canonical = pki::CanonicalCurveName(out->ec_curves[i]);
    if (canonical.empty()) {
      r.Error(absl::StrCat(prefix, "ec_curves[", i, "]"),
              absl::StrCat("unknown curve \"", out->ec_curves[i], "\" (use P-256, P-384 or P-521)"));
    }
    out->ec_curves[i] = std::move(canonical);
  }
  if (out->ec_curves.empty() && std::find(out->key_types.begin(), out->key_types.end(), "ec") != out->key_types.end()) {
    r.Error(prefix + "ec_curves", "is empty while key_types allows ec: list the curves, or drop ec from key_types");
  }
  std::string validity = out->requested_validity == pki::RequestedValidity::kRefuse ? "refuse" : "ignore";
  r.String(t, "requested_validity", prefix + "requested_validity", &validity, false);
  if (validity == "refuse") {
    out->requested_validity = pki::RequestedValidity::kRefuse;
  } else if (validity == "ignore") {
    out->requested_validity = pki::RequestedValidity::kIgnore;
  } else {
    r.Error(prefix + "requested_validity", absl::StrCat("unknown value \"", validity, "\" (use refuse or ignore)"));
  }
}

void ReadApi(TomlReader& r, const toml::table& api, ApiConfig* out) {
  r.CheckKnown(api, "api.",
               {"listen",
                "cert_file",
                "key_file",
                "client_ca_file",
                "client_pins",
                "trusted_proxy_pins",
                "max_body_bytes",
                "handshake_timeout_ms",
                "header_timeout_ms",
                "idle_timeout_ms",
                "request_timeout_ms",
                "max_connections",
                "shutdown_grace_ms",
                "io_threads",
                "worker_threads",
                "session_cache_size",
                "session_timeout_s",
                "reserved_connections",
                "max_connections_per_source",
                "refusals_per_source_per_s",
                "refusal_burst",
                "source_limit_exempt",
                "refusal_log_interval_s",
                "ca_unreachable_status"});
  ReadListen(r, api, "listen", "api.listen", &out->listen_address, &out->listen_port);
  r.Path(api, "cert_file", "api.cert_file", &out->cert_file, true);
  r.Path(api, "key_file", "api.key_file", &out->key_file, true);
  r.Path(api, "client_ca_file", "api.client_ca_file", &out->client_ca_file, true);
  CheckReadable(r, "api.cert_file", out->cert_file);
  CheckPrivateKeyMode(r, "api.key_file", out->key_file);
  CheckReadable(r, "api.client_ca_file", out->client_ca_file);
  if (ReadClientPins(r, api, out) == 0) {
    r.Error("api.client_pins", "at least one client certificate pin is required (see `adcsc pki init`)");
  }
  std::vector<size_t> proxy_indices;  // each pin's index in the file, for messages
  ReadPins(r, api, "trusted_proxy_pins", "api.trusted_proxy_pins", &out->trusted_proxy_pins, &proxy_indices);
  for (size_t i = 0; i < out->trusted_proxy_pins.size(); ++i) {
    const std::string& pin = out->trusted_proxy_pins[i];
    if (std::find(out->client_pins.begin(), out->client_pins.end(), pin) == out->client_pins.end()) {
      r.Error(absl::StrCat("api.trusted_proxy_pins[", proxy_indices[i], "]"),
              "a trusted proxy must also be in api.client_pins (it connects with that certificate)");
    }
  }
  r.Int(api, "max_body_bytes", "api.max_body_bytes", &out->max_body_bytes, 1024, 16 * 1024 * 1024);
  r.Millis(api, "handshake_timeout_ms", "api.handshake_timeout_ms", &out->handshake_timeout);
  r.Millis(api, "header_timeout_ms", "api.header_timeout_ms", &out->header_timeout);
  r.Millis(api, "idle_timeout_ms", "api.idle_timeout_ms", &out->idle_timeout);
  r.Millis(api, "request_timeout_ms", "api.request_timeout_ms", &out->request_timeout);
  r.Millis(api, "shutdown_grace_ms", "api.shutdown_grace_ms", &out->shutdown_grace);
  r.Int(api, "max_connections", "api.max_connections", &out->max_connections, 1, 1'000'000);
  // Unset: an eighth of the connections, kept for mapped clients.
  out->reserved_connections = out->max_connections / 8;
  r.Int(api, "reserved_connections", "api.reserved_connections", &out->reserved_connections, 0, 1'000'000);
  if (out->reserved_connections >= out->max_connections) {
    r.Error("api.reserved_connections", absl::StrCat("must be below api.max_connections (", out->max_connections,
                                                     "): the rest is where a new connection waits for its handshake"));
  }
  r.Int(api, "max_connections_per_source", "api.max_connections_per_source", &out->max_connections_per_source, 1,
        1'000'000);
  r.Int(api, "refusals_per_source_per_s", "api.refusals_per_source_per_s", &out->refusals_per_source_per_s, 1,
        1'000'000);
  r.Int(api, "refusal_burst", "api.refusal_burst", &out->refusal_burst, 1, 1'000'000);
  r.Strings(api, "source_limit_exempt", "api.source_limit_exempt", &out->source_limit_exempt);
  int64_t refusal_log_interval = out->refusal_log_interval.count();
  r.Int(api, "refusal_log_interval_s", "api.refusal_log_interval_s", &refusal_log_interval, 0, 86400);
  out->refusal_log_interval = std::chrono::seconds(refusal_log_interval);
  r.Int(api, "ca_unreachable_status", "api.ca_unreachable_status", &out->ca_unreachable_status, 200, 503);
  if (out->ca_unreachable_status != 200 && out->ca_unreachable_status != 503) {
    r.Error("api.ca_unreachable_status",
            absl::StrCat("must be 200 (INTERNAL_ERROR in the body, as the original connector answered) or 503 "
                         "(SERVICE_UNAVAILABLE, for a load balancer's L7 retry), not ",
                         out->ca_unreachable_status));
  }
  for (size_t i = 0; i < out->source_limit_exempt.size(); ++i) {
    if (!text::ParseAddressPrefix(out->source_limit_exempt[i]).ok()) {
      r.Error(absl::StrCat("api.source_limit_exempt[", i, "]"),
              absl::StrCat("\"", out->source_limit_exempt[i],
                           "\" is not an address or prefix (write 192.0.2.10, 192.0.2.0/24 or 2001:db8::/64)"));
    }
  }
  r.Int(api, "io_threads", "api.io_threads", &out->io_threads, 0, 256);
  r.Int(api, "worker_threads", "api.worker_threads", &out->worker_threads, 0, 1024);
  r.Int(api, "session_cache_size", "api.session_cache_size", &out->session_cache_size, 0, 10'000'000);
  int64_t session_timeout = out->session_timeout.count();
  r.Int(api, "session_timeout_s", "api.session_timeout_s", &session_timeout, 1, 7 * 86400);
  out->session_timeout = std::chrono::seconds(session_timeout);
}

void ReadLog(TomlReader& r, const toml::table& log, LogConfig* out) {
  r.CheckKnown(log, "log.", {"level", "file", "access_log"});
  r.String(log, "level", "log.level", &out->level, false);
  if (out->level != "debug" && out->level != "info" && out->level != "warn" && out->level != "error") {
    r.Error("log.level", absl::StrCat("unknown level \"", out->level, "\" (use debug, info, warn or error)"));
  }
  r.Path(log, "file", "log.file", &out->file, false);
  r.Path(log, "access_log", "log.access_log", &out->access_log, false);
}

void ReadIcpr(TomlReader& r, const toml::table& ca, CaConfig* out) {
  const size_t slash = out->identity.find('\\');
  if (!out->identity.empty() && (slash == std::string::npos || slash == 0 || slash + 1 == out->identity.size() ||
                                 out->identity.find('\\', slash + 1) != std::string::npos)) {
    r.Error("ca.identity",
            "for backend \"icpr\" this is the service account as DOMAIN\\user (in TOML: \"EXAMPLE\\\\svc-adcsc\")");
  }
  const toml::table* t = r.Table(ca, "icpr", "ca.icpr", true);
  if (t == nullptr) return;
  IcprConfig& icpr = out->icpr;
  r.CheckKnown(*t, "ca.icpr.",
               {"auth", "password_file", "nt_hash_file", "workstation", "keytab", "ccache", "kerberos_principal", "spn",
                "kerberos_mechanism", "krb5_conf", "ticket_renew_margin_s", "epm_port", "connect_timeout_ms",
                "call_timeout_ms", "max_idle_connections"});
  r.String(*t, "auth", "ca.icpr.auth", &icpr.auth, false);
  r.Path(*t, "password_file", "ca.icpr.password_file", &icpr.password_file, false);
  r.Path(*t, "nt_hash_file", "ca.icpr.nt_hash_file", &icpr.nt_hash_file, false);
  r.Path(*t, "keytab", "ca.icpr.keytab", &icpr.keytab, false);
  r.String(*t, "ccache", "ca.icpr.ccache", &icpr.ccache, false);
  r.String(*t, "kerberos_principal", "ca.icpr.kerberos_principal", &icpr.kerberos_principal, false);
  r.String(*t, "spn", "ca.icpr.spn", &icpr.spn, false);
  r.String(*t, "kerberos_mechanism", "ca.icpr.kerberos_mechanism", &icpr.kerberos_mechanism, false);
  r.Path(*t, "krb5_conf", "ca.icpr.krb5_conf", &icpr.krb5_conf, false);
  int64_t margin = icpr.ticket_renew_margin.count();
  r.Int(*t, "ticket_renew_margin_s", "ca.icpr.ticket_renew_margin_s", &margin, 0, 86'400);
  icpr.ticket_renew_margin = std::chrono::seconds(margin);

  const bool kerberos_source = !icpr.keytab.empty() || !icpr.ccache.empty();
  if (icpr.auth.empty()) icpr.auth = kerberos_source ? "negotiate" : "ntlm";
  const bool ntlm_secret = !icpr.password_file.empty() || !icpr.nt_hash_file.empty();
  if (!icpr.password_file.empty() && !icpr.nt_hash_file.empty()) {
    r.Error("ca.icpr", "set at most one of password_file and nt_hash_file (the service account's secret)");
  }
  if (!icpr.keytab.empty() && !icpr.ccache.empty()) {
    r.Error("ca.icpr", "set at most one of keytab and ccache (where the Kerberos ticket comes from)");
  }
  if (icpr.auth == "ntlm") {
    if (!ntlm_secret) {
      r.Error("ca.icpr",
              "auth \"ntlm\" needs password_file or nt_hash_file (the service account's secret, in a 0600 file)");
    }
  } else if (icpr.auth == "kerberos" || icpr.auth == "negotiate") {
    if (!kerberos_source && icpr.password_file.empty()) {
      r.Error("ca.icpr", absl::StrCat("auth \"", icpr.auth,
                                      "\" needs a Kerberos credential: keytab, ccache or password_file (an NT hash "
                                      "cannot get a Kerberos ticket)"));
    }
  } else {
    r.Error("ca.icpr.auth", absl::StrCat("unknown mechanism \"", icpr.auth, "\" (use kerberos, negotiate or ntlm)"));
  }
  if (icpr.kerberos_mechanism != "spnego" && icpr.kerberos_mechanism != "krb5") {
    r.Error("ca.icpr.kerberos_mechanism",
            absl::StrCat("unknown mechanism \"", icpr.kerberos_mechanism, "\" (use spnego or krb5)"));
  }
  if (icpr.spn.empty() || icpr.spn.find_first_of(" \t\"") != std::string::npos) {
    r.Error("ca.icpr.spn", "the CA's service principal, e.g. \"host/{host}\" or \"host/ca01.example.com@EXAMPLE.COM\"");
  }
  if (!icpr.kerberos_principal.empty() && icpr.kerberos_principal.find_first_of(" \t\"\\") != std::string::npos) {
    r.Error("ca.icpr.kerberos_principal", "a Kerberos principal such as \"svc-adcsc@EXAMPLE.COM\"");
  }
  CheckPrivateKeyMode(r, "ca.icpr.password_file", icpr.password_file);
  CheckPrivateKeyMode(r, "ca.icpr.nt_hash_file", icpr.nt_hash_file);
  CheckPrivateKeyMode(r, "ca.icpr.keytab", icpr.keytab);
  CheckReadable(r, "ca.icpr.krb5_conf", icpr.krb5_conf);
  r.String(*t, "workstation", "ca.icpr.workstation", &icpr.workstation, false);
  if (icpr.workstation.size() > 15) r.Error("ca.icpr.workstation", "a NetBIOS name has at most 15 characters");
  r.Int(*t, "epm_port", "ca.icpr.epm_port", &icpr.epm_port, 1, 65535);
  r.Millis(*t, "connect_timeout_ms", "ca.icpr.connect_timeout_ms", &icpr.connect_timeout);
  r.Millis(*t, "call_timeout_ms", "ca.icpr.call_timeout_ms", &icpr.call_timeout);
  r.Int(*t, "max_idle_connections", "ca.icpr.max_idle_connections", &icpr.max_idle_connections, 0, 1024);
}

void ReadCa(TomlReader& r, const toml::table& ca, const std::filesystem::path& data_dir, CaConfig* out) {
  r.CheckKnown(ca, "ca.",
               {"backend", "identity", "dedupe_window_s", "in_flight_wait_ms", "recovery_scan_limit", "submit_lease_ms",
                "allow", "local", "icpr"});
  r.String(ca, "backend", "ca.backend", &out->backend, false);
  if (out->backend != "local" && out->backend != "icpr") {
    r.Error("ca.backend", absl::StrCat("unknown backend \"", out->backend, "\" (use \"icpr\" for ADCS or \"local\")"));
  }
  r.String(ca, "identity", "ca.identity", &out->identity, true);
  if (out->backend == "icpr") ReadIcpr(r, ca, out);
  int64_t window = out->dedupe_window.count();
  r.Int(ca, "dedupe_window_s", "ca.dedupe_window_s", &window, 0, 30LL * 86400);
  out->dedupe_window = std::chrono::seconds(window);
  int64_t in_flight_wait = out->in_flight_wait.count();
  r.Int(ca, "in_flight_wait_ms", "ca.in_flight_wait_ms", &in_flight_wait, 0, 300'000);
  out->in_flight_wait = std::chrono::milliseconds(in_flight_wait);
  int64_t scan_limit = out->recovery_scan_limit;
  r.Int(ca, "recovery_scan_limit", "ca.recovery_scan_limit", &scan_limit, 0, 100'000);
  out->recovery_scan_limit = static_cast<int>(scan_limit);
  int64_t lease = out->submit_lease.count();
  r.Int(ca, "submit_lease_ms", "ca.submit_lease_ms", &lease, 1'000, 600'000);
  out->submit_lease = std::chrono::milliseconds(lease);

  const toml::node* allow = ca.get("allow");
  const toml::array* arr = allow ? allow->as_array() : nullptr;
  if (arr == nullptr || arr->empty()) {
    r.Error("ca.allow", "at least one [[ca.allow]] entry (dc, ca) is required: the connector only talks to listed CAs");
  } else {
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string key = absl::StrCat("ca.allow[", i, "]");
      const toml::table* t = (*arr)[i].as_table();
      if (t == nullptr) {
        r.Error(key, "must be a table with dc, ca, optional templates and signing policy keys");
        continue;
      }
      r.CheckKnown(
          *t, key + ".",
          {"dc", "ca", "templates", "ca_cert_file", "subject_patterns", "san_dns", "san_email", "san_uri", "san_upn",
           "san_ip", "allow_sid_uri", "key_types", "min_rsa_bits", "max_rsa_bits", "ec_curves", "requested_validity"});
      AllowedCa entry;
      entry.key = key;
      r.String(*t, "dc", key + ".dc", &entry.dc, true);
      r.String(*t, "ca", key + ".ca", &entry.ca, true);
      r.Strings(*t, "templates", key + ".templates", &entry.templates);
      r.Path(*t, "ca_cert_file", key + ".ca_cert_file", &entry.ca_cert_file, false);
      CheckReadable(r, key + ".ca_cert_file", entry.ca_cert_file);
      ReadSigningPolicy(r, *t, key + ".", &entry.policy);
      for (const AllowedCa& earlier : out->allow) {
        if (!entry.dc.empty() && absl::EqualsIgnoreCase(earlier.dc, entry.dc) && earlier.ca == entry.ca) {
          r.Error(key, absl::StrCat("lists ", entry.dc, "\\", entry.ca, " again (as ", earlier.key,
                                    " does); one entry per CA, with one signing policy"));
        }
      }
      out->allow.push_back(std::move(entry));
    }
  }

  if (out->backend == "local") {
    adcsc::ca::LocalCaOptions& local = out->local;
    local.dir = data_dir / "local-ca";
    if (!out->allow.empty()) local.ca_name = out->allow.front().ca;
    const toml::node* ln = ca.get("local");
    if (ln == nullptr || !ln->is_table()) {
      r.Error("ca.local", "missing section [ca.local] (required for backend \"local\")");
      return;
    }
    const toml::table& lt = *ln->as_table();
    r.CheckKnown(lt, "ca.local.",
                 {"dir", "ca_name", "common_name", "key_type", "ca_years", "durable", "default_template", "templates"});
    r.Path(lt, "dir", "ca.local.dir", &local.dir, false);
    r.String(lt, "ca_name", "ca.local.ca_name", &local.ca_name, false);
    r.String(lt, "common_name", "ca.local.common_name", &local.common_name, false);
    std::string key_type = "p256";
    r.String(lt, "key_type", "ca.local.key_type", &key_type, false);
    auto kt = adcsc::pki::ParseKeyType(key_type);
    if (!kt.ok()) {
      r.Error("ca.local.key_type", pki::StdView(kt.status().message()));
    } else {
      local.key_type = *kt;
    }
    r.Int(lt, "ca_years", "ca.local.ca_years", &local.ca_years, 1, 100);
    r.Bool(lt, "durable", "ca.local.durable", &local.durable);
    r.String(lt, "default_template", "ca.local.default_template", &local.default_template, false);
    ReadLocalCaTemplates(r, lt, "templates", "ca.local.templates", &local);
    if (r.ok()) {
      // The engine's own checks (EKU names, duplicate templates, ...), one per line.
      if (auto v = adcsc::ca::ValidateLocalCaOptions(local); !v.ok()) {
        for (absl::string_view line : absl::StrSplit(v.message(), '\n')) r.Error("ca.local", pki::StdView(line));
      }
    }
  }
}

void ReadOps(TomlReader& r, const toml::table& t, const ApiConfig& api, OpsConfig* out) {
  out->enabled = true;
  r.CheckKnown(t, "ops.",
               {"listen", "tls", "cert_file", "key_file", "probe_interval_ms", "max_store_write_ms", "max_connections",
                "admin_ca_file", "admin_pins"});
  if (t.contains("listen")) ReadListen(r, t, "listen", "ops.listen", &out->listen_address, &out->listen_port);
  r.Bool(t, "tls", "ops.tls", &out->tls);
  r.Path(t, "cert_file", "ops.cert_file", &out->cert_file, false);
  r.Path(t, "key_file", "ops.key_file", &out->key_file, false);
  r.Millis(t, "probe_interval_ms", "ops.probe_interval_ms", &out->probe_interval);
  r.Millis(t, "max_store_write_ms", "ops.max_store_write_ms", &out->max_store_write);
  if (out->cert_file.empty()) out->cert_file = api.cert_file;
  if (out->key_file.empty()) out->key_file = api.key_file;
  if (out->tls && t.contains("cert_file")) CheckReadable(r, "ops.cert_file", out->cert_file);
  // The API key was checked under api.key_file; a key of the ops port's own gets the same check.
  if (out->tls && t.contains("key_file")) CheckPrivateKeyMode(r, "ops.key_file", out->key_file);
  r.Int(t, "max_connections", "ops.max_connections", &out->max_connections, 1, 100'000);
  if (out->probe_interval < std::chrono::milliseconds(100)) r.Error("ops.probe_interval_ms", "must be at least 100");
  if (out->max_store_write < std::chrono::milliseconds(100)) {
    r.Error("ops.max_store_write_ms", "must be at least 100 (a healthy disk's fsync takes milliseconds)");
  }
  r.Path(t, "admin_ca_file", "ops.admin_ca_file", &out->admin_ca_file, false);
  ReadPins(r, t, "admin_pins", "ops.admin_pins", &out->admin_pins);
  if (!out->admin_pins.empty()) {
    if (!out->tls) r.Error("ops.admin_pins", "the admin channel needs ops.tls = true");
    if (out->admin_ca_file.empty()) {
      r.Error("ops.admin_ca_file", "required with ops.admin_pins: the CA administrators' certificates chain to");
    } else {
      CheckReadable(r, "ops.admin_ca_file", out->admin_ca_file);
    }
  }
}

void ReadCluster(TomlReader& r, const toml::table& t, const std::string& node_id, ClusterConfig* out) {
  out->enabled = true;
  r.CheckKnown(t, "cluster.",
               {"id", "listen", "ca_file", "cert_file", "key_file", "peers", "write_quorum", "on_quorum_loss",
                "quorum_timeout_ms", "anti_entropy_interval_ms", "lookup_timeout_ms", "allow_fault_injection"});
  r.String(t, "id", "cluster.id", &out->id, true);
  if (!out->id.empty()) {
    if (auto s = pki::CheckClusterLabel(out->id, "cluster ID"); !s.ok())
      r.Error("cluster.id", pki::StdView(s.message()));
  }
  if (!node_id.empty()) {
    if (auto s = pki::CheckClusterLabel(node_id, "node ID"); !s.ok()) {
      r.Error("node.id", absl::StrCat(s.message(), " (required in a cluster)"));
    }
  }
  ReadListen(r, t, "listen", "cluster.listen", &out->listen_address, &out->listen_port);
  r.Path(t, "ca_file", "cluster.ca_file", &out->ca_file, true);
  r.Path(t, "cert_file", "cluster.cert_file", &out->cert_file, true);
  r.Path(t, "key_file", "cluster.key_file", &out->key_file, true);
  CheckReadable(r, "cluster.ca_file", out->ca_file);
  CheckReadable(r, "cluster.cert_file", out->cert_file);
  CheckPrivateKeyMode(r, "cluster.key_file", out->key_file);
  const toml::node* peers = t.get("peers");
  const toml::array* arr = peers ? peers->as_array() : nullptr;
  if (arr == nullptr) {
    r.Error("cluster.peers", "at least one [[cluster.peers]] entry (id, address) is required in a cluster");
  } else {
    std::set<std::string> seen;
    for (size_t i = 0; i < arr->size(); ++i) {
      const std::string key = absl::StrCat("cluster.peers[", i, "]");
      const toml::table* p = (*arr)[i].as_table();
      if (p == nullptr) {
        r.Error(key, "must be a table with id and address");
        continue;
      }
      r.CheckKnown(*p, key + ".", {"id", "address"});
      PeerConfig peer;
      r.String(*p, "id", key + ".id", &peer.id, true);
      r.String(*p, "address", key + ".address", &peer.address, true);
      if (!peer.id.empty()) {
        if (peer.id == node_id) r.Error(key + ".id", "is this node's own id; list only the other nodes");
        if (!seen.insert(peer.id).second) r.Error(key + ".id", absl::StrCat("\"", peer.id, "\" is listed twice"));
      }
      const size_t colon = peer.address.rfind(':');
      uint32_t port = 0;
      if (!peer.address.empty() &&
          (colon == std::string::npos || !absl::SimpleAtoi(peer.address.substr(colon + 1), &port) || port == 0 ||
           port > 65535)) {
        r.Error(key + ".address", absl::StrCat("expected HOST:PORT, got \"", peer.address, "\""));
      }
      out->peers.push_back(std::move(peer));
    }
  }
  r.Int(t, "write_quorum", "cluster.write_quorum", &out->write_quorum, 0, 1000);
  if (out->write_quorum > static_cast<int>(out->peers.size()) + 1) {
    r.Error("cluster.write_quorum",
            absl::StrCat("is ", out->write_quorum, " but the cluster has only ", out->peers.size() + 1, " nodes"));
  }
  r.String(t, "on_quorum_loss", "cluster.on_quorum_loss", &out->on_quorum_loss, false);
  if (out->on_quorum_loss != "serve" && out->on_quorum_loss != "refuse") {
    r.Error("cluster.on_quorum_loss",
            absl::StrCat("unknown policy \"", out->on_quorum_loss, "\" (use serve or refuse)"));
  }
  r.Millis(t, "quorum_timeout_ms", "cluster.quorum_timeout_ms", &out->quorum_timeout);
  r.Millis(t, "anti_entropy_interval_ms", "cluster.anti_entropy_interval_ms", &out->anti_entropy_interval);
  r.Millis(t, "lookup_timeout_ms", "cluster.lookup_timeout_ms", &out->lookup_timeout);
  r.Bool(t, "allow_fault_injection", "cluster.allow_fault_injection", &out->allow_fault_injection);
}

}  // namespace

const AllowedCa* Config::FindAllowedCa(std::string_view dc, std::string_view ca_name) const {
  return node::FindAllowedCa(ca.allow, dc, ca_name);
}

const AllowedCa* FindAllowedCa(const std::vector<AllowedCa>& allow, std::string_view dc, std::string_view ca_name) {
  for (const AllowedCa& a : allow) {
    if (absl::EqualsIgnoreCase(a.dc, pki::AbslView(dc)) && a.ca == ca_name) return &a;
  }
  return nullptr;
}

absl::StatusOr<Config> ParseConfig(std::string_view toml_text, const std::filesystem::path& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name.string());
  } catch (const toml::parse_error& err) {
    return absl::InvalidArgumentError(absl::StrCat(source_name.string(), ":", err.source().begin.line, ":",
                                                   err.source().begin.column,
                                                   ": TOML syntax error: ", pki::AbslView(err.description())));
  }
  TomlReader r(source_name);
  Config c;
  c.source = source_name;
  r.CheckKnown(root, "", {"node", "api", "log", "ca", "cluster", "ops", "store"});
  if (const toml::table* node = r.Table(root, "node", "node", true)) {
    r.CheckKnown(*node, "node.", {"id", "data_dir"});
    r.String(*node, "id", "node.id", &c.node_id, true);
    r.Path(*node, "data_dir", "node.data_dir", &c.data_dir, true);
    if (!c.node_id.empty() &&
        c.node_id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_.") != std::string::npos) {
      r.Error("node.id", "use lowercase letters, digits, '-', '_' and '.' only");
    }
  }
  if (const toml::table* api = r.Table(root, "api", "api", true)) ReadApi(r, *api, &c.api);
  if (const toml::table* log = r.Table(root, "log", "log", false)) ReadLog(r, *log, &c.log);
  if (const toml::table* ca = r.Table(root, "ca", "ca", true)) ReadCa(r, *ca, c.data_dir, &c.ca);
  if (const toml::table* cluster = r.Table(root, "cluster", "cluster", false))
    ReadCluster(r, *cluster, c.node_id, &c.cluster);
  if (const toml::table* ops = r.Table(root, "ops", "ops", false)) ReadOps(r, *ops, c.api, &c.ops);
  if (const toml::table* store = r.Table(root, "store", "store", false)) {
    r.CheckKnown(*store, "store.", {"min_free_bytes", "integrity_check_interval_s", "retention_days"});
    r.Int(*store, "retention_days", "store.retention_days", &c.store.retention_days, 0, 36'500);
    r.Int(*store, "min_free_bytes", "store.min_free_bytes", &c.store.min_free_bytes, 0, int64_t{1} << 50);
    int64_t integrity = c.store.integrity_check_interval.count();
    r.Int(*store, "integrity_check_interval_s", "store.integrity_check_interval_s", &integrity, 0, 30LL * 86'400);
    c.store.integrity_check_interval = std::chrono::seconds(integrity);
  }
  // A lease that lapses while its holder's CA call may still be running would let another
  // node submit the same CSR.
  if (r.ok() && c.ca.backend == "icpr") {
    const auto holder_needs = c.ca.icpr.connect_timeout + c.ca.icpr.call_timeout +
                              (c.cluster.enabled ? c.cluster.quorum_timeout : std::chrono::milliseconds(0));
    if (c.ca.submit_lease <= holder_needs) {
      r.Error(
          "ca.submit_lease_ms",
          absl::StrCat("must be longer than a submit can take: ca.icpr.connect_timeout_ms + ca.icpr.call_timeout_ms",
                       c.cluster.enabled ? " + cluster.quorum_timeout_ms" : "", " = ", holder_needs.count(),
                       " ms (it is ", c.ca.submit_lease.count(), ")"));
    }
  }
  if (!r.ok()) return absl::InvalidArgumentError(r.Joined());
  return c;
}

absl::StatusOr<Config> LoadConfig(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(path.string(), ": cannot read the config file (does it exist?)"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), std::filesystem::absolute(path));
}

}  // namespace adcsc::node
