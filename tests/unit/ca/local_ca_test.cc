#include "node/ca/local_ca.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/ca/hresult.h"
#include "node/pki/csr.h"
#include "node/pki/x509.h"
#include "store/sqlite_db.h"

namespace adcsc::ca {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kCaName[] = "Example Issuing CA";
constexpr char kDc[] = "ca1.example.com";
constexpr char kIdentity[] = "EXAMPLE\\svc-adcsc";

int64_t SystemMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One key per type for the whole test binary: RSA key generation is slow.
EVP_PKEY* SharedKey(pki::KeyType type) {
  static pki::EvpPkeyPtr* keys[4] = {};
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  pki::EvpPkeyPtr*& slot = keys[static_cast<int>(type)];
  if (slot == nullptr) slot = new pki::EvpPkeyPtr(std::move(*pki::GenerateKey(type)));
  return slot->get();
}

std::vector<uint8_t> Csr(pki::KeyType type, const std::string& cn, std::vector<std::string> sans = {}) {
  absl::StatusOr<pki::Bytes> der = pki::MakeCsr(SharedKey(type), cn, std::move(sans));
  EXPECT_TRUE(der.ok()) << der.status();
  return *der;
}

class LocalCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "adcsc-ca-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    scratch_ = tmpl;
    now_ = SystemMillis();
  }
  void TearDown() override {
    ca_.reset();
    std::error_code ec;
    std::filesystem::remove_all(scratch_, ec);
  }

  LocalCaOptions Options(pki::KeyType key_type = pki::KeyType::kEcP256) {
    LocalCaOptions o;
    o.dir = scratch_ / "ca";
    o.ca_name = kCaName;
    o.key_type = key_type;
    o.durable = false;
    o.now_unix_millis = [this] { return now_.load(); };
    TemplatePolicy user;
    user.name = "User";
    user.ekus = {"clientAuth"};
    user.validity_days = 30;
    TemplatePolicy web;
    web.name = "WebServer";
    web.ekus = {"serverAuth", "1.3.6.1.4.1.311.20.2.2"};
    TemplatePolicy strong;
    strong.name = "Strong";
    strong.ekus = {"clientAuth"};
    strong.min_key_bits = 3072;
    strong.min_ec_key_bits = 384;
    TemplatePolicy manual;
    manual.name = "Manual";
    manual.policy = IssuancePolicy::kPending;
    TemplatePolicy delayed;
    delayed.name = "Delayed";
    delayed.ekus = {"clientAuth"};
    delayed.policy = IssuancePolicy::kPending;
    delayed.pending_seconds = 60;
    TemplatePolicy blocked;
    blocked.name = "Blocked";
    blocked.policy = IssuancePolicy::kDeny;
    o.templates = {user, web, strong, manual, delayed, blocked};
    return o;
  }

  LocalCa& Open(LocalCaOptions options) {
    ca_.reset();
    absl::StatusOr<std::unique_ptr<LocalCa>> ca = LocalCa::Open(std::move(options));
    EXPECT_TRUE(ca.ok()) << ca.status();
    if (ca.ok()) ca_ = std::move(*ca);
    return *ca_;
  }
  LocalCa& Open() { return Open(Options()); }

  SubmitRequest Submit(std::vector<uint8_t> csr, std::string template_name, std::string identity = kIdentity) {
    SubmitRequest r;
    r.target = {kDc, kCaName};
    r.caller.name = std::move(identity);
    r.csr_der = std::move(csr);
    r.template_name = std::move(template_name);
    return r;
  }
  RetrieveRequest Retrieve(uint32_t id, std::string identity = kIdentity) {
    RetrieveRequest r;
    r.target = {kDc, kCaName};
    r.caller.name = std::move(identity);
    r.request_id = id;
    return r;
  }

  pki::X509Ptr CaCert() { return std::move(*pki::CertFromDer(ca_->CaCertificateDer())); }

  std::filesystem::path scratch_;
  std::atomic<int64_t> now_{0};
  std::unique_ptr<LocalCa> ca_;
};

