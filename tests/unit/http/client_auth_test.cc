#include "node/http/client_auth.h"

#include <gtest/gtest.h>

#include <fstream>

#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

using adcsc::pki::X509Ptr;

struct Identity {
  adcsc::pki::EvpPkeyPtr key;
  X509Ptr cert;
};

Identity MakeCa(const std::string& cn) {
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto cert = adcsc::pki::MakeSelfSignedCa(key->get(), cn, {}, 5, {"serverAuth", "clientAuth"});
  EXPECT_TRUE(cert.ok()) << cert.status();
  return {std::move(*key), std::move(*cert)};
}

X509Ptr IssueClient(const Identity& ca, const std::string& cn, std::optional<int64_t> now = std::nullopt,
                    int days = 365) {
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto der = adcsc::pki::MakeCsr(key->get(), cn, {});
  auto csr = adcsc::pki::ParseCsr(*der);
  adcsc::pki::IssueOptions o;
  o.validity_days = days;
  o.ekus = {"clientAuth"};
  o.now_unix_seconds = now;
  auto cert = adcsc::pki::IssueCertificate(ca.cert.get(), ca.key.get(), csr->request.get(), o);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return std::move(*cert);
}

class ClientAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = MakeCa("trusted-ca");
    auto pem = adcsc::pki::CertToPem(trust_.cert.get());
    trust_file_ = dir_.path() / "trust.pem";
    std::ofstream(trust_file_) << *pem;
    good_ = IssueClient(trust_, "jamf.example.com");
    auto a = ClientAuthorizer::Create(trust_file_.string(), {adcsc::pki::CertSha256Hex(good_.get())});
    ASSERT_TRUE(a.ok()) << a.status();
    authorizer_ = std::move(*a);
  }
  adcsc::testing::TempDir dir_;
  Identity trust_;
  std::filesystem::path trust_file_;
  X509Ptr good_;
  std::unique_ptr<ClientAuthorizer> authorizer_;
};

TEST_F(ClientAuthTest, TrustedAndPinnedIsAllowed) {
  auto r = authorizer_->Authorize(good_.get(), nullptr);
  EXPECT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.subject, "jamf.example.com");
  EXPECT_EQ(r.pin, adcsc::pki::CertSha256Hex(good_.get()));
}

TEST_F(ClientAuthTest, TrustedButUnpinnedIsRefused) {
  X509Ptr other = IssueClient(trust_, "other.example.com");
  auto r = authorizer_->Authorize(other.get(), nullptr);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.iis_substatus, kIisMapperDenied);
  EXPECT_EQ(r.win32_status, kWin32AccessDenied);
  EXPECT_EQ(r.reason.rfind("403.12 ", 0), 0u) << r.reason;
  EXPECT_NE(r.reason.find("api.client_pins"), std::string::npos) << r.reason;
}

TEST_F(ClientAuthTest, UntrustedIsRefusedEvenWhenPinned) {
  Identity rogue = MakeCa("rogue-ca");
  X509Ptr cert = IssueClient(rogue, "jamf.example.com");
  auto a = ClientAuthorizer::Create(trust_file_.string(), {adcsc::pki::CertSha256Hex(cert.get())});
  auto r = (*a)->Authorize(cert.get(), nullptr);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.iis_substatus, kIisUntrusted);
  // What IIS logs for 403.16 in the original's troubleshooting section: 2148204809.
  EXPECT_EQ(r.win32_status, 2148204809u);
  EXPECT_EQ(r.reason.rfind("403.16 ", 0), 0u) << r.reason;
  EXPECT_NE(r.reason.find("api.client_ca_file"), std::string::npos) << r.reason;
}

TEST_F(ClientAuthTest, ExpiredIsRefusedEvenWhenPinned) {
  const int64_t two_years_ago = std::time(nullptr) - 2 * 365 * 86400;
  X509Ptr expired = IssueClient(trust_, "jamf.example.com", two_years_ago, 30);
  auto a = ClientAuthorizer::Create(trust_file_.string(), {adcsc::pki::CertSha256Hex(expired.get())});
  auto r = (*a)->Authorize(expired.get(), nullptr);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.iis_substatus, kIisExpired) << r.reason;
  EXPECT_EQ(r.win32_status, kCertEExpired);
  EXPECT_NE(r.reason.find("expired"), std::string::npos) << r.reason;
}

