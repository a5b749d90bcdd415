// IcprBackend against the ADCS emulator running in this process on loopback: connection
// pooling and reuse, transparent replacement of a dead pooled connection, the retry rule
// (retrieve once, submit never), the refusal below packet privacy (NTLM and Kerberos), and
// HRESULT mapping, with a Kerberos failure's cause kept for the client's answer.
// The chain an issued answer carries reaches a ChainRecorder.
#include "node/ca/icpr_backend.h"

#include <gtest/gtest.h>

#include "node/ca/chain_recorder.h"
#include "node/ca/hresult.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"
#include "tests/testing/mit_kdc.h"
#include "tests/testing/temp_dir.h"
#include "tools/adcs-emulator/emulator.h"

namespace adcsc::ca {
namespace {

constexpr char kCa[] = "Test-CA";
const CallerIdentity kCaller{"EXAMPLE\\svc"};

class IcprBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { StartEmulator(0); }

  void StartEmulator(uint16_t epm_port) {
    emulator::EmulatorConfig c;
    c.data_dir = dir_.path() / "emulator";
    c.epm_port = epm_port;
    c.ca.dir = c.data_dir / "ca";
    c.ca.ca_name = kCa;
    c.ca.durable = false;
    TemplatePolicy t;
    t.name = "JamfDevice";
    TemplatePolicy pending;
    pending.name = "Pending";
    pending.policy = IssuancePolicy::kPending;
    c.ca.templates = {t, pending};
    c.accounts.push_back({"EXAMPLE", "svc", *ntlm::NtHash("Pw-1")});
    c.names = {"EXAMPLE", "CA01", "", ""};
    std::filesystem::create_directories(c.data_dir);
    emulator_ = std::make_unique<emulator::Emulator>(c);
    ASSERT_TRUE(emulator_->Start().ok());
  }

  static std::shared_ptr<IcprAuthenticator> Ntlm(std::string password = "Pw-1",
                                                 uint8_t level = rpc::authn_level::kPktPrivacy) {
    IcprAuthOptions a;
    a.ntlm = ntlm::Credentials{"EXAMPLE", "svc", *ntlm::NtHash(password), "TEST"};
    a.level = level;
    return *IcprAuthenticator::Create(a);
  }

  IcprBackendOptions Options() {
    IcprBackendOptions o;
    o.auth = Ntlm();
    o.epm_port = emulator_->epm_port();
    o.call_timeout = std::chrono::seconds(10);
    return o;
  }

  SubmitRequest Csr(const std::string& cn, const std::string& tmpl = "JamfDevice") {
    static auto key = pki::GenerateKey(pki::KeyType::kEcP256);
    return {target_, kCaller, *pki::MakeCsr(key->get(), cn, {}), tmpl};
  }

  testing::TempDir dir_;
  std::unique_ptr<emulator::Emulator> emulator_;
  const CaTarget target_{"127.0.0.1", kCa};
};

TEST_F(IcprBackendTest, SubmitAndRetrieveReuseOnePooledConnection) {
  IcprBackend backend(Options());
  for (int i = 0; i < 5; ++i) {
    auto s = backend.Submit(Csr("device-" + std::to_string(i)));
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->disposition, Disposition::kIssued);
    EXPECT_FALSE(s->cert_der.empty());
    auto r = backend.Retrieve({target_, kCaller, s->request_id});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->cert_der, s->cert_der);
  }
  EXPECT_EQ(backend.counters().connections_opened, 1u);
  EXPECT_EQ(backend.counters().connections_reused, 9u);
  EXPECT_EQ(backend.counters().endpoint_lookups, 1u);
}