TEST_F(LocalCaTest, FirstStartCreatesCaFilesWithPrivateKeyMode) {
  LocalCa& ca = Open();
  const auto dir = scratch_ / "ca";
  EXPECT_EQ(static_cast<unsigned>(std::filesystem::status(dir).permissions()), 0700u);
  EXPECT_EQ(static_cast<unsigned>(std::filesystem::status(dir / "ca-key.pem").permissions()), 0600u);
  EXPECT_TRUE(std::filesystem::exists(dir / "ca-cert.pem"));
  EXPECT_TRUE(std::filesystem::exists(dir / "requests.db"));
  pki::X509Ptr cert = CaCert();
  EXPECT_EQ(pki::NameToString(X509_get_subject_name(cert.get())), "CN=Example Issuing CA");
  EXPECT_EQ(X509_check_ca(cert.get()), 1);
  EXPECT_EQ(ca.Kind(), "local");
  EXPECT_TRUE(ca.Ping({kDc, kCaName}, {kIdentity}).ok());
  EXPECT_TRUE(ca.Ping({kDc, "example issuing ca"}, {kIdentity}).ok());
  absl::Status wrong = ca.Ping({kDc, "Other CA"}, {kIdentity});
  EXPECT_EQ(HresultOf(wrong), hr::kInvalidArg);
}

TEST_F(LocalCaTest, IssuesCertificateCarryingSubjectSansAndTemplateEkus) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> r =
      ca.Submit(Submit(Csr(pki::KeyType::kRsa2048, "device-1", {"device-1.example.com", "10.0.0.7"}), "user"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, 1u);
  EXPECT_EQ(r->disposition, Disposition::kIssued);
  EXPECT_EQ(r->hresult, hr::kOk);
  EXPECT_EQ(r->message, "Issued");
  // The chain above the leaf, as an ADCS CA sends it: this CA's certificate.
  EXPECT_EQ(r->chain_der, std::vector<std::vector<uint8_t>>{ca.CaCertificateDer()});
  ASSERT_FALSE(r->cert_der.empty());

  absl::StatusOr<pki::X509Ptr> leaf = pki::CertFromDer(r->cert_der);
  ASSERT_TRUE(leaf.ok());
  pki::X509Ptr root = CaCert();
  absl::Status chain = pki::VerifyChain(leaf->get(), {root.get()}, {}, now_ / 1000, X509_V_FLAG_X509_STRICT);
  EXPECT_TRUE(chain.ok()) << chain;
  EXPECT_EQ(pki::NameToString(X509_get_subject_name(leaf->get())), "CN=device-1");
  EXPECT_THAT(pki::SubjectAltNames(leaf->get()), ElementsAre("DNS:device-1.example.com", "IP:10.0.0.7"));
  EXPECT_THAT(pki::ExtendedKeyUsages(leaf->get()), ElementsAre(std::string(pki::kEkuClientAuth)));
  EXPECT_EQ(pki::NotBeforeUnix(leaf->get()), now_ / 1000 - 3600);
  EXPECT_EQ(pki::NotAfterUnix(leaf->get()), now_ / 1000 + 30 * 86400);

  // Another template's EKUs, by OID and name.
  absl::StatusOr<CaResponse> web =
      ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "www.example.com", {"www.example.com"}), "WebServer"));
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ(web->request_id, 2u);
  EXPECT_THAT(pki::ExtendedKeyUsages(pki::CertFromDer(web->cert_der)->get()),
              ElementsAre(std::string(pki::kEkuServerAuth), "1.3.6.1.4.1.311.20.2.2"));

  // Retrieve gives the same certificate.
  absl::StatusOr<CaResponse> again = ca.Retrieve(Retrieve(1));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->disposition, Disposition::kIssued);
  EXPECT_EQ(again->cert_der, r->cert_der);
}

