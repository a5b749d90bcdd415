// IcprBackend with IcprAuthenticator's Kerberos and negotiate modes, against the ADCS emulator
// in this process with a service keytab and a throw-away MIT realm (krb5kdc on 127.0.0.1):
// submit and retrieve over SPNEGO and raw krb5, the CA's refusal below packet privacy, who the
// CA sees, negotiate's fallback to NTLM (only when Kerberos cannot start here, never when the
// CA refused our ticket), a domain without NTLM, and ticket renewal on an injected clock.
#include "node/ca/icpr_auth.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "node/ca/hresult.h"
#include "node/ca/icpr_backend.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "tests/testing/mit_kdc.h"
#include "tests/testing/temp_dir.h"
#include "tools/adcs-emulator/emulator.h"

namespace adcsc::ca {
namespace {

using ::testing::HasSubstr;
using testing::MitKdc;

constexpr char kCa[] = "Test-CA";
const CallerIdentity kCaller{"EXAMPLE\\svc-adcsc"};
constexpr char kClient[] = "svc-adcsc@ADCSC.TEST";
constexpr char kNtlmPassword[] = "Pw-1";
constexpr char kCaSpn[] = "host/ca.adcsc.test";
// A CA whose keytab holds a key the KDC no longer uses (its key was changed after export).
constexpr char kStaleSpn[] = "host/stale.adcsc.test";

// Sets an environment variable for one scope and puts the old value back (the Kerberos
// library reads KRB5_CONFIG whenever it makes a context, so this switches KDCs mid-process).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = ::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

struct EmulatorSetup {
  std::filesystem::path keytab;  // empty: no Kerberos
  bool ntlm = true;
};

class IcprKerberosTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MitKdc::Installed()) return;
    kdc_ = new MitKdc();
    std::string error = kdc_->Start();
    for (const std::string& step : {
             kdc_->AddRandomKeyPrincipal(kClient),
             kdc_->ExportKeytab(kClient, ClientKeytab()),
             kdc_->AddRandomKeyPrincipal(kCaSpn),
             kdc_->ExportKeytab(kCaSpn, ServiceKeytab()),
             kdc_->AddRandomKeyPrincipal(kStaleSpn),
             kdc_->ExportKeytab(kStaleSpn, StaleKeytab()),
             kdc_->RandomizeKeyToKeytab(kStaleSpn, kdc_->dir() / "stale-new.keytab"),
         }) {
      if (error.empty()) error = step;
    }
    setup_error_ = new std::string(error);
    kdc_->UseForThisProcess();
  }
  static void TearDownTestSuite() {
    delete kdc_;  // stops krb5kdc
    kdc_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }
  void SetUp() override {
    if (kdc_ == nullptr)
      GTEST_SKIP() << "MIT krb5kdc is not installed (" << MitKdc::kKrb5kdc
                   << "): apt-get install krb5-kdc krb5-admin-server";
    ASSERT_EQ(*setup_error_, "");
  }
  void TearDown() override {
    if (emulator_) emulator_->Stop();
  }

  static std::filesystem::path ClientKeytab() { return kdc_->dir() / "client.keytab"; }
  static std::filesystem::path ServiceKeytab() { return kdc_->dir() / "service.keytab"; }
  static std::filesystem::path StaleKeytab() { return kdc_->dir() / "stale.keytab"; }

  // A CA that knows EXAMPLE\svc-adcsc (NTLM) and reports Kerberos callers under EXAMPLE
  // (emulator.netbios_domain, the default realm_domain), so both are the same account.
  void StartEmulator(EmulatorSetup setup) {
    emulator::EmulatorConfig c;
    c.data_dir = dir_.path() / "emulator";
    c.ca.dir = c.data_dir / "ca";
    c.ca.ca_name = kCa;
    c.ca.durable = false;
    TemplatePolicy t;
    t.name = "JamfDevice";
    c.ca.templates = {t};
    c.accounts.push_back({"EXAMPLE", "svc-adcsc", *ntlm::NtHash(kNtlmPassword)});
    c.accounts.push_back({"EXAMPLE", "other", *ntlm::NtHash(kNtlmPassword)});
    c.names = {"EXAMPLE", "CA01", "", ""};
    c.ntlm = setup.ntlm;
    c.kerberos_keytab = setup.keytab;
    std::filesystem::create_directories(c.data_dir);
    emulator_ = std::make_unique<emulator::Emulator>(c);
    absl::Status started = emulator_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  static ntlm::Credentials Ntlm(const std::string& user = "svc-adcsc") {
    return ntlm::Credentials{"EXAMPLE", user, *ntlm::NtHash(kNtlmPassword), "TEST"};
  }

  static IcprAuthOptions Kerberos(gss::Mech mech = gss::Mech::kSpnego, std::string spn = kCaSpn) {
    IcprAuthOptions a;
    a.mode = IcprAuthMode::kKerberos;
    a.kerberos = gss::CredentialSource::Keytab(kClient, ClientKeytab().string());
    a.mech = mech;
    a.spn = std::move(spn);  // the CA is reached as 127.0.0.1; its SPN is named outright
    return a;
  }

  IcprBackendOptions Options(IcprAuthOptions auth) {
    IcprBackendOptions o;
    auto authenticator = IcprAuthenticator::Create(std::move(auth));
    EXPECT_TRUE(authenticator.ok()) << authenticator.status();
    if (authenticator.ok()) o.auth = *authenticator;
    o.epm_port = emulator_->epm_port();
    o.call_timeout = std::chrono::seconds(10);
    return o;
  }

  SubmitRequest Csr(const std::string& cn) {
    static auto key = pki::GenerateKey(pki::KeyType::kEcP256);
    return {target_, kCaller, *pki::MakeCsr(key->get(), cn, {}), "JamfDevice"};
  }

  // Submits, expects an issued certificate, and retrieves it again; empty on success.
  std::string SubmitAndRetrieve(IcprBackend& backend, const std::string& cn) {
    auto s = backend.Submit(Csr(cn));
    if (!s.ok()) return "submit: " + s.status().ToString();
    if (s->disposition != Disposition::kIssued || s->cert_der.empty()) return "submit: not issued";
    auto r = backend.Retrieve({target_, kCaller, s->request_id});
    if (!r.ok()) return "retrieve: " + r.status().ToString();
    if (r->cert_der != s->cert_der) return "retrieve: another certificate";
    return "";
  }

  static MitKdc* kdc_;
  static std::string* setup_error_;
  adcsc::testing::TempDir dir_;
  std::unique_ptr<emulator::Emulator> emulator_;
  const CaTarget target_{"127.0.0.1", kCa};
};

