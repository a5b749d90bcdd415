// CertAdminSession (MS-CSRA over DCOM) against the ADCS emulator in this process on loopback:
// activation, the CA's name and validity, approving and denying a pending request and
// revoking a certificate (an ICPR retrieve afterwards answers issued / denied / revoked),
// releasing a hold, the errors operators see (no Officer right, unknown or wrongly-cased
// serial, unknown request), the refusal below packet privacy and of an activation below
// packet integrity, RemRelease, and the emulator's per-operation counts. Over NTLM, and over
// Kerberos against a throw-away MIT realm (skipped when krb5kdc is not installed).
#include <gtest/gtest.h>

#include "gmock/gmock.h"
#include "node/ca/hresult.h"
#include "node/ca/icpr_auth.h"
#include "node/ca/icpr_backend.h"
#include "node/dcom/cert_admin_client.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"
#include "tests/testing/mit_kdc.h"
#include "tests/testing/temp_dir.h"
#include "tools/adcs-emulator/emulator.h"

namespace adcsc::dcom {
namespace {

using ::testing::HasSubstr;
namespace hr = adcsc::ca::hr;

constexpr char kCa[] = "Test-CA";
constexpr char kPassword[] = "Pw-1";
const adcsc::ca::CallerIdentity kCaller{"EXAMPLE\\svc"};
constexpr char kClient[] = "svc@ADCSC.TEST";
constexpr char kCaSpn[] = "host/ca.adcsc.test";

// The NTLM or Kerberos authenticator the icpr backend would use, as a Connector.
Connector ConnectorFor(std::shared_ptr<adcsc::ca::IcprAuthenticator> auth) {
  return [auth](rpc::ClientOptions base, const std::vector<SyntaxId>& interfaces, uint8_t level) {
    return auth->Connect(std::move(base), interfaces, level);
  };
}

class CertAdminTest : public ::testing::Test {
 protected:
  void SetUp() override { StartEmulator({}); }
  void TearDown() override {
    if (emulator_) emulator_->Stop();
  }

  void StartEmulator(std::filesystem::path keytab) {
    emulator::EmulatorConfig c;
    c.data_dir = dir_.path() / "emulator";
    c.ca.dir = c.data_dir / "ca";
    c.ca.ca_name = kCa;
    c.ca.durable = false;
    adcsc::ca::TemplatePolicy t;
    t.name = "JamfDevice";
    adcsc::ca::TemplatePolicy pending;
    pending.name = "Pending";
    pending.policy = adcsc::ca::IssuancePolicy::kPending;
    c.ca.templates = {t, pending};
    c.accounts.push_back({"EXAMPLE", "svc", *ntlm::NtHash(kPassword)});
    c.accounts.push_back({"EXAMPLE", "enroll-only", *ntlm::NtHash(kPassword)});
    c.names = {"EXAMPLE", "CA01", "", ""};
    c.ca_officers = {"example\\SVC"};  // compared case-insensitively, as Windows accounts
    c.kerberos_keytab = keytab;
    std::filesystem::create_directories(c.data_dir);
    emulator_ = std::make_unique<emulator::Emulator>(c);
    absl::Status started = emulator_->Start();
    ASSERT_TRUE(started.ok()) << started;
  }

  static std::shared_ptr<adcsc::ca::IcprAuthenticator> Ntlm(const std::string& user = "svc") {
    adcsc::ca::IcprAuthOptions a;
    a.ntlm = ntlm::Credentials{"EXAMPLE", user, *ntlm::NtHash(kPassword), "TEST"};
    return *adcsc::ca::IcprAuthenticator::Create(a);
  }

  CertAdminOptions Options() const {
    CertAdminOptions o;
    o.host = "127.0.0.1";
    o.authority = kCa;
    o.activation_port = emulator_->epm_port();
    return o;
  }

  absl::StatusOr<std::unique_ptr<CertAdminSession>> Open(std::shared_ptr<adcsc::ca::IcprAuthenticator> auth,
                                                         CertAdminOptions o) {
    return CertAdminSession::Open(o, ConnectorFor(std::move(auth)));
  }
  absl::StatusOr<std::unique_ptr<CertAdminSession>> Open() { return Open(Ntlm(), Options()); }