TEST_F(LocalCaTest, PendingRequestIssuesOncePendingSecondsHavePassed) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> r = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "later"), "Delayed"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->disposition, Disposition::kUnderSubmission);
  EXPECT_EQ(r->hresult, hr::kRequestPending);
  EXPECT_EQ(r->message, "Taken Under Submission");
  EXPECT_TRUE(r->cert_der.empty());

  now_ += 59'999;
  absl::StatusOr<CaResponse> still = ca.Retrieve(Retrieve(r->request_id));
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->disposition, Disposition::kUnderSubmission);
  EXPECT_TRUE(still->cert_der.empty());

  now_ += 1;
  absl::StatusOr<CaResponse> issued = ca.Retrieve(Retrieve(r->request_id));
  ASSERT_TRUE(issued.ok()) << issued.status();
  EXPECT_EQ(issued->disposition, Disposition::kIssued);
  EXPECT_EQ(issued->hresult, hr::kOk);
  ASSERT_FALSE(issued->cert_der.empty());
  auto leaf = pki::CertFromDer(issued->cert_der);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(pki::NotBeforeUnix(leaf->get()), now_ / 1000 - 3600) << "validity starts at issue";
  EXPECT_THAT(pki::ExtendedKeyUsages(leaf->get()), ElementsAre(std::string(pki::kEkuClientAuth)));
  // Stable afterwards.
  EXPECT_EQ(ca.Retrieve(Retrieve(r->request_id))->cert_der, issued->cert_der);
}

TEST_F(LocalCaTest, ManualPendingWaitsForApproveOrDeny) {
  LocalCa& ca = Open();
  auto a = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "a"), "Manual"));
  auto b = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "b"), "Manual"));
  ASSERT_TRUE(a.ok() && b.ok());
  now_ += 365LL * 86'400'000;
  EXPECT_EQ(ca.Retrieve(Retrieve(a->request_id))->disposition, Disposition::kUnderSubmission);

  absl::StatusOr<CaResponse> approved = ca.Approve(a->request_id);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->disposition, Disposition::kIssued);
  EXPECT_FALSE(approved->cert_der.empty());
  EXPECT_EQ(ca.Retrieve(Retrieve(a->request_id))->cert_der, approved->cert_der);
  absl::StatusOr<CaResponse> twice = ca.Approve(a->request_id);
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(HresultOf(twice.status()), hr::kBadRequestStatus);

  absl::StatusOr<CaResponse> denied = ca.Deny(b->request_id);
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->disposition, Disposition::kDenied);
  EXPECT_EQ(denied->hresult, hr::kAdminDeniedRequest);
  absl::StatusOr<CaResponse> retrieved = ca.Retrieve(Retrieve(b->request_id));
  ASSERT_TRUE(retrieved.ok());
  EXPECT_EQ(retrieved->disposition, Disposition::kDenied);
  EXPECT_TRUE(retrieved->cert_der.empty());
  EXPECT_EQ(HresultOf(ca.Approve(b->request_id).status()), hr::kBadRequestStatus);
  EXPECT_EQ(HresultOf(ca.Deny(999).status()), hr::kPropertyEmpty);
}

// RevokeCertificate as the emulator serves it: by the serial exactly as written, a hold
// released with 0xffffffff, a retrieve answering revoked with the certificate.
TEST_F(LocalCaTest, RevokeBySerialAndReleaseAHold) {
  LocalCa& ca = Open();
  auto issued = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "revoked"), "User"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  const std::string serial = pki::SerialHex(pki::CertFromDer(issued->cert_der)->get());
  std::string upper = serial;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper != serial) {
    EXPECT_EQ(HresultOf(ca.Revoke(upper, 1, 0).status()), hr::kInvalidArg);
  }
  EXPECT_EQ(HresultOf(ca.Revoke("00", 1, 0).status()), hr::kInvalidArg);
  EXPECT_EQ(HresultOf(ca.Revoke(serial, 0xffffffff, 0).status()), hr::kBadRequestStatus);  // not on hold

  auto held = ca.Revoke(serial, 6, 0);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->disposition, Disposition::kRevoked);
  EXPECT_EQ(held->revocation_reason, 6u);
  EXPECT_EQ(held->revoked_unix_millis, now_.load());
  auto retrieved = ca.Retrieve(Retrieve(issued->request_id));
  ASSERT_TRUE(retrieved.ok());
  EXPECT_EQ(retrieved->disposition, Disposition::kRevoked);
  EXPECT_EQ(retrieved->cert_der, issued->cert_der);

  auto released = ca.Revoke(serial, 0xffffffff, 0);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->disposition, Disposition::kIssued);
  EXPECT_FALSE(released->revocation_reason.has_value());
  EXPECT_EQ(ca.Retrieve(Retrieve(issued->request_id))->disposition, Disposition::kIssued);
}