MitKdc* IcprKerberosTest::kdc_ = nullptr;
std::string* IcprKerberosTest::setup_error_ = nullptr;

class IcprKerberosMechs : public IcprKerberosTest, public ::testing::WithParamInterface<gss::Mech> {
 protected:
  std::string mechanism() const { return GetParam() == gss::Mech::kSpnego ? "negotiate/kerberos" : "kerberos"; }
};

TEST_P(IcprKerberosMechs, SubmitAndRetrieveOverKerberos) {
  StartEmulator({ServiceKeytab()});
  IcprBackend backend(Options(Kerberos(GetParam())));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(SubmitAndRetrieve(backend, "krb-" + std::to_string(i)), "");
  EXPECT_TRUE(backend.Ping(target_, kCaller).ok());
  const IcprBackendCounters c = backend.counters();
  EXPECT_EQ(c.connections_opened, 1u) << "one pooled Kerberos connection";
  EXPECT_EQ(c.auth.kerberos_binds, 1u);
  EXPECT_EQ(c.auth.ntlm_binds, 0u);
  EXPECT_EQ(c.auth.last_mechanism, mechanism());
  EXPECT_EQ(emulator_->stats().submits, 3u);
  EXPECT_EQ(emulator_->stats().failed_logons, 0u);
}

