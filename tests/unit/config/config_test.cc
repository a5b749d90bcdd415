#include "node/config/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

using ::testing::HasSubstr;

constexpr char kPin[] =
    "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(dir_.path() / "server.pem") << "x";
    std::ofstream(dir_.path() / "ca.pem") << "x";
    std::ofstream(dir_.path() / "server.key") << "x";
    chmod((dir_.path() / "server.key").c_str(), 0600);
  }

  std::string Valid() const {
    return std::string(R"(
[node]
id = "node-a"
data_dir = "data"

[api]
listen = "127.0.0.1:9443"
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "ca.pem"
client_pins = [")") +
           kPin + R"("]
header_timeout_ms = 5000

[log]
level = "debug"
access_log = "access.log"

[ca]
backend = "local"
identity = "EXAMPLE\\svc"

[[ca.allow]]
dc = "ca1.example.com"
ca = "Example-CA"
templates = ["JamfDevice"]

[ca.local]
key_type = "rsa2048"

[[ca.local.templates]]
name = "JamfDevice"
eku = ["clientAuth"]
validity_days = 30
min_key_bits = 2048
policy = "pending"
pending_seconds = 5
)";
  }

  absl::StatusOr<Config> Parse(const std::string& text) { return ParseConfig(text, dir_.path() / "node.toml"); }
  adcsc::testing::TempDir dir_;
};

TEST_F(ConfigTest, ParsesAValidFileAndResolvesRelativePaths) {
  auto c = Parse(Valid());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node_id, "node-a");
  EXPECT_EQ(c->data_dir, dir_.path() / "data");
  EXPECT_EQ(c->api.listen_address, "127.0.0.1");
  EXPECT_EQ(c->api.listen_port, 9443);
  EXPECT_EQ(c->api.client_pins.front(), "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
  EXPECT_EQ(c->api.header_timeout, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->api.max_body_bytes, 64u * 1024) << "default";
  EXPECT_EQ(c->log.access_log, dir_.path() / "access.log");
  EXPECT_EQ(c->ca.identity, "EXAMPLE\\svc");
  ASSERT_EQ(c->ca.local.templates.size(), 1u);
  EXPECT_EQ(c->ca.local.templates[0].pending_seconds, 5);
  EXPECT_EQ(c->ca.local.ca_name, "Example-CA") << "defaults to the first allowed CA";
  EXPECT_NE(c->FindAllowedCa("CA1.EXAMPLE.COM", "Example-CA"), nullptr);
  EXPECT_EQ(c->FindAllowedCa("ca1.example.com", "example-ca"), nullptr);
}

TEST_F(ConfigTest, TrustedProxyPinsMustBeMappedClients) {
  std::string text = Valid();
  const std::string other(64, 'c');
  auto ok =
      Parse(text.replace(text.find("header_timeout_ms"), 0, std::string("trusted_proxy_pins = [\"") + kPin + "\"]\n"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->api.trusted_proxy_pins,
            std::vector<std::string>{"abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"});
  EXPECT_TRUE(Parse(Valid())->api.trusted_proxy_pins.empty());

  std::string bad = Valid();
  // A malformed entry first: the unmapped one is still named by its own index.
  auto c = Parse(bad.replace(bad.find("header_timeout_ms"), 0, "trusted_proxy_pins = [\"zz\", \"" + other + "\"]\n"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("api.trusted_proxy_pins[0]"), std::string_view::npos) << c.status();
  EXPECT_NE(c.status().message().find("api.trusted_proxy_pins[1]: a trusted proxy must also be in api.client_pins"),
            std::string_view::npos)
      << c.status();
}

// api.ca_unreachable_status: the original's 200 (INTERNAL_ERROR in the body) by default, or
// 503 for a load balancer's L7 retry; nothing else.
TEST_F(ConfigTest, CaUnreachableStatusIs200Or503) {
  auto defaults = Parse(Valid());
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->api.ca_unreachable_status, 200);
  for (int status : {200, 503}) {
    std::string text = Valid();
    auto c = Parse(
        text.replace(text.find("header_timeout_ms"), 0, "ca_unreachable_status = " + std::to_string(status) + "\n"));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->api.ca_unreachable_status, status);
  }
  for (int status : {500, 404, 0}) {
    std::string text = Valid();
    auto c = Parse(
        text.replace(text.find("header_timeout_ms"), 0, "ca_unreachable_status = " + std::to_string(status) + "\n"));
    ASSERT_FALSE(c.ok()) << status;
    EXPECT_NE(c.status().message().find("api.ca_unreachable_status"), std::string_view::npos) << c.status();
  }
}