// A database from before revocation (schema 1, without its columns) is upgraded on open.
TEST_F(LocalCaTest, ASchemaOneDatabaseGetsTheRevocationColumns) {
  auto issued = Open().Submit(Submit(Csr(pki::KeyType::kEcP256, "old"), "User"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  ca_.reset();
  {
    auto db = store::sqlite::Connection::Open(scratch_ / "ca" / "requests.db", SQLITE_OPEN_READWRITE);
    ASSERT_TRUE(db.ok()) << db.status();
    ASSERT_TRUE((*db)
                    ->Exec("ALTER TABLE requests DROP COLUMN revocation_reason; "
                           "ALTER TABLE requests DROP COLUMN revoked_ms; PRAGMA user_version=1;")
                    .ok());
  }
  LocalCa& ca = Open();
  const std::string serial = pki::SerialHex(pki::CertFromDer(issued->cert_der)->get());
  auto revoked = ca.Revoke(serial, 4, 0);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(revoked->revocation_reason, 4u);
  EXPECT_EQ(ca.Retrieve(Retrieve(issued->request_id))->disposition, Disposition::kRevoked);
}

TEST_F(LocalCaTest, DenyPolicyDeniesButRecordsTheRequest) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> r = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "nope"), "Blocked"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->request_id, 1u);
  EXPECT_EQ(r->disposition, Disposition::kDenied);
  EXPECT_EQ(r->hresult, hr::kAdminDeniedRequest);
  EXPECT_THAT(r->message, HasSubstr("Denied by Policy Module"));
  EXPECT_TRUE(r->cert_der.empty());
  EXPECT_EQ(*ca.RequestCount(), 1u);
  EXPECT_EQ(ca.Retrieve(Retrieve(1))->disposition, Disposition::kDenied);
}

TEST_F(LocalCaTest, KeysBelowTheTemplateMinimumAreDenied) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> rsa = ca.Submit(Submit(Csr(pki::KeyType::kRsa2048, "weak"), "Strong"));
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  EXPECT_EQ(rsa->disposition, Disposition::kDenied);
  EXPECT_EQ(rsa->hresult, hr::kKeyLength);
  EXPECT_THAT(rsa->message, HasSubstr("2048 bits"));
  EXPECT_THAT(rsa->message, HasSubstr("at least 3072"));
  absl::StatusOr<CaResponse> p256 = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "weak"), "Strong"));
  ASSERT_TRUE(p256.ok());
  EXPECT_EQ(p256->hresult, hr::kKeyLength);
  absl::StatusOr<CaResponse> p384 = ca.Submit(Submit(Csr(pki::KeyType::kEcP384, "ok"), "Strong"));
  ASSERT_TRUE(p384.ok());
  EXPECT_EQ(p384->disposition, Disposition::kIssued);
  EXPECT_EQ(p384->request_id, 3u);
}

TEST_F(LocalCaTest, EmptySubjectWithoutSanIsDenied) {
  LocalCa& ca = Open();
  pki::X509ReqPtr req(X509_REQ_new());
  ASSERT_EQ(X509_REQ_set_pubkey(req.get(), SharedKey(pki::KeyType::kEcP256)), 1);
  ASSERT_GT(X509_REQ_sign(req.get(), SharedKey(pki::KeyType::kEcP256), EVP_sha256()), 0);
  absl::StatusOr<pki::Bytes> der = pki::CsrToDer(req.get());
  ASSERT_TRUE(der.ok());
  absl::StatusOr<CaResponse> r = ca.Submit(Submit(*der, "User"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->disposition, Disposition::kDenied);
  EXPECT_EQ(r->hresult, hr::kBadRequestSubject);
  EXPECT_THAT(r->message, HasSubstr("empty subject"));
}

TEST_F(LocalCaTest, UnknownOrMissingTemplateIsAnErrorWithoutARequestId) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> r = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "x"), "NoSuchTemplate"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(HresultOf(r.status()), hr::kUnsupportedCertType);
  EXPECT_THAT(r.status().message(), HasSubstr("NoSuchTemplate"));
  EXPECT_THAT(r.status().message(), HasSubstr("CERTSRV_E_UNSUPPORTED_CERT_TYPE"));
  absl::StatusOr<CaResponse> empty = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "x"), ""));
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(HresultOf(empty.status()), hr::kNoCertType);
  EXPECT_EQ(*ca.RequestCount(), 0u);

  // With a default template, an empty name uses it.
  LocalCaOptions o = Options();
  o.default_template = "user";
  LocalCa& with_default = Open(o);
  absl::StatusOr<CaResponse> d = with_default.Submit(Submit(Csr(pki::KeyType::kEcP256, "x"), ""));
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->disposition, Disposition::kIssued);
  EXPECT_EQ(d->request_id, 1u);
  EXPECT_EQ((*with_default.List())[0].template_name, "User");
}