TEST_P(IcprKerberosMechs, BelowPacketPrivacyTheCaSaysAccessDenied) {
  StartEmulator({ServiceKeytab()});
  IcprAuthOptions auth = Kerberos(GetParam());
  auth.level = rpc::authn_level::kPktIntegrity;
  IcprBackend backend(Options(auth));
  auto s = backend.Submit(Csr("integrity"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kAccessDenied) << s.status();
  EXPECT_EQ(backend.counters().auth.kerberos_binds, 1u) << "the bind worked; the CA refused the call";
  EXPECT_EQ(emulator_->stats().refused_calls, 1u);
  EXPECT_EQ(emulator_->stats().submits, 0u);
}

INSTANTIATE_TEST_SUITE_P(BothMechs, IcprKerberosMechs, ::testing::Values(gss::Mech::kSpnego, gss::Mech::kKerberos),
                         [](const auto& info) { return std::string(gss::MechName(info.param)); });

// A host joined with realmd/adcli: /etc/krb5.keytab holds the computer account (CONN$) next to
// the host's own service principals. The connector authenticates as the computer account,
// as the original did running as Network Service, and the CA sees EXAMPLE\CONN$.
TEST_F(IcprKerberosTest, AMachineKeytabAuthenticatesAsTheComputerAccount) {
  const auto machine_keytab = dir_.path() / "krb5.keytab";
  for (const std::string& principal : {std::string("host/conn.adcsc.test"), std::string("CONN$")}) {
    ASSERT_EQ(kdc_->AddRandomKeyPrincipal(principal), "");
    ASSERT_EQ(kdc_->ExportKeytab(principal, machine_keytab), "");
  }
  StartEmulator({ServiceKeytab()});
  IcprAuthOptions auth = Kerberos();
  auth.kerberos = gss::CredentialSource::Keytab("CONN$@ADCSC.TEST", machine_keytab.string());
  IcprBackend backend(Options(auth));
  const CallerIdentity machine{"EXAMPLE\\CONN$"};
  static auto key = pki::GenerateKey(pki::KeyType::kEcP256);
  auto s = backend.Submit({target_, machine, *pki::MakeCsr(key->get(), "machine-account", {}), "JamfDevice"});
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->disposition, Disposition::kIssued);
  // Only the submitter may retrieve: the CA recorded the computer account.
  auto r = backend.Retrieve({target_, machine, s->request_id});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cert_der, s->cert_der);
  IcprAuthOptions ntlm;
  ntlm.ntlm = Ntlm();
  IcprBackend as_service_account(Options(ntlm));
  auto other = as_service_account.Retrieve({target_, kCaller, s->request_id});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(HresultOf(other.status()), hr::kAccessDenied) << other.status();
  EXPECT_THAT(backend.counters().auth.last_mechanism, "negotiate/kerberos");
}

// The CA checks a Kerberos caller under the same DOMAIN\user as an NTLM one: what one
// submitted the other may retrieve, and nobody else may.
TEST_F(IcprKerberosTest, NegotiateUsesKerberosAndTheCaSeesTheSameAccountAsWithNtlm) {
  StartEmulator({ServiceKeytab()});
  IcprAuthOptions negotiate = Kerberos();
  negotiate.mode = IcprAuthMode::kNegotiate;
  negotiate.ntlm = Ntlm();
  IcprBackend kerberos(Options(negotiate));
  auto s = kerberos.Submit(Csr("shared-account"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->disposition, Disposition::kIssued);
  EXPECT_EQ(kerberos.counters().auth.last_mechanism, "negotiate/kerberos");
  EXPECT_EQ(kerberos.counters().auth.ntlm_fallbacks, 0u);
  EXPECT_EQ(kerberos.counters().auth.ntlm_binds, 0u);

  IcprAuthOptions ntlm;
  ntlm.ntlm = Ntlm();
  IcprBackend same(Options(ntlm));
  auto r = same.Retrieve({target_, kCaller, s->request_id});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->cert_der, s->cert_der);
  EXPECT_EQ(same.counters().auth.last_mechanism, "ntlm");

  ntlm.ntlm = Ntlm("other");
  IcprBackend other(Options(ntlm));
  auto refused = other.Retrieve({target_, {"EXAMPLE\\other"}, s->request_id});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(HresultOf(refused.status()), hr::kAccessDenied) << refused.status();
}