// The CA's certificate travels with an issued certificate (pctbCertChain, a PKCS#7 of the leaf
// and its chain): the backend hands on the chain without the leaf, and a ChainRecorder in
// front of it learns the CA's certificate and its expiry (the node reports it).
TEST_F(IcprBackendTest, AnIssuedAnswerCarriesTheCaCertificateAndTheRecorderLearnsIt) {
  IcprBackend backend(Options());
  ChainRecorder recorder(&backend);
  EXPECT_TRUE(recorder.Certificates().empty());
  auto s = recorder.Submit(Csr("chain"));
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->chain_der.size(), 1u);
  EXPECT_EQ(s->chain_der[0], emulator_->ca().CaCertificateDer());
  auto r = recorder.Retrieve({target_, kCaller, s->request_id});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->chain_der, s->chain_der);
  auto known = recorder.Certificates();
  ASSERT_EQ(known.size(), 1u);
  EXPECT_EQ(known[0].ca_config, "127.0.0.1\\" + std::string(kCa));
  EXPECT_EQ(known[0].subject, pki::NameToString(X509_get_subject_name(emulator_->ca().ca_certificate())));
  EXPECT_EQ(known[0].not_after_unix, pki::NotAfterUnix(emulator_->ca().ca_certificate()));
  // A pending answer has no chain and changes nothing.
  ASSERT_TRUE(recorder.Submit(Csr("pending-chain", "Pending")).ok());
  EXPECT_EQ(recorder.Certificates().size(), 1u);
}

TEST_F(IcprBackendTest, WithoutAPoolEveryCallBindsAgain) {
  IcprBackendOptions o = Options();
  o.max_idle_connections = 0;
  IcprBackend backend(o);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(backend.Submit(Csr("nopool-" + std::to_string(i))).ok());
  EXPECT_EQ(backend.counters().connections_opened, 3u);
  EXPECT_EQ(backend.counters().endpoint_lookups, 1u) << "the port is remembered";
}

TEST_F(IcprBackendTest, PendingThenApproved) {
  IcprBackend backend(Options());
  auto s = backend.Submit(Csr("pending", "Pending"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->disposition, Disposition::kUnderSubmission);
  ASSERT_TRUE(emulator_->ca().Approve(s->request_id).ok());
  auto r = backend.Retrieve({target_, kCaller, s->request_id});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->disposition, Disposition::kIssued);
}

TEST_F(IcprBackendTest, ADeadPooledConnectionIsReplacedTransparently) {
  IcprBackend backend(Options());
  ASSERT_TRUE(backend.Submit(Csr("before")).ok());
  const uint16_t epm = emulator_->epm_port();
  emulator_->Stop();
  emulator_.reset();
  StartEmulator(epm);  // a restarted CA: same endpoint mapper, new ICertPassage port
  auto s = backend.Submit(Csr("after"));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->disposition, Disposition::kIssued);
  EXPECT_EQ(backend.counters().connections_opened, 2u);
  EXPECT_EQ(backend.counters().retries, 0u) << "no call was retried: the dead connection was never used";
}