  // Submits over MS-ICPR as the service account.
  adcsc::ca::CaResponse Submit(const std::string& cn, const std::string& tmpl) {
    adcsc::ca::IcprBackendOptions o;
    o.auth = Ntlm();
    o.epm_port = emulator_->epm_port();
    adcsc::ca::IcprBackend backend(o);
    static auto key = pki::GenerateKey(pki::KeyType::kEcP256);
    auto r = backend.Submit({target_, kCaller, *pki::MakeCsr(key->get(), cn, {}), tmpl});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : adcsc::ca::CaResponse{};
  }
  adcsc::ca::CaResponse Retrieve(uint32_t id) {
    adcsc::ca::IcprBackendOptions o;
    o.auth = Ntlm();
    o.epm_port = emulator_->epm_port();
    adcsc::ca::IcprBackend backend(o);
    auto r = backend.Retrieve({target_, kCaller, id});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : adcsc::ca::CaResponse{};
  }
  std::string SerialOf(const adcsc::ca::CaResponse& r) {
    auto cert = pki::CertFromDer(r.cert_der);
    return cert.ok() ? pki::SerialHex(cert->get()) : "";
  }

  adcsc::testing::TempDir dir_;
  std::unique_ptr<emulator::Emulator> emulator_;
  const adcsc::ca::CaTarget target_{"127.0.0.1", kCa};
};

TEST_F(CertAdminTest, ActivatesAndShowsTheCaNameAndValidity) {
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->exporter_port(), emulator_->dcom_port());
  EXPECT_EQ((*session)->mechanism(), "ntlm");
  auto info = (*session)->GetCaInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->name, kCa);
  EXPECT_EQ(info->cert_der, emulator_->ca().CaCertificateDer());
  EXPECT_EQ(info->not_after_unix, pki::NotAfterUnix(emulator_->ca().ca_certificate()));
  EXPECT_GT(info->not_after_unix, info->not_before_unix);
  ASSERT_TRUE((*session)->Release().ok());
  const auto stats = emulator_->stats();
  EXPECT_EQ(stats.admin_calls.at("RemoteCreateInstance"), 1u);
  EXPECT_EQ(stats.admin_calls.at("GetCAProperty"), 2u);
  EXPECT_EQ(stats.admin_calls.at("RemRelease"), 1u);
}

TEST_F(CertAdminTest, ApprovesAPendingRequestThatIcprThenRetrievesIssued) {
  const auto submitted = Submit("pending-approve", "Pending");
  ASSERT_EQ(submitted.disposition, adcsc::ca::Disposition::kUnderSubmission);
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  auto disposition = (*session)->Resubmit(submitted.request_id);
  ASSERT_TRUE(disposition.ok()) << disposition.status();
  EXPECT_EQ(*disposition, 3u);  // CR_DISP_ISSUED
  const auto retrieved = Retrieve(submitted.request_id);
  EXPECT_EQ(retrieved.disposition, adcsc::ca::Disposition::kIssued);
  EXPECT_FALSE(retrieved.cert_der.empty());
  EXPECT_EQ(emulator_->stats().admin_calls.at("ResubmitRequest"), 1u);
}

TEST_F(CertAdminTest, DeniesAPendingRequest) {
  const auto submitted = Submit("pending-deny", "Pending");
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Deny(submitted.request_id).ok());
  EXPECT_EQ(Retrieve(submitted.request_id).disposition, adcsc::ca::Disposition::kDenied);
  // Denying it again: it is no longer pending.
  absl::Status again = (*session)->Deny(submitted.request_id);
  EXPECT_EQ(adcsc::ca::HresultOf(again), hr::kBadRequestStatus) << again;
}

TEST_F(CertAdminTest, RevokesBySerialAndIcprRetrievesRevoked) {
  const auto issued = Submit("to-revoke", "JamfDevice");
  ASSERT_EQ(issued.disposition, adcsc::ca::Disposition::kIssued);
  const std::string serial = SerialOf(issued);
  ASSERT_FALSE(serial.empty());
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE((*session)->Revoke(serial, crl_reason::kKeyCompromise, 0).ok());
  const auto retrieved = Retrieve(issued.request_id);
  EXPECT_EQ(retrieved.disposition, adcsc::ca::Disposition::kRevoked);
  EXPECT_EQ(retrieved.cert_der, issued.cert_der);
  auto rows = emulator_->ca().List();
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->back().revocation_reason, crl_reason::kKeyCompromise);
  EXPECT_GT(rows->back().revoked_unix_millis, 0);
  // Revoking again updates the reason and date (MS-CSRA; ICertAdmin::RevokeCertificate).
  const uint64_t later = FiletimeFromUnixMillis(4'000'000'000'000);
  ASSERT_TRUE((*session)->Revoke(serial, crl_reason::kSuperseded, later).ok());
  rows = emulator_->ca().List();
  EXPECT_EQ(rows->back().revocation_reason, crl_reason::kSuperseded);
  EXPECT_EQ(rows->back().revoked_unix_millis, 4'000'000'000'000);
}