TEST_F(LocalCaTest, BadCsrsAreRejected) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> junk = ca.Submit(Submit({0x01, 0x02, 0x03}, "User"));
  ASSERT_FALSE(junk.ok());
  EXPECT_EQ(HresultOf(junk.status()), hr::kAsn1BadTag);
  EXPECT_THAT(junk.status().message(), HasSubstr("pkcs10 is not a DER PKCS#10 request"));

  std::vector<uint8_t> tampered = Csr(pki::KeyType::kRsa2048, "tampered");
  tampered[tampered.size() - 5] ^= 0x40;
  absl::StatusOr<CaResponse> bad_sig = ca.Submit(Submit(tampered, "User"));
  ASSERT_FALSE(bad_sig.ok());
  EXPECT_EQ(HresultOf(bad_sig.status()), hr::kBadSignature);
  EXPECT_THAT(bad_sig.status().message(), HasSubstr("CSR signature does not verify"));
  EXPECT_EQ(*ca.RequestCount(), 0u);
}

TEST_F(LocalCaTest, WrongCaNameIsInvalidArg) {
  LocalCa& ca = Open();
  SubmitRequest s = Submit(Csr(pki::KeyType::kEcP256, "x"), "User");
  s.target.ca = "Another CA";
  absl::StatusOr<CaResponse> r = ca.Submit(s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(HresultOf(r.status()), hr::kInvalidArg);
  EXPECT_THAT(r.status().message(), HasSubstr("Another CA"));
  RetrieveRequest rr = Retrieve(1);
  rr.target.ca = "Another CA";
  EXPECT_EQ(HresultOf(ca.Retrieve(rr).status()), hr::kInvalidArg);
}

TEST_F(LocalCaTest, OnlyTheSubmitterMayRetrieve) {
  LocalCa& ca = Open();
  auto r = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "mine"), "User", "EXAMPLE\\node-a$"));
  ASSERT_TRUE(r.ok());
  absl::StatusOr<CaResponse> other = ca.Retrieve(Retrieve(r->request_id, "EXAMPLE\\node-b$"));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(HresultOf(other.status()), hr::kAccessDenied);
  EXPECT_THAT(other.status().message(), HasSubstr("Access is denied."));
  // Windows account names are case-insensitive.
  absl::StatusOr<CaResponse> same = ca.Retrieve(Retrieve(r->request_id, "example\\NODE-A$"));
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->disposition, Disposition::kIssued);
}

TEST_F(LocalCaTest, UnknownRequestIdIsPropertyEmpty) {
  LocalCa& ca = Open();
  absl::StatusOr<CaResponse> r = ca.Retrieve(Retrieve(4242));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(HresultOf(r.status()), hr::kPropertyEmpty);
  EXPECT_THAT(r.status().message(), HasSubstr("4242"));
  EXPECT_THAT(r.status().message(), HasSubstr("CERTSRV_E_PROPERTY_EMPTY"));
}