TEST_F(IcprBackendTest, RetrieveIsRetriedOnceAndSubmitNever) {
  IcprBackend backend(Options());
  auto s = backend.Submit(Csr("retry"));
  ASSERT_TRUE(s.ok()) << s.status();
  emulator::Faults f;
  f.failure_rate = 1;  // every call dropped unanswered
  emulator_->set_faults(f);
  auto r = backend.Retrieve({target_, kCaller, s->request_id});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(HresultOf(r.status()), hr::kRpcCallFailed) << r.status();
  EXPECT_EQ(backend.counters().retries, 1u);
  auto again = backend.Submit(Csr("no-retry"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(backend.counters().retries, 1u) << "a submit is never retried";
  EXPECT_EQ(emulator_->stats().dropped_calls, 3u);
  emulator_->set_faults({});
  auto ok = backend.Retrieve({target_, kCaller, s->request_id});
  EXPECT_TRUE(ok.ok()) << ok.status();
}

// A submit the CA took but whose answer was lost (an unsigned fault, a dropped connection)
// is "outcome unknown", so the connector searches before it would submit again; a submit
// refused before anything was sent is not.
TEST_F(IcprBackendTest, ALostAnswerToATakenSubmitIsOutcomeUnknown) {
  IcprBackend backend(Options());
  for (int knob = 0; knob < 2; ++knob) {
    emulator::Faults f;
    (knob == 0 ? f.fault_after_accept : f.drop_after_accept) = 1;
    emulator_->set_faults(f);
    const uint64_t before = emulator_->stats().submits;
    auto lost = backend.Submit(Csr(knob == 0 ? "lost-by-fault" : "lost-by-drop"));
    ASSERT_FALSE(lost.ok());
    EXPECT_TRUE(IsOutcomeUnknown(lost.status())) << lost.status();
    EXPECT_EQ(emulator_->stats().submits, before + 1) << "the CA took it";
    EXPECT_EQ(emulator_->faults().fault_after_accept + emulator_->faults().drop_after_accept, 0);
  }
  EXPECT_EQ(emulator_->stats().lost_answers, 2u);
  // The knobs are spent: the next submit is answered.
  EXPECT_TRUE(backend.Submit(Csr("answered")).ok());
  // Nothing listening: nothing was sent, a definite "not submitted".
  emulator_->Stop();
  auto unreachable = backend.Submit(Csr("unreachable"));
  ASSERT_FALSE(unreachable.ok());
  EXPECT_FALSE(IsOutcomeUnknown(unreachable.status())) << unreachable.status();
}

TEST_F(IcprBackendTest, BelowPacketPrivacyTheCaSaysAccessDenied) {
  IcprBackendOptions o = Options();
  o.auth = Ntlm("Pw-1", rpc::authn_level::kPktIntegrity);
  IcprBackend backend(o);
  auto s = backend.Submit(Csr("integrity"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kAccessDenied) << s.status();
}

TEST_F(IcprBackendTest, WrongPasswordIsAccessDenied) {
  IcprBackendOptions o = Options();
  o.auth = Ntlm("not-it");
  IcprBackend backend(o);
  auto s = backend.Submit(Csr("wrong"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kAccessDenied) << s.status();
  EXPECT_FALSE(backend.Ping(target_, kCaller).ok());
}

TEST_F(IcprBackendTest, PingAndUnknownRequestAndWrongCaName) {
  IcprBackend backend(Options());
  EXPECT_TRUE(backend.Ping(target_, kCaller).ok());
  auto missing = backend.Retrieve({target_, kCaller, 999999});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(HresultOf(missing.status()), hr::kPropertyEmpty) << missing.status();
  auto wrong_ca = backend.Ping({"127.0.0.1", "Other-CA"}, kCaller);
  EXPECT_EQ(HresultOf(wrong_ca), hr::kInvalidArg) << wrong_ca;
}

TEST_F(IcprBackendTest, NoCaListeningIsServerUnavailable) {
  IcprBackendOptions o = Options();
  const uint16_t epm = emulator_->epm_port();
  emulator_->Stop();
  o.epm_port = epm;
  IcprBackend backend(o);
  auto s = backend.Submit(Csr("down"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kRpcServerUnavailable) << s.status();
  EXPECT_NE(s.status().message().find("cannot reach the CA at 127.0.0.1"), std::string_view::npos) << s.status();
}

// The same emulator taking Kerberos only (emulator.ntlm = false), against a throw-away MIT
// realm: the CA host 127.0.0.1 is host/127.0.0.1@ADCSC.TEST, the service account
// svc@ADCSC.TEST, seen by the CA as EXAMPLE\svc.
class IcprBackendKerberosTest : public ::testing::Test {
 protected:
  static constexpr char kClient[] = "svc@ADCSC.TEST";
  static constexpr char kService[] = "host/127.0.0.1@ADCSC.TEST";

  void SetUp() override {
    if (!testing::MitKdc::Installed())
      GTEST_SKIP() << "MIT krb5kdc is not installed (" << testing::MitKdc::kKrb5kdc
                   << "): apt-get install krb5-kdc krb5-admin-server";
    std::string error = kdc_.Start();
    for (const std::string& step :
         {kdc_.AddPrincipal(kClient, "Pw-1"), kdc_.ExportKeytab(kClient, ClientKeytab()),
          kdc_.AddRandomKeyPrincipal(kService), kdc_.ExportKeytab(kService, ServiceKeytab())}) {
      if (error.empty()) error = step;
    }
    ASSERT_EQ(error, "");
    kdc_.UseForThisProcess();
    emulator::EmulatorConfig c;
    c.data_dir = dir_.path() / "emulator";
    c.ca.dir = c.data_dir / "ca";
    c.ca.ca_name = kCa;
    c.ca.durable = false;
    TemplatePolicy t;
    t.name = "JamfDevice";
    c.ca.templates = {t};
    c.ntlm = false;
    c.kerberos_keytab = ServiceKeytab();
    c.kerberos_realm_domain = "EXAMPLE";
    c.names = {"EXAMPLE", "CA01", "", ""};
    std::filesystem::create_directories(c.data_dir);
    emulator_ = std::make_unique<emulator::Emulator>(c);
    ASSERT_TRUE(emulator_->Start().ok());
  }

  std::filesystem::path ClientKeytab() const { return kdc_.dir() / "client.keytab"; }
  std::filesystem::path ServiceKeytab() const { return kdc_.dir() / "service.keytab"; }

  IcprBackendOptions Options(uint8_t level = rpc::authn_level::kPktPrivacy) {
    IcprAuthOptions a;
    a.mode = IcprAuthMode::kKerberos;
    a.kerberos = gss::CredentialSource::Keytab(kClient, ClientKeytab().string());
    a.level = level;
    IcprBackendOptions o;
    o.auth = *IcprAuthenticator::Create(a);
    o.epm_port = emulator_->epm_port();
    o.call_timeout = std::chrono::seconds(10);
    return o;
  }

  SubmitRequest Csr(const std::string& cn) {
    static auto key = pki::GenerateKey(pki::KeyType::kEcP256);
    return {target_, kCaller, *pki::MakeCsr(key->get(), cn, {}), "JamfDevice"};
  }

  testing::MitKdc kdc_;
  testing::TempDir dir_;
  std::unique_ptr<emulator::Emulator> emulator_;
  const CaTarget target_{"127.0.0.1", kCa};
};

// IF_ENFORCEENCRYPTICERTREQUEST holds for Kerberos too: the same account, the same CA, at
// packet privacy issued, at packet integrity E_ACCESSDENIED. (A node cannot be configured
// below privacy, so this is only reachable here.)
TEST_F(IcprBackendKerberosTest, BelowPacketPrivacyTheCaSaysAccessDenied) {
  IcprBackend privacy(Options());
  auto issued = privacy.Submit(Csr("kerberos-privacy"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(issued->disposition, Disposition::kIssued);
  IcprBackend integrity(Options(rpc::authn_level::kPktIntegrity));
  auto refused = integrity.Submit(Csr("kerberos-integrity"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(HresultOf(refused.status()), hr::kAccessDenied) << refused.status();
  EXPECT_EQ(integrity.counters().auth.kerberos_binds, 1u) << "the bind worked; the CA refused the call";
}

// No ticket for the CA (the KDC is down): RPC_S_SEC_PKG_ERROR (nothing reached the CA; a peer
// may take the request), and the cause travels with it for the client's answer
// (MarkAuthFailure).
TEST_F(IcprBackendKerberosTest, AnUnreachableKdcIsASecurityPackageErrorWithTheCause) {
  kdc_.Stop();
  IcprBackend backend(Options());
  auto s = backend.Submit(Csr("kdc-down"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(HresultOf(s.status()), hr::kSecPkgError) << s.status();
  EXPECT_FALSE(IsOutcomeUnknown(s.status()));
  const std::optional<std::string> why = AuthFailureOf(s.status());
  ASSERT_TRUE(why.has_value()) << s.status();
  EXPECT_NE(why->find("cannot reach the KDC for realm ADCSC.TEST"), std::string::npos) << *why;
  EXPECT_EQ(AuthFailureOf(CaError(hr::kRpcServerUnavailable, "no CA")), std::nullopt);
}

}  // namespace
}  // namespace adcsc::ca