TEST_F(CertAdminTest, ASerialIsComparedAsTheCaWritesIt) {
  const auto issued = Submit("serial-case", "JamfDevice");
  std::string upper = SerialOf(issued);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  absl::Status wrong_case = (*session)->Revoke(upper, crl_reason::kUnspecified, 0);
  if (upper != SerialOf(issued)) {
    EXPECT_EQ(adcsc::ca::HresultOf(wrong_case), hr::kInvalidArg) << wrong_case;
    EXPECT_THAT(wrong_case.message(), HasSubstr("The parameter is incorrect."));
  }
  absl::Status unknown = (*session)->Revoke("00ff00ff", crl_reason::kUnspecified, 0);
  EXPECT_EQ(adcsc::ca::HresultOf(unknown), hr::kInvalidArg) << unknown;
  EXPECT_THAT(unknown.message(), HasSubstr("RevokeCertificate(00ff00ff, unspecified)"));
}

TEST_F(CertAdminTest, AHoldIsReleasedWithMaxDword) {
  const auto issued = Submit("hold", "JamfDevice");
  const std::string serial = SerialOf(issued);
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  // Not on hold yet: nothing to release.
  EXPECT_EQ(adcsc::ca::HresultOf((*session)->Revoke(serial, crl_reason::kReleaseFromHold, 0)), hr::kBadRequestStatus);
  ASSERT_TRUE((*session)->Revoke(serial, crl_reason::kCertificateHold, 0).ok());
  EXPECT_EQ(Retrieve(issued.request_id).disposition, adcsc::ca::Disposition::kRevoked);
  ASSERT_TRUE((*session)->Revoke(serial, crl_reason::kReleaseFromHold, 0).ok());
  EXPECT_EQ(Retrieve(issued.request_id).disposition, adcsc::ca::Disposition::kIssued);
}

TEST_F(CertAdminTest, AnUnknownRequestIsPropertyEmpty) {
  auto session = Open();
  ASSERT_TRUE(session.ok()) << session.status();
  auto r = (*session)->Resubmit(999);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(adcsc::ca::HresultOf(r.status()), hr::kPropertyEmpty) << r.status();
}

TEST_F(CertAdminTest, AnAccountWithoutTheOfficerRightIsDenied) {
  const auto issued = Submit("no-officer", "JamfDevice");
  const auto pending = Submit("no-officer-pending", "Pending");
  auto session = Open(Ntlm("enroll-only"), Options());
  ASSERT_TRUE(session.ok()) << session.status();  // activation and reading need no Officer right
  EXPECT_TRUE((*session)->GetCaInfo().ok());
  absl::Status revoke = (*session)->Revoke(SerialOf(issued), crl_reason::kUnspecified, 0);
  EXPECT_EQ(adcsc::ca::HresultOf(revoke), hr::kAccessDenied) << revoke;
  EXPECT_THAT(revoke.message(), HasSubstr("Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)"));
  EXPECT_EQ(adcsc::ca::HresultOf((*session)->Resubmit(pending.request_id).status()), hr::kAccessDenied);
  EXPECT_EQ(adcsc::ca::HresultOf((*session)->Deny(pending.request_id)), hr::kAccessDenied);
  EXPECT_EQ(Retrieve(issued.request_id).disposition, adcsc::ca::Disposition::kIssued);
  EXPECT_EQ(Retrieve(pending.request_id).disposition, adcsc::ca::Disposition::kUnderSubmission);
  EXPECT_EQ(emulator_->stats().admin_refused, 3u);
}

TEST_F(CertAdminTest, AdminCallsBelowPacketPrivacyAreRefused) {
  const auto issued = Submit("integrity", "JamfDevice");
  CertAdminOptions o = Options();
  o.call_level = rpc::authn_level::kPktIntegrity;
  auto session = Open(Ntlm(), o);
  ASSERT_TRUE(session.ok()) << session.status();
  absl::Status revoke = (*session)->Revoke(SerialOf(issued), crl_reason::kUnspecified, 0);
  EXPECT_EQ(adcsc::ca::HresultOf(revoke), hr::kAccessDenied) << revoke;
  EXPECT_EQ(Retrieve(issued.request_id).disposition, adcsc::ca::Disposition::kIssued);
}