// On the clock seam: a decision cached while the certificate was valid does not outlive it, nor
// survive the clock stepping back before it was made (it did: the cache kept answering OK);
// the chain is checked at the clock's time, so no test waits for a certificate to expire.
TEST_F(ClientAuthTest, ACachedDecisionEndsWhenTheCertificateExpiresOrTheClockStepsBack) {
  FakeClock clock(static_cast<int64_t>(std::time(nullptr)) * 1000);
  X509Ptr short_lived = IssueClient(trust_, "jamf.example.com", std::nullopt, /*days=*/2);
  auto a = ClientAuthorizer::Create(trust_file_.string(), {adcsc::pki::CertSha256Hex(short_lived.get())}, &clock);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE((*a)->Authorize(short_lived.get(), nullptr).ok);
  clock.AdvanceMillis(30'000);  // within the cache's 60 s: served from the cache
  EXPECT_TRUE((*a)->Authorize(short_lived.get(), nullptr).ok);
  clock.AdvanceMillis(3LL * 86'400'000);  // past notAfter
  auto r = (*a)->Authorize(short_lived.get(), nullptr);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.iis_substatus, kIisExpired) << r.reason;
  // And the other way round: a clock before notBefore.
  clock.SetUnixMillis((static_cast<int64_t>(std::time(nullptr)) - 86'400) * 1000);
  auto early = (*a)->Authorize(short_lived.get(), nullptr);
  EXPECT_FALSE(early.ok);
  EXPECT_NE(early.reason.find("not yet valid"), std::string::npos) << early.reason;
}

// A rotation's overlap (api.client_pins until): the old client identity is mapped beside the
// new one until its end, refused from that instant with a 403.12 that says why, even when a
// decision for it was cached just before; the new one is unaffected. Driven by the clock seam.
TEST_F(ClientAuthTest, AnOldPinHoldsUntilTheEndOfItsOverlapAndIsRefusedFromThen) {
  const int64_t start_s = static_cast<int64_t>(std::time(nullptr));
  FakeClock clock(start_s * 1000);
  X509Ptr old_identity = IssueClient(trust_, "jamf.example.com");
  X509Ptr new_identity = IssueClient(trust_, "jamf.example.com");
  const std::string old_pin = adcsc::pki::CertSha256Hex(old_identity.get());
  const std::string new_pin = adcsc::pki::CertSha256Hex(new_identity.get());
  const int64_t until_s = start_s + 14 * 86'400;
  auto a = ClientAuthorizer::Create(trust_file_.string(), {old_pin, new_pin}, &clock, {{old_pin, until_s}});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE((*a)->Authorize(old_identity.get(), nullptr).ok);
  EXPECT_TRUE((*a)->Authorize(new_identity.get(), nullptr).ok);
  auto seen = (*a)->SeenCertificates();
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& s : seen) EXPECT_EQ(s.until_unix, s.pin == old_pin ? until_s : 0) << s.pin;

  clock.SetUnixMillis(until_s * 1000 - 10'000);  // 10 s before the end: cached for at most 10 s
  EXPECT_TRUE((*a)->Authorize(old_identity.get(), nullptr).ok);
  clock.SetUnixMillis(until_s * 1000);
  auto refused = (*a)->Authorize(old_identity.get(), nullptr);
  EXPECT_FALSE(refused.ok);
  EXPECT_EQ(refused.iis_substatus, kIisMapperDenied);
  EXPECT_NE(refused.reason.find("overlap ended at"), std::string::npos) << refused.reason;
  EXPECT_NE(refused.reason.find("api.client_pins until"), std::string::npos) << refused.reason;
  EXPECT_TRUE((*a)->Authorize(new_identity.get(), nullptr).ok);
}

TEST_F(ClientAuthTest, NoCertificate) {
  auto r = authorizer_->Authorize(nullptr, nullptr);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.iis_substatus, kIisNoCertificate);
  EXPECT_EQ(r.win32_status, kWin32AccessDenied);
  EXPECT_EQ(r.reason.rfind("403.7 ", 0), 0u) << r.reason;
}

TEST_F(ClientAuthTest, MissingTrustFileIsAConfigError) {
  auto a = ClientAuthorizer::Create((dir_.path() / "absent.pem").string(), {});
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("api.client_ca_file"), std::string_view::npos);
}

}  // namespace
}  // namespace adcsc::node
