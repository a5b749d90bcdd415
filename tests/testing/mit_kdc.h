// A throw-away MIT Kerberos realm for tests: krb5.conf and kdc.conf in a temp dir, a database
// made with kdb5_util, principals and keytabs with kadmin.local, and krb5kdc in the foreground
// on a free 127.0.0.1 port (UDP and TCP), stopped (SIGTERM, then waited for) on Stop() or
// destruction. Nothing assumes a running service. Clients use it by setting KRB5_CONFIG to
// krb5_conf() (UseForThisProcess() does that, with a private ccache, keytab and rcache dir).
// Thread-safety: one owner; the KDC process itself serves any number of clients.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include "tests/testing/free_port.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::testing {

class MitKdc {
 public:
  static constexpr const char* kKrb5kdc = "/usr/sbin/krb5kdc";
  static constexpr const char* kKdb5Util = "/usr/sbin/kdb5_util";
  static constexpr const char* kKadminLocal = "/usr/sbin/kadmin.local";
  static constexpr std::chrono::seconds kStartTimeout{20};

  static bool Installed() {
    return ::access(kKrb5kdc, X_OK) == 0 && ::access(kKdb5Util, X_OK) == 0 && ::access(kKadminLocal, X_OK) == 0;
  }

  explicit MitKdc(std::string realm = "ADCSC.TEST") : realm_(std::move(realm)), port_(FreePort()) {}
  ~MitKdc() { Stop(); }
  MitKdc(const MitKdc&) = delete;
  MitKdc& operator=(const MitKdc&) = delete;

  // Writes the configuration, creates the database and starts krb5kdc; returns an empty string
  // on success, else what failed (with the KDC's log).
  std::string Start() {
    WriteConfig();
    if (std::string e = Run(std::string(kKdb5Util) + " -r " + realm_ + " create -s -P " + kMasterPassword); !e.empty())
      return e;
    return Launch();
  }

  // Starts the KDC again after Stop() (same database and port).
  std::string Restart() { return Launch(); }

  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  bool running() const { return pid_ > 0; }

  // kadmin.local -q "<query>"; empty on success, else the command's output.
  std::string Kadmin(const std::string& query) {
    return Run(std::string(kKadminLocal) + " -r " + realm_ + " -q \"" + query + "\"");
  }
  std::string AddPrincipal(const std::string& name, const std::string& password) {
    return Kadmin("addprinc -pw " + password + " " + name);
  }
  std::string AddRandomKeyPrincipal(const std::string& name) { return Kadmin("addprinc -randkey " + name); }
  // Exports `name`'s keys to `keytab` (ktadd -norandkey keeps the key the KDC has).
  std::string ExportKeytab(const std::string& name, const std::filesystem::path& keytab) {
    return Kadmin("ktadd -norandkey -k " + keytab.string() + " " + name);
  }
  // Gives `name` new random keys (a new kvno) and writes them to `keytab`.
  std::string RandomizeKeyToKeytab(const std::string& name, const std::filesystem::path& keytab) {
    return Kadmin("ktadd -k " + keytab.string() + " " + name);
  }

  // Points this process's Kerberos library at the realm, with a private default ccache,
  // keytab and replay-cache directory (never the user's or the system's).
  void UseForThisProcess() const {
    ::setenv("KRB5_CONFIG", krb5_conf().c_str(), 1);
    ::setenv("KRB5CCNAME", ("FILE:" + dir_.File("default.ccache").string()).c_str(), 1);
    ::setenv("KRB5_KTNAME", dir_.File("default.keytab").c_str(), 1);
    ::setenv("KRB5_CLIENT_KTNAME", dir_.File("default-client.keytab").c_str(), 1);
    ::setenv("KRB5RCACHEDIR", dir_.path().c_str(), 1);
  }

  // A krb5.conf for the same realm whose KDC is a port nobody listens on (KDC unreachable).
  std::filesystem::path WriteUnreachableKrb5Conf() const {
    auto path = dir_.File("krb5-unreachable.conf");
    WriteKrb5Conf(path, FreePort());
    return path;
  }