TEST_F(IcprKerberosTest, NegotiateFallsBackToNtlmWhenTheKdcIsUnreachable) {
  StartEmulator({ServiceKeytab()});
  ScopedEnv unreachable("KRB5_CONFIG", kdc_->WriteUnreachableKrb5Conf().string());
  IcprAuthOptions negotiate = Kerberos();
  negotiate.mode = IcprAuthMode::kNegotiate;
  negotiate.ntlm = Ntlm();
  IcprBackend backend(Options(negotiate));
  ASSERT_EQ(SubmitAndRetrieve(backend, "fallback"), "");
  const IcprAuthStats stats = backend.counters().auth;
  EXPECT_EQ(stats.ntlm_fallbacks, 1u);
  EXPECT_EQ(stats.ntlm_binds, 1u);
  EXPECT_EQ(stats.kerberos_binds, 0u);
  EXPECT_EQ(stats.last_mechanism, "ntlm");
  EXPECT_EQ(backend.counters().connections_opened, 1u) << "the NTLM connection is pooled and reused";
}

TEST_F(IcprKerberosTest, NegotiateWithoutNtlmReportsTheKerberosError) {
  StartEmulator({ServiceKeytab()});
  ScopedEnv unreachable("KRB5_CONFIG", kdc_->WriteUnreachableKrb5Conf().string());
  IcprAuthOptions negotiate = Kerberos();
  negotiate.mode = IcprAuthMode::kNegotiate;  // and no NTLM credentials
  IcprBackend backend(Options(negotiate));
  auto s = backend.Submit(Csr("no-fallback"));
  ASSERT_FALSE(s.ok());
  EXPECT_FALSE(IsOutcomeUnknown(s.status())) << "nothing reached the CA";
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("cannot reach the KDC for realm ADCSC.TEST"));
  EXPECT_EQ(backend.counters().auth.ntlm_fallbacks, 0u);
  EXPECT_EQ(backend.counters().auth.ntlm_binds, 0u);
  EXPECT_EQ(emulator_->stats().calls, 0u);
}

TEST_F(IcprKerberosTest, KerberosWorksWhereTheDomainBlocksNtlm) {
  StartEmulator({ServiceKeytab(), /*ntlm=*/false});
  IcprBackend backend(Options(Kerberos()));
  ASSERT_EQ(SubmitAndRetrieve(backend, "no-ntlm-domain"), "");
  EXPECT_EQ(backend.counters().auth.last_mechanism, "negotiate/kerberos");
}