TEST_F(LocalCaTest, IdsAreSequentialAndSurviveReopen) {
  Open();
  for (uint32_t want = 1; want <= 3; ++want) {
    auto r = ca_->Submit(Submit(Csr(pki::KeyType::kEcP256, "n"), "User"));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->request_id, want);
  }
  const std::vector<uint8_t> ca_cert = ca_->CaCertificateDer();
  const std::vector<uint8_t> second = ca_->Retrieve(Retrieve(2))->cert_der;

  Open();  // reopen the same directory
  EXPECT_EQ(ca_->CaCertificateDer(), ca_cert) << "the CA is loaded, not regenerated";
  EXPECT_EQ(ca_->Retrieve(Retrieve(2))->cert_der, second);
  auto r = ca_->Submit(Submit(Csr(pki::KeyType::kEcP256, "n"), "Blocked"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->request_id, 4u);
  EXPECT_EQ(*ca_->RequestCount(), 4u);

  absl::StatusOr<std::vector<LocalCaRequest>> rows = ca_->List();
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 4u);
  EXPECT_EQ((*rows)[0].request_id, 1u);
  EXPECT_EQ((*rows)[0].requester, kIdentity);
  EXPECT_EQ((*rows)[0].template_name, "User");
  EXPECT_EQ((*rows)[0].subject, "CN=n");
  EXPECT_EQ((*rows)[0].disposition, Disposition::kIssued);
  EXPECT_EQ((*rows)[0].serial_hex.size(), 32u);
  EXPECT_FALSE((*rows)[0].cert_der.empty());
  EXPECT_EQ((*rows)[3].disposition, Disposition::kDenied);
  EXPECT_TRUE((*rows)[3].serial_hex.empty());
  EXPECT_EQ((*rows)[3].submitted_unix_millis, now_.load());
  EXPECT_EQ(ca_->List(2, 1)->size(), 1u);
  EXPECT_EQ((*ca_->List(2, 1))[0].request_id, 3u);
}

TEST_F(LocalCaTest, SubmitsPastTheCheckpointThresholdSurviveReopen) {
  // Enough requests to take the WAL past 1000 pages, so its background checkpointer copies
  // pages while submits commit; any checkpoint failure fails the test.
  LocalCaOptions o = Options();
  o.on_checkpoint_error = [](const absl::Status& s) { ADD_FAILURE() << s; };
  Open(o);
  constexpr uint32_t kRequests = 3000;
  // A big SAN list makes each stored CSR and certificate a few KB, so fewer signatures do.
  std::vector<std::string> sans;
  for (int i = 0; i < 40; ++i) sans.push_back(absl::StrCat("host-", i, ".devices.example.com"));
  const std::vector<uint8_t> csr = Csr(pki::KeyType::kEcP256, "bulk", sans);
  std::vector<uint8_t> last_cert;
  for (uint32_t want = 1; want <= kRequests; ++want) {
    auto r = ca_->Submit(Submit(csr, "User"));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->request_id, want);
    if (want == kRequests) last_cert = r->cert_der;
  }
  o.on_checkpoint_error = nullptr;
  Open(Options());
  EXPECT_EQ(*ca_->RequestCount(), kRequests);
  EXPECT_EQ(ca_->Retrieve(Retrieve(kRequests))->cert_der, last_cert);
}

TEST_F(LocalCaTest, ReopenRefusesAGroupReadableKeyOrAMissingCert) {
  Open();
  ca_.reset();
  const auto dir = scratch_ / "ca";
  ASSERT_EQ(chmod((dir / "ca-key.pem").c_str(), 0644), 0);
  absl::StatusOr<std::unique_ptr<LocalCa>> ca = LocalCa::Open(Options());
  ASSERT_FALSE(ca.ok());
  EXPECT_THAT(ca.status().message(), HasSubstr("chmod 600"));
  ASSERT_EQ(chmod((dir / "ca-key.pem").c_str(), 0600), 0);
  std::filesystem::remove(dir / "ca-cert.pem");
  ca = LocalCa::Open(Options());
  ASSERT_FALSE(ca.ok());
  EXPECT_THAT(ca.status().message(), HasSubstr("ca-cert.pem is missing"));
}