TEST_F(ConfigTest, TheStoreSectionHasAFreeSpaceFloor) {
  auto defaults = Parse(Valid());
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ(defaults->store.min_free_bytes, 256LL * 1024 * 1024);
  auto set = Parse(Valid() + "\n[store]\nmin_free_bytes = 0\n");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->store.min_free_bytes, 0);
  auto bad = Parse(Valid() + "\n[store]\nmin_free_bytes = -1\nfree = 3\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("store.min_free_bytes"), std::string_view::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("store.free"), std::string_view::npos) << bad.status();
}

TEST_F(ConfigTest, TheInFlightSearchHasDefaultsAndBounds) {
  auto c = Parse(Valid());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca.in_flight_wait, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->ca.recovery_scan_limit, 256);
  std::string text = Valid();
  const std::string id = "identity = \"EXAMPLE\\\\svc\"";
  ASSERT_NE(text.find(id), std::string::npos);
  text.replace(text.find(id), id.size(), id + "\nin_flight_wait_ms = 0\nrecovery_scan_limit = 10");
  c = Parse(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca.in_flight_wait, std::chrono::milliseconds(0));
  EXPECT_EQ(c->ca.recovery_scan_limit, 10);
  text.replace(text.find("in_flight_wait_ms = 0"), 21, "in_flight_wait_ms = -1");
  c = Parse(text);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("ca.in_flight_wait_ms"), std::string::npos) << c.status();
}

// Puts `keys` (TOML lines) into the [[ca.allow]] entry of Valid().
std::string WithAllowKeys(std::string text, const std::string& keys) {
  const std::string at = "templates = [\"JamfDevice\"]\n";
  text.replace(text.find(at), at.size(), at + keys + "\n");
  return text;
}

TEST_F(ConfigTest, AnAllowEntryWithoutPolicyKeysGetsTheRestrictiveDefault) {
  auto c = Parse(Valid());
  ASSERT_TRUE(c.ok()) << c.status();
  const AllowedCa& a = c->ca.allow.at(0);
  EXPECT_EQ(a.key, "ca.allow[0]");
  const pki::CsrPolicy& p = a.policy;
  EXPECT_EQ(p.subject_patterns, std::vector<std::string>{"**"});
  EXPECT_TRUE(p.san_dns.empty());
  EXPECT_TRUE(p.san_email.empty());
  EXPECT_TRUE(p.san_uri.empty());
  EXPECT_TRUE(p.san_upn.empty());
  EXPECT_TRUE(p.san_ip.empty());
  EXPECT_FALSE(p.allow_sid_uri);
  EXPECT_EQ(p.key_types, (std::vector<std::string>{"rsa", "ec"}));
  EXPECT_EQ(p.min_rsa_bits, 2048);
  EXPECT_EQ(p.max_rsa_bits, 4096);
  EXPECT_EQ(p.ec_curves, (std::vector<std::string>{"P-256", "P-384"}));
  EXPECT_EQ(p.requested_validity, pki::RequestedValidity::kRefuse);
}