TEST_F(CertAdminTest, ActivationBelowPacketIntegrityIsRefused) {
  CertAdminOptions o = Options();
  o.activation_level = rpc::authn_level::kConnect;
  auto session = Open(Ntlm(), o);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(adcsc::ca::HresultOf(session.status()), hr::kAccessDenied) << session.status();
  EXPECT_THAT(session.status().message(), HasSubstr("activating the CA admin object"));
  // Integrity is enough for activation (the calls still go at privacy).
  o.activation_level = rpc::authn_level::kPktIntegrity;
  auto ok = Open(Ntlm(), o);
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST_F(CertAdminTest, AWrongCaNameIsInvalidArg) {
  CertAdminOptions o = Options();
  o.authority = "Other-CA";
  auto session = Open(Ntlm(), o);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(adcsc::ca::HresultOf((*session)->GetCaInfo().status()), hr::kInvalidArg);
}

TEST_F(CertAdminTest, TheCaDownAtActivationIsServerUnavailable) {
  CertAdminOptions o = Options();
  emulator_->Stop();
  auto session = Open(Ntlm(), o);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(adcsc::ca::HresultOf(session.status()), hr::kRpcServerUnavailable) << session.status();
}

// The same over Kerberos: activation and the exporter connection each get a service ticket.
class CertAdminKerberosTest : public CertAdminTest {
 protected:
  static void SetUpTestSuite() {
    if (!adcsc::testing::MitKdc::Installed()) return;
    kdc_ = new adcsc::testing::MitKdc();
    std::string error = kdc_->Start();
    for (const std::string& step :
         {kdc_->AddRandomKeyPrincipal(kClient), kdc_->ExportKeytab(kClient, kdc_->dir() / "client.keytab"),
          kdc_->AddRandomKeyPrincipal(kCaSpn), kdc_->ExportKeytab(kCaSpn, kdc_->dir() / "service.keytab")}) {
      if (error.empty()) error = step;
    }
    setup_error_ = new std::string(error);
    kdc_->UseForThisProcess();
  }
  static void TearDownTestSuite() {
    delete kdc_;
    kdc_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }
  void SetUp() override {
    if (kdc_ == nullptr) GTEST_SKIP() << "MIT krb5kdc is not installed";
    ASSERT_EQ(*setup_error_, "");
    StartEmulator(kdc_->dir() / "service.keytab");
  }
  static std::shared_ptr<adcsc::ca::IcprAuthenticator> Kerberos() {
    adcsc::ca::IcprAuthOptions a;
    a.mode = adcsc::ca::IcprAuthMode::kKerberos;
    a.kerberos = gss::CredentialSource::Keytab(kClient, (kdc_->dir() / "client.keytab").string());
    a.spn = kCaSpn;
    return *adcsc::ca::IcprAuthenticator::Create(a);
  }
  static adcsc::testing::MitKdc* kdc_;
  static std::string* setup_error_;
};
adcsc::testing::MitKdc* CertAdminKerberosTest::kdc_ = nullptr;
std::string* CertAdminKerberosTest::setup_error_ = nullptr;

TEST_F(CertAdminKerberosTest, RevokesAndApprovesOverKerberos) {
  const auto issued = Submit("krb-revoke", "JamfDevice");
  const auto pending = Submit("krb-pending", "Pending");
  auto session = Open(Kerberos(), Options());
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ((*session)->mechanism(), "negotiate/kerberos");
  ASSERT_TRUE((*session)->Revoke(SerialOf(issued), crl_reason::kCessationOfOperation, 0).ok());
  auto disposition = (*session)->Resubmit(pending.request_id);
  ASSERT_TRUE(disposition.ok()) << disposition.status();
  EXPECT_EQ(*disposition, 3u);
  ASSERT_TRUE((*session)->Release().ok());
  EXPECT_EQ(Retrieve(issued.request_id).disposition, adcsc::ca::Disposition::kRevoked);
  EXPECT_EQ(Retrieve(pending.request_id).disposition, adcsc::ca::Disposition::kIssued);
}

}  // namespace
}  // namespace adcsc::dcom