TEST_F(LocalCaTest, ConcurrentSubmitsGetUniqueContiguousIds) {
  LocalCa& ca = Open();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  // CSRs made up front, so the threads spend their time in the CA.
  std::vector<std::vector<uint8_t>> csrs;
  for (int i = 0; i < kThreads; ++i) csrs.push_back(Csr(pki::KeyType::kEcP256, "t" + std::to_string(i)));
  std::vector<std::vector<uint32_t>> ids(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const char* tmpl = i % 5 == 0 ? "Manual" : "User";
        absl::StatusOr<CaResponse> r = ca.Submit(Submit(csrs[t], tmpl));
        if (!r.ok()) {
          ++failures;
          continue;
        }
        ids[t].push_back(r->request_id);
        // Retrieves run alongside.
        absl::StatusOr<CaResponse> back = ca.Retrieve(Retrieve(r->request_id));
        if (!back.ok() || back->request_id != r->request_id) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  std::vector<uint32_t> all;
  for (const auto& v : ids) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end())) << "a thread's IDs increase";
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i], i + 1);
  EXPECT_EQ(*ca.RequestCount(), static_cast<uint64_t>(kThreads * kPerThread));

  // Concurrent approvals of the same pending requests resolve each exactly once.
  std::vector<uint32_t> pending;
  absl::StatusOr<std::vector<LocalCaRequest>> rows = ca.List();
  ASSERT_TRUE(rows.ok()) << rows.status();
  for (const LocalCaRequest& row : *rows) {
    if (row.disposition == Disposition::kUnderSubmission) pending.push_back(row.request_id);
  }
  ASSERT_EQ(pending.size(), static_cast<size_t>(kThreads * kPerThread / 5));
  std::atomic<int> approved{0};
  std::vector<std::thread> approvers;
  for (int t = 0; t < 4; ++t) {
    approvers.emplace_back([&] {
      for (uint32_t id : pending) {
        absl::StatusOr<CaResponse> r = ca.Approve(id);
        if (r.ok() && r->disposition == Disposition::kIssued) ++approved;
      }
    });
  }
  for (auto& th : approvers) th.join();
  EXPECT_GE(approved.load(), static_cast<int>(pending.size()));
  std::set<std::vector<uint8_t>> certs;
  for (uint32_t id : pending) {
    absl::StatusOr<CaResponse> r = ca.Retrieve(Retrieve(id));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->disposition, Disposition::kIssued);
    certs.insert(r->cert_der);
  }
  EXPECT_EQ(certs.size(), pending.size());
}

TEST_F(LocalCaTest, RsaCaKeysWork) {
  LocalCa& ca = Open(Options(pki::KeyType::kRsa2048));
  pki::X509Ptr root = CaCert();
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(root.get())), EVP_PKEY_RSA);
  auto r = ca.Submit(Submit(Csr(pki::KeyType::kEcP256, "ec-leaf"), "User"));
  ASSERT_TRUE(r.ok()) << r.status();
  auto leaf = pki::CertFromDer(r->cert_der);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(X509_get_signature_nid(leaf->get()), NID_sha256WithRSAEncryption);
  EXPECT_TRUE(pki::VerifyChain(leaf->get(), {root.get()}).ok());
}

TEST_F(LocalCaTest, P256CaKeysWork) {
  LocalCa& ca = Open(Options(pki::KeyType::kEcP256));
  pki::X509Ptr root = CaCert();
  EXPECT_EQ(EVP_PKEY_get_base_id(X509_get0_pubkey(root.get())), EVP_PKEY_EC);
  auto r = ca.Submit(Submit(Csr(pki::KeyType::kRsa2048, "rsa-leaf"), "User"));
  ASSERT_TRUE(r.ok()) << r.status();
  auto leaf = pki::CertFromDer(r->cert_der);
  ASSERT_TRUE(leaf.ok());
  EXPECT_EQ(X509_get_signature_nid(leaf->get()), NID_ecdsa_with_SHA256);
  EXPECT_TRUE(pki::VerifyChain(leaf->get(), {root.get()}).ok());
}

TEST(LocalCaOptionsTest, ReportsEveryProblemAtOnce) {
  LocalCaOptions o;
  o.ca_years = 0;
  TemplatePolicy a;
  a.name = "A";
  a.ekus = {"noSuchEku"};
  a.validity_days = 0;
  TemplatePolicy dup;
  dup.name = "a";
  dup.pending_seconds = -1;
  o.templates = {a, dup};
  o.default_template = "missing";
  absl::Status s = ValidateLocalCaOptions(o);
  ASSERT_FALSE(s.ok());
  for (const char* want : {"dir:", "ca_name:", "ca_years:", "noSuchEku", "validity_days", "duplicate",
                           "pending_seconds", "default_template"}) {
    EXPECT_THAT(s.message(), HasSubstr(want));
  }
  absl::StatusOr<std::unique_ptr<LocalCa>> ca = LocalCa::Open(o);
  ASSERT_FALSE(ca.ok());
  EXPECT_EQ(ca.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace adcsc::ca