TEST_F(ConfigTest, ReadsEverySigningPolicyKey) {
  auto c = Parse(WithAllowKeys(Valid(), R"(subject_patterns = ["CN=*,OU=Devices,O=Example"]
san_dns = ["*.devices.example.com"]
san_email = []
san_uri = ["https://mdm.example.com/*"]
san_upn = ["*@devices.example.com"]
san_ip = ["10.20.*"]
allow_sid_uri = true
key_types = ["RSA", "ec", "ed25519"]
min_rsa_bits = 3072
max_rsa_bits = 3072
ec_curves = ["prime256v1", "p-521"]
requested_validity = "ignore")"));
  ASSERT_TRUE(c.ok()) << c.status();
  const pki::CsrPolicy& p = c->ca.allow.at(0).policy;
  EXPECT_EQ(p.subject_patterns, std::vector<std::string>{"CN=*,OU=Devices,O=Example"});
  EXPECT_EQ(p.san_dns, std::vector<std::string>{"*.devices.example.com"});
  EXPECT_TRUE(p.san_email.empty()) << "an empty list allows none";
  EXPECT_EQ(p.san_uri, std::vector<std::string>{"https://mdm.example.com/*"});
  EXPECT_EQ(p.san_upn, std::vector<std::string>{"*@devices.example.com"});
  EXPECT_EQ(p.san_ip, std::vector<std::string>{"10.20.*"});
  EXPECT_TRUE(p.allow_sid_uri);
  EXPECT_EQ(p.key_types, (std::vector<std::string>{"rsa", "ec", "ed25519"}));
  EXPECT_EQ(p.min_rsa_bits, 3072);
  EXPECT_EQ(p.max_rsa_bits, 3072);
  EXPECT_EQ(p.ec_curves, (std::vector<std::string>{"P-256", "P-521"}));
  EXPECT_EQ(p.requested_validity, pki::RequestedValidity::kIgnore);
}

TEST_F(ConfigTest, SigningPolicyProblemsNameTheFileAndKey) {
  auto c = Parse(WithAllowKeys(Valid(), R"(subject_patterns = ["CN=*", ""]
san_dns = ["**.example.com"]
san_uri = ["tag:microsoft.com,2022-09-14:sid:*"]
san_upn = "admin@corp"
allow_sid_uri = "yes"
key_types = ["rsa", "dsa"]
min_rsa_bits = 4096
max_rsa_bits = 2048
ec_curves = ["P-256", "secp256k1"]
requested_validity = "strip"
san_x400 = []
)"));
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  const std::string file = (dir_.path() / "node.toml").string();
  for (const char* want : {
           ": ca.allow[0].subject_patterns[1]: a pattern must not be empty",
           ": ca.allow[0].san_dns[0]: pattern \"**.example.com\" has **",
           ": ca.allow[0].san_uri[0]: SID URIs (tag:microsoft.com,2022-09-14:sid:...) are allowed with allow_sid_uri",
           ": ca.allow[0].san_upn: must be an array of strings",
           ": ca.allow[0].allow_sid_uri: must be true or false",
           ": ca.allow[0].key_types[1]: unknown key type \"dsa\"",
           ": ca.allow[0].min_rsa_bits: is 4096, more than max_rsa_bits (2048)",
           ": ca.allow[0].ec_curves[1]: unknown curve \"secp256k1\"",
           ": ca.allow[0].requested_validity: unknown value \"strip\" (use refuse or ignore)",
           ": ca.allow[0].san_x400: unknown key",
       }) {
    EXPECT_NE(m.find(file + want), std::string::npos) << "missing: " << want << "\nin:\n" << m;
  }
}

TEST_F(ConfigTest, ACaIsListedOnceSoItHasOnePolicy) {
  std::string text = Valid();
  const std::string at = "[ca.local]";
  text.replace(text.find(at), 0, "[[ca.allow]]\ndc = \"CA1.example.com\"\nca = \"Example-CA\"\n\n");
  auto c = Parse(text);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(
      std::string(c.status().message()).find("ca.allow[1]: lists CA1.example.com\\Example-CA again (as ca.allow[0]"),
      std::string::npos)
      << c.status();
}

TEST_F(ConfigTest, APolicyThatRefusesEverythingIsAnError) {
  auto c = Parse(WithAllowKeys(Valid(), "subject_patterns = []\nkey_types = []\nmin_rsa_bits = 512"));
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  EXPECT_NE(m.find("ca.allow[0].subject_patterns: an empty list refuses every request"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.allow[0].key_types: an empty list refuses every request"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.allow[0].min_rsa_bits: must be between 1024 and 16384"), std::string::npos) << m;
  c = Parse(WithAllowKeys(Valid(), "ec_curves = []"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("ca.allow[0].ec_curves: is empty while key_types allows ec"),
            std::string::npos)
      << c.status();
  EXPECT_TRUE(Parse(WithAllowKeys(Valid(), "ec_curves = []\nkey_types = [\"rsa\"]")).ok());
}

TEST_F(ConfigTest, ReportsEveryProblemWithFileAndKey) {
  std::string text = Valid();
  auto replace = [&](const std::string& from, const std::string& to) {
    text.replace(text.find(from), from.size(), to);
  };
  replace("listen = \"127.0.0.1:9443\"", "listen = \"127.0.0.1\"");
  replace("header_timeout_ms = 5000", "header_timeout_ms = \"soon\"\nmax_conections = 5");
  replace("level = \"debug\"", "level = \"loud\"");
  replace(kPin, "nothex");
  auto c = Parse(text);
  ASSERT_FALSE(c.ok());
  std::string msg(c.status().message());
  const std::string file = (dir_.path() / "node.toml").string();
  for (const char* key :
       {"api.listen", "api.header_timeout_ms", "api.max_conections", "log.level", "api.client_pins[0]"}) {
    EXPECT_NE(msg.find(file + ": " + key + ":"), std::string::npos) << key << " missing in:\n" << msg;
  }
}

TEST_F(ConfigTest, GroupReadableKeyIsRefused) {
  chmod((dir_.path() / "server.key").c_str(), 0644);
  auto c = Parse(Valid());
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("chmod 600"), std::string_view::npos) << c.status();
}

TEST_F(ConfigTest, TheOpsPortsOwnKeyGetsTheSameModeCheck) {
  std::ofstream(dir_.path() / "ops.key") << "x";
  chmod((dir_.path() / "ops.key").c_str(), 0640);
  auto c = Parse(Valid() + "\n[ops]\ncert_file = \"server.pem\"\nkey_file = \"ops.key\"\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("ops.key_file: "), std::string_view::npos) << c.status();
  EXPECT_NE(c.status().message().find("chmod 600"), std::string_view::npos) << c.status();
  chmod((dir_.path() / "ops.key").c_str(), 0600);
  EXPECT_TRUE(Parse(Valid() + "\n[ops]\ncert_file = \"server.pem\"\nkey_file = \"ops.key\"\n").ok());
}

TEST_F(ConfigTest, AllowlistIsRequired) {
  std::string text = Valid();
  text.replace(text.find("[[ca.allow]]"), 12, "[[ca.allowed]]");
  auto c = Parse(text);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("ca.allow:"), std::string_view::npos) << c.status();
}

TEST_F(ConfigTest, SyntaxErrorNamesLine) {
  auto c = Parse("[node\nid=1");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("node.toml:1:"), std::string_view::npos) << c.status();
}

TEST_F(ConfigTest, MissingFile) {
  auto c = LoadConfig(dir_.path() / "absent.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("absent.toml"), std::string_view::npos);
}

// The same file with backend = "icpr" and its [ca.icpr] section instead of [ca.local].
std::string IcprConfigText(const std::string& valid, const std::string& icpr_section) {
  std::string text = valid.substr(0, valid.find("[ca.local]"));
  const std::string from = "backend = \"local\"";
  text.replace(text.find(from), from.size(), "backend = \"icpr\"");
  return text + icpr_section;
}

TEST_F(ConfigTest, IcprBackendReadsItsSection) {
  std::ofstream(dir_.path() / "svc.pass") << "secret\n";
  chmod((dir_.path() / "svc.pass").c_str(), 0600);
  auto c = Parse(IcprConfigText(Valid(), R"(
[ca.icpr]
password_file = "svc.pass"
epm_port = 1135
call_timeout_ms = 2500
max_idle_connections = 2
)"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca.backend, "icpr");
  EXPECT_EQ(c->ca.icpr.password_file, dir_.path() / "svc.pass");
  EXPECT_EQ(c->ca.icpr.epm_port, 1135);
  EXPECT_EQ(c->ca.icpr.call_timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(c->ca.icpr.connect_timeout, std::chrono::milliseconds(3000)) << "default";
  EXPECT_EQ(c->ca.icpr.max_idle_connections, 2);
}

TEST_F(ConfigTest, IcprBackendReportsEveryProblemWithItsKey) {
  std::ofstream(dir_.path() / "svc.pass") << "secret\n";
  chmod((dir_.path() / "svc.pass").c_str(), 0644);
  std::string text = IcprConfigText(Valid(), R"(
[ca.icpr]
password_file = "svc.pass"
nt_hash_file = "svc.hash"
workstation = "A-NAME-LONGER-THAN-15"
epm_port = 0
)");
  const std::string account = "EXAMPLE\\\\svc";  // as written in the TOML text
  text.replace(text.find(account), account.size(), "svc-without-domain");
  auto c = Parse(text);
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  EXPECT_NE(m.find("ca.identity: for backend \"icpr\""), std::string::npos) << m;
  EXPECT_NE(m.find("ca.icpr: set at most one of password_file and nt_hash_file"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.icpr.password_file: "), std::string::npos) << m;  // readable by others
  EXPECT_NE(m.find("chmod 600"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.icpr.nt_hash_file: cannot read"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.icpr.workstation"), std::string::npos) << m;
  EXPECT_NE(m.find("ca.icpr.epm_port: must be between 1 and 65535"), std::string::npos) << m;
}

TEST_F(ConfigTest, IcprAuthDefaultsToNtlmWithoutAKerberosCredentialAndNegotiateWithOne) {
  std::ofstream(dir_.path() / "svc.pass") << "secret\n";
  chmod((dir_.path() / "svc.pass").c_str(), 0600);
  std::ofstream(dir_.path() / "svc.keytab") << "x";
  chmod((dir_.path() / "svc.keytab").c_str(), 0600);
  auto ntlm = Parse(IcprConfigText(Valid(), "[ca.icpr]\npassword_file = \"svc.pass\"\n"));
  ASSERT_TRUE(ntlm.ok()) << ntlm.status();
  EXPECT_EQ(ntlm->ca.icpr.auth, "ntlm");
  auto negotiate = Parse(IcprConfigText(Valid(), "[ca.icpr]\nkeytab = \"svc.keytab\"\n"));
  ASSERT_TRUE(negotiate.ok()) << negotiate.status();
  EXPECT_EQ(negotiate->ca.icpr.auth, "negotiate");
  EXPECT_EQ(negotiate->ca.icpr.keytab, dir_.path() / "svc.keytab");
  EXPECT_EQ(negotiate->ca.icpr.spn, "host/{host}") << "default";
  EXPECT_EQ(negotiate->ca.icpr.kerberos_mechanism, "spnego") << "default";
  auto kerberos = Parse(IcprConfigText(Valid(), R"(
[ca.icpr]
auth = "kerberos"
ccache = "FILE:/run/adcsc/krb5cc"
spn = "host/{host}@EXAMPLE.COM"
kerberos_mechanism = "krb5"
ticket_renew_margin_s = 600
)"));
  ASSERT_TRUE(kerberos.ok()) << kerberos.status();
  EXPECT_EQ(kerberos->ca.icpr.ccache, "FILE:/run/adcsc/krb5cc");
  EXPECT_EQ(kerberos->ca.icpr.kerberos_mechanism, "krb5");
  EXPECT_EQ(kerberos->ca.icpr.ticket_renew_margin, std::chrono::seconds(600));
  // The password serves Kerberos too.
  auto password = Parse(IcprConfigText(Valid(), "[ca.icpr]\nauth = \"kerberos\"\npassword_file = \"svc.pass\"\n"));
  ASSERT_TRUE(password.ok()) << password.status();
}

TEST_F(ConfigTest, IcprKerberosProblemsAreReportedWithTheirKeys) {
  std::ofstream(dir_.path() / "svc.hash") << "8846f7eaee8fb117ad06bdd830b7586c\n";
  chmod((dir_.path() / "svc.hash").c_str(), 0600);
  std::ofstream(dir_.path() / "svc.keytab") << "x";
  chmod((dir_.path() / "svc.keytab").c_str(), 0644);
  auto hash_only = Parse(IcprConfigText(Valid(), "[ca.icpr]\nauth = \"kerberos\"\nnt_hash_file = \"svc.hash\"\n"));
  ASSERT_FALSE(hash_only.ok());
  EXPECT_THAT(std::string(hash_only.status().message()), HasSubstr("an NT hash cannot get a Kerberos ticket"));
  auto bad = Parse(IcprConfigText(Valid(), R"(
[ca.icpr]
auth = "kerberoz"
keytab = "svc.keytab"
ccache = "FILE:/tmp/x"
kerberos_mechanism = "ntlm"
spn = ""
krb5_conf = "no-such-krb5.conf"
)"));
  ASSERT_FALSE(bad.ok());
  const std::string m(bad.status().message());
  EXPECT_THAT(m, HasSubstr("ca.icpr.auth: unknown mechanism \"kerberoz\" (use kerberos, negotiate or ntlm)"));
  EXPECT_THAT(m, HasSubstr("ca.icpr: set at most one of keytab and ccache"));
  EXPECT_THAT(m, HasSubstr("ca.icpr.kerberos_mechanism: unknown mechanism \"ntlm\" (use spnego or krb5)"));
  EXPECT_THAT(m, HasSubstr("ca.icpr.spn: "));
  EXPECT_THAT(m, HasSubstr("ca.icpr.keytab: "));  // readable by others
  EXPECT_THAT(m, HasSubstr("ca.icpr.krb5_conf: cannot read"));
}

TEST_F(ConfigTest, IcprBackendNeedsItsSection) {
  auto c = Parse(IcprConfigText(Valid(), ""));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("ca.icpr: missing section"), std::string_view::npos) << c.status();
}

TEST_F(ConfigTest, ClusterSectionIsReadWithItsDefaults) {
  std::ofstream(dir_.path() / "node.key") << "x";
  chmod((dir_.path() / "node.key").c_str(), 0600);
  auto c = Parse(Valid() + R"(
[cluster]
id = "prod"
listen = "127.0.0.1:9443"
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "node.key"
on_quorum_loss = "refuse"

[[cluster.peers]]
id = "node-b"
address = "10.0.0.2:9443"

[[cluster.peers]]
id = "node-c"
address = "10.0.0.3:9443"
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->cluster.enabled);
  EXPECT_EQ(c->cluster.id, "prod");
  EXPECT_EQ(c->cluster.listen_port, 9443);
  ASSERT_EQ(c->cluster.peers.size(), 2u);
  EXPECT_EQ(c->cluster.peers[1].address, "10.0.0.3:9443");
  EXPECT_EQ(c->cluster.EffectiveQuorum(), 2) << "majority of 3";
  EXPECT_EQ(c->cluster.on_quorum_loss, "refuse");
  EXPECT_EQ(c->cluster.quorum_timeout, std::chrono::milliseconds(2000));
  EXPECT_EQ(c->cluster.lookup_timeout, std::chrono::milliseconds(1000)) << "the default";
}

TEST_F(ConfigTest, OpsSectionIsReadWithItsDefaults) {
  auto none = Parse(Valid());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->ops.enabled) << "no [ops]: no ops listener";
  auto c = Parse(Valid() + "\n[ops]\n");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->ops.enabled);
  EXPECT_EQ(c->ops.listen_address, "127.0.0.1") << "loopback unless asked";
  EXPECT_EQ(c->ops.listen_port, 9100);
  EXPECT_TRUE(c->ops.tls);
  EXPECT_EQ(c->ops.cert_file, c->api.cert_file) << "the API's identity by default";
  EXPECT_EQ(c->ops.probe_interval, std::chrono::milliseconds(5000));
  EXPECT_EQ(c->ops.max_connections, 64u);
  auto bad = Parse(Valid() + "\n[ops]\nlisten = \"nowhere\"\nprobe_interval_ms = 5\nport = 1\nmax_connections = 0\n");
  ASSERT_FALSE(bad.ok());
  for (const char* key : {"ops.listen", "ops.probe_interval_ms", "ops.port", "ops.max_connections"}) {
    EXPECT_NE(bad.status().message().find(key), std::string_view::npos) << key << "\n" << bad.status();
  }
}

TEST_F(ConfigTest, ClusterProblemsAreAllReported) {
  auto c = Parse(Valid() + R"(
[cluster]
id = "Prod"
cert_file = "server.pem"
key_file = "missing.key"
write_quorum = 5
on_quorum_loss = "maybe"

[[cluster.peers]]
id = "node-a"
address = "nowhere"

[[cluster.peers]]
id = "node-b"
address = "10.0.0.2:9443"

[[cluster.peers]]
id = "node-b"
address = "10.0.0.3:9443"
)");
  ASSERT_FALSE(c.ok());
  const std::string m(c.status().message());
  for (const char* want :
       {"cluster.id: cluster ID \"Prod\"", "cluster.ca_file: missing", "cluster.key_file: cannot read",
        "cluster.write_quorum: is 5 but the cluster has only 4 nodes", "cluster.on_quorum_loss: unknown policy",
        "cluster.peers[0].id: is this node's own id", "cluster.peers[0].address: expected HOST:PORT",
        "cluster.peers[2].id: \"node-b\" is listed twice"}) {
    EXPECT_NE(m.find(want), std::string::npos) << want << "\n" << m;
  }
}

TEST_F(ConfigTest, ClusterNodeIdsMustBeCertificateNames) {
  std::string text = Valid();
  text.replace(text.find("id = \"node-a\""), 13, "id = \"node_a\"");
  auto c = Parse(text + R"(
[cluster]
id = "prod"
ca_file = "ca.pem"
cert_file = "server.pem"
key_file = "server.key"

[[cluster.peers]]
id = "node-b"
address = "10.0.0.2:9443"
)");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("node.id: node ID \"node_a\""), std::string_view::npos) << c.status();
}

// api.client_pins during a rotation: a pin may carry `until`, the end of its overlap, as an
// offset date-time or a bare date (midnight UTC); plain strings stay as they were.
TEST_F(ConfigTest, AClientPinMayCarryTheEndOfItsOverlap) {
  const std::string old_pin(64, 'a'), new_pin(64, 'b'), third(64, 'c');
  std::string text = Valid();
  const std::string list = std::string("client_pins = [\n  { pin = \"") + old_pin +
                           "\", until = 2027-01-15T01:00:00+01:00 },  # old\n  \"" + new_pin + "\",\n  { pin = \"" +
                           third + "\", until = 2027-01-16 },\n]";
  text.replace(text.find("client_pins = ["),
               text.find("]", text.find("client_pins = [")) - text.find("client_pins = [") + 1, list);
  auto c = Parse(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->api.client_pins, (std::vector<std::string>{old_pin, new_pin, third}));
  ASSERT_EQ(c->api.client_pin_until.size(), 2u);
  EXPECT_EQ(c->api.client_pin_until.at(old_pin), 1'799'971'200);  // 2027-01-15T00:00:00Z
  EXPECT_EQ(c->api.client_pin_until.at(third), 1'799'971'200 + 86'400);
}

TEST_F(ConfigTest, ABadOverlapEntryIsNamedWithItsIndex) {
  const std::string pin(64, 'a');
  for (const auto& [entry, key] : std::vector<std::pair<std::string, std::string>>{
           {"{ pin = \"" + pin + "\" }", "api.client_pins[0].until: missing"},
           {"{ pin = \"" + pin + "\", until = \"2027-01-15\" }", "api.client_pins[0].until: must be a date-time"},
           {"{ pin = \"" + pin + "\", until = 2027-01-15T00:00:00 }", "api.client_pins[0].until: must be a date-time"},
           {"{ pin = \"" + pin + "\", until = 2027-01-15, unti = 1 }", "api.client_pins[0].unti: unknown key"},
           {"{ pin = \"xyz\", until = 2027-01-15 }", "api.client_pins[0]:"},
           {"\"" + pin + "\", { pin = \"" + pin + "\", until = 2027-01-15 }",
            "api.client_pins[1]: this pin is listed twice, once with an until"},
           {"42", "api.client_pins[0]: must be a pin"}}) {
    std::string text = Valid();
    const size_t at = text.find("client_pins = [");
    text.replace(at, text.find("]", at) - at + 1, "client_pins = [" + entry + "]");
    auto c = Parse(text);
    ASSERT_FALSE(c.ok()) << entry;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(key)) << entry;
  }
}

// ca.allow[].ca_cert_file: optional, resolved like every path, and checked readable.
TEST_F(ConfigTest, AnAllowedCaMayNameItsCertificateFile) {
  std::ofstream(dir_.path() / "issuing-ca.pem") << "x";
  std::string text = Valid();
  const size_t at = text.find("templates = [\"JamfDevice\"]");
  auto c = Parse(std::string(text).insert(at, "ca_cert_file = \"issuing-ca.pem\"\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ca.allow.at(0).ca_cert_file, dir_.path() / "issuing-ca.pem");
  EXPECT_TRUE(Parse(Valid())->ca.allow.at(0).ca_cert_file.empty());
  auto missing = Parse(std::string(text).insert(at, "ca_cert_file = \"absent.pem\"\n"));
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("ca.allow[0].ca_cert_file: cannot read"));
}

}  // namespace
}  // namespace adcsc::node