TEST_F(IcprKerberosTest, NtlmIsRefusedClearlyWhereTheDomainBlocksNtlm) {
  StartEmulator({ServiceKeytab(), /*ntlm=*/false});
  IcprAuthOptions ntlm;
  ntlm.ntlm = Ntlm();
  IcprBackend backend(Options(ntlm));
  auto s = backend.Submit(Csr("ntlm-blocked"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kAccessDenied) << s.status();
  EXPECT_FALSE(IsOutcomeUnknown(s.status())) << "refused at the bind, before any request";
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("authentication_type_not_recognized"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("may not accept NTLM"));
  EXPECT_EQ(emulator_->stats().calls, 0u);
}

// Negotiate falls back only when Kerberos could not start here; a CA that refused our ticket
// would refuse an NTLM logon to a domain that wants Kerberos just as well, and falling back
// would hide the misconfiguration (and is what a downgrade attack wants).
TEST_F(IcprKerberosTest, ACaThatRefusesOurTicketIsNoReasonToFallBack) {
  StartEmulator({StaleKeytab()});  // NTLM allowed, and EXAMPLE\svc-adcsc would log on
  IcprAuthOptions negotiate = Kerberos(gss::Mech::kSpnego, kStaleSpn);
  negotiate.mode = IcprAuthMode::kNegotiate;
  negotiate.ntlm = Ntlm();
  IcprBackend backend(Options(negotiate));
  auto s = backend.Submit(Csr("stale-key"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kAccessDenied) << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("did not accept our Kerberos ticket"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("host@stale.adcsc.test"));
  const IcprAuthStats stats = backend.counters().auth;
  EXPECT_EQ(stats.ntlm_fallbacks, 0u);
  EXPECT_EQ(stats.ntlm_binds, 0u);
  EXPECT_EQ(stats.kerberos_binds, 0u);
  EXPECT_EQ(emulator_->stats().calls, 0u);
}

// The authenticator's credentials on a clock the test moves: the ticket is renewed once the
// clock is within the margin of its end, a failed renewal keeps a ticket that is still valid,
// and past its end a failed renewal is an error rather than a ticket used beyond its life.
TEST_F(IcprKerberosTest, TicketsAreRenewedBeforeTheyExpire) {
  StartEmulator({ServiceKeytab()});
  auto offset = std::make_shared<std::atomic<int64_t>>(0);  // seconds ahead of the real clock
  IcprAuthOptions auth = Kerberos(gss::Mech::kKerberos);
  auth.kerberos_options.renew_margin = std::chrono::minutes(5);
  auth.kerberos_options.now = [offset] {
    return std::chrono::system_clock::now() + std::chrono::seconds(offset->load());
  };
  IcprBackendOptions o = Options(auth);
  o.max_idle_connections = 0;  // every call binds, and so asks for the credentials
  IcprBackend backend(o);
  constexpr int64_t kTicketLife = 10 * 3600;  // the realm's max_life (mit_kdc.h)

  ASSERT_EQ(SubmitAndRetrieve(backend, "renew-0"), "");
  EXPECT_EQ(backend.counters().auth.credential_renewals, 0u);

  offset->store(kTicketLife - 60);  // within the margin of the first ticket's end
  ASSERT_EQ(SubmitAndRetrieve(backend, "renew-1"), "");
  EXPECT_EQ(backend.counters().auth.credential_renewals, 1u) << "renewed once, then not due";
  ASSERT_EQ(SubmitAndRetrieve(backend, "renew-2"), "");
  EXPECT_EQ(backend.counters().auth.credential_renewals, 1u);

  {
    // Within the margin of the second ticket's end, with the KDC out of reach: the renewal
    // fails and the ticket, still valid, is used (its service ticket is in its cache).
    ScopedEnv unreachable("KRB5_CONFIG", kdc_->WriteUnreachableKrb5Conf().string());
    offset->store(2 * kTicketLife - 120);
    ASSERT_EQ(SubmitAndRetrieve(backend, "renew-failed-in-time"), "");
    EXPECT_EQ(backend.counters().auth.credential_renewals, 1u);

    // Past its end: an error naming why the renewal failed.
    offset->store(2 * kTicketLife + 60);
    auto late = backend.Submit(Csr("renew-failed-too-late"));
    ASSERT_FALSE(late.ok()) << "a ticket past its end (on the credentials' clock) must not be used";
    EXPECT_THAT(std::string(late.status().message()), HasSubstr("cannot reach the KDC for realm ADCSC.TEST"));
    EXPECT_FALSE(IsOutcomeUnknown(late.status()));
  }
  // The KDC back: renewed, and calls work again.
  ASSERT_EQ(SubmitAndRetrieve(backend, "renew-3"), "");
  EXPECT_EQ(backend.counters().auth.credential_renewals, 2u);
  EXPECT_EQ(backend.counters().auth.ntlm_binds, 0u);
}

// With pooled connections no new bind asks for the credentials; the renewal still happens on
// the calls (and on the readiness probe's pings), so the TGT never lapses under a busy pool.
TEST_F(IcprKerberosTest, APooledConnectionStillRenewsTheTicketInTime) {
  StartEmulator({ServiceKeytab()});
  auto offset = std::make_shared<std::atomic<int64_t>>(0);
  IcprAuthOptions auth = Kerberos();
  auth.kerberos_options.renew_margin = std::chrono::minutes(5);
  auth.kerberos_options.now = [offset] {
    return std::chrono::system_clock::now() + std::chrono::seconds(offset->load());
  };
  IcprBackend backend(Options(auth));
  ASSERT_EQ(SubmitAndRetrieve(backend, "pooled-renew-0"), "");
  const int64_t first_end = backend.counters().auth.ticket_expiry_unix;
  EXPECT_GT(first_end, 0);
  offset->store(10 * 3600 - 60);  // within the margin of the first ticket's end
  ASSERT_EQ(SubmitAndRetrieve(backend, "pooled-renew-1"), "");
  const IcprBackendCounters c = backend.counters();
  EXPECT_EQ(c.connections_opened, 1u) << "the pooled connection was reused throughout";
  EXPECT_EQ(c.auth.credential_renewals, 1u);
  EXPECT_GT(c.auth.ticket_expiry_unix, first_end);
}

}  // namespace
}  // namespace adcsc::ca