  const std::string& realm() const { return realm_; }
  int port() const { return port_; }
  std::filesystem::path krb5_conf() const { return dir_.File("krb5.conf"); }
  std::filesystem::path kdc_conf() const { return dir_.File("kdc.conf"); }
  std::filesystem::path dir() const { return dir_.path(); }
  std::string Log() const { return ReadFile(dir_.File("kdc.log")) + ReadFile(dir_.File("kdc.stderr")); }

 private:
  static constexpr const char* kMasterPassword = "adcsc-test-master";

  static std::string ReadFile(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::stringstream out;
    out << in.rdbuf();
    return out.str();
  }

  void WriteKrb5Conf(const std::filesystem::path& path, int port) const {
    std::ofstream out(path);
    out << "[libdefaults]\n"
        << "  default_realm = " << realm_ << "\n"
        << "  dns_lookup_kdc = false\n  dns_lookup_realm = false\n  rdns = false\n"
        << "  dns_canonicalize_hostname = false\n  udp_preference_limit = 1\n  kdc_timeout = 1000\n"
        << "  max_retries = 1\n  permitted_enctypes = aes256-cts-hmac-sha1-96 aes128-cts-hmac-sha1-96\n"
        << "[realms]\n  " << realm_ << " = {\n    kdc = 127.0.0.1:" << port << "\n  }\n"
        << "[domain_realm]\n  .adcsc.test = " << realm_ << "\n  adcsc.test = " << realm_ << "\n";
  }

  void WriteConfig() {
    WriteKrb5Conf(krb5_conf(), port_);
    std::ofstream kdc(kdc_conf());
    kdc << "[kdcdefaults]\n  kdc_listen = 127.0.0.1:" << port_ << "\n  kdc_tcp_listen = 127.0.0.1:" << port_ << "\n"
        << "[realms]\n  " << realm_ << " = {\n"
        << "    database_name = " << dir_.File("principal").string() << "\n"
        << "    key_stash_file = " << dir_.File("stash").string() << "\n"
        << "    acl_file = " << dir_.File("kadm5.acl").string() << "\n"
        << "    kdc_listen = 127.0.0.1:" << port_ << "\n    kdc_tcp_listen = 127.0.0.1:" << port_ << "\n"
        << "    max_life = 10h\n    max_renewable_life = 7d\n"
        << "    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n"
        << "  }\n"
        << "[logging]\n  kdc = FILE:" << dir_.File("kdc.log").string() << "\n";
  }

  std::string Env() const { return "KRB5_CONFIG=" + krb5_conf().string() + " KRB5_KDC_PROFILE=" + kdc_conf().string(); }

  // Runs a shell command with the realm's environment; empty on success, else its output.
  std::string Run(const std::string& command) const {
    const auto log = dir_.File("command.log");
    const std::string line = "env " + Env() + " " + command + " >" + log.string() + " 2>&1";
    const int rc = std::system(line.c_str());
    if (rc == 0) return "";
    return command + " failed (" + std::to_string(rc) + "): " + ReadFile(log);
  }

  std::string Launch() {
    const std::string conf = krb5_conf().string(), kdc_conf_path = kdc_conf().string();
    const std::string err = dir_.File("kdc.stderr").string();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("KRB5_CONFIG", conf.c_str(), 1);
      ::setenv("KRB5_KDC_PROFILE", kdc_conf_path.c_str(), 1);
      FILE* f = std::freopen(err.c_str(), "a", stderr);
      (void)f;
      ::execl(kKrb5kdc, kKrb5kdc, "-n", "-r", realm_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    if (pid < 0) return "fork failed";
    pid_ = pid;
    // Ready once the TCP port accepts a connection; a KDC that exits is a failure at once.
    const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return "krb5kdc exited at start: " + Log();
      }
      if (PortAccepts()) return "";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval of the condition
    }
    Stop();
    return "krb5kdc did not listen on 127.0.0.1:" + std::to_string(port_) + " within 20 s: " + Log();
  }

  bool PortAccepts() const {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port_));
    const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
  }

  TempDir dir_;
  std::string realm_;
  int port_;
  pid_t pid_ = -1;
};

}  // namespace adcsc::testing
