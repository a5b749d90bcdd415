// node/gss against a throw-away MIT realm (krb5kdc on 127.0.0.1): the DCE-style legs with krb5
// and SPNEGO, PDU protection at privacy and integrity as Windows lays it out, tampering and
// replay, and the errors operators see (unreachable KDC, stale keytab, wrong password, clock
// skew), and renewal on an injected clock.
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <krb5.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/gss/context.h"
#include "node/gss/credentials.h"
#include "node/gss/errors.h"
#include "tests/testing/mit_kdc.h"

namespace adcsc::gss {
namespace {

using ::testing::HasSubstr;
using testing::MitKdc;

constexpr char kClient[] = "svc-adcsc@ADCSC.TEST";
constexpr char kClientPassword[] = "Client-Pass-1";
constexpr char kCaHost[] = "ca1.adcsc.test";
constexpr char kShortLived[] = "short@ADCSC.TEST";
constexpr char kStaleHost[] = "ca2.adcsc.test";

class GssTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MitKdc::Installed()) return;
    kdc_ = new MitKdc();
    std::string error = kdc_->Start();
    for (const std::string& step :
         {kdc_->AddPrincipal(kClient, kClientPassword), kdc_->ExportKeytab(kClient, ClientKeytab()),
          kdc_->AddRandomKeyPrincipal(std::string("host/") + kCaHost),
          kdc_->ExportKeytab(std::string("host/") + kCaHost, ServiceKeytab()),
          kdc_->AddPrincipal(kShortLived, kClientPassword),
          kdc_->Kadmin(std::string("modprinc -maxlife \\\"1 minute\\\" ") + kShortLived),
          kdc_->AddRandomKeyPrincipal(std::string("host/") + kStaleHost)}) {
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

  static std::filesystem::path ClientKeytab() { return kdc_->dir() / "client.keytab"; }
  static std::filesystem::path ServiceKeytab() { return kdc_->dir() / "service.keytab"; }

  static std::shared_ptr<Credentials> ClientCredentials(CredentialOptions options = {}) {
    auto credentials = Credentials::Acquire(CredentialSource::Keytab(kClient, ClientKeytab().string()), options);
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return credentials.ok() ? *credentials : nullptr;
  }
  static std::shared_ptr<AcceptorCredentials> ServiceCredentials() {
    auto credentials = AcceptorCredentials::FromKeytab(ServiceKeytab().string());
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return credentials.ok() ? *credentials : nullptr;
  }

  struct Pair {
    std::unique_ptr<InitiatorContext> client;
    std::unique_ptr<AcceptorContext> server;
    std::vector<Bytes> tokens;  // every token that crossed, in order
  };

  // Runs the exchange as the rpc layer will: the client sends while it has something to send,
  // the server answers each token, until both are done.
  static Pair Establish(const Credentials& credentials, Mech mech, Level level = Level::kPrivacy) {
    Pair pair;
    auto client = InitiatorContext::Create(credentials, TargetName::Host(kCaHost), mech, level);
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return pair;
    pair.client = std::move(*client);
    pair.server = AcceptorContext::Create(ServiceCredentials(), mech);
    Bytes to_server;
    auto step = pair.client->Step({});
    EXPECT_TRUE(step.ok()) << step.status();
    if (!step.ok()) return pair;
    to_server = step->token;
    for (int leg = 0; leg < 6 && !(pair.client->done() && pair.server->done()); ++leg) {
      if (to_server.empty()) break;
      pair.tokens.push_back(to_server);
      auto answer = pair.server->Step(to_server);
      EXPECT_TRUE(answer.ok()) << answer.status();
      if (!answer.ok()) return pair;
      to_server.clear();
      if (pair.client->done()) break;
      if (!answer->token.empty()) pair.tokens.push_back(answer->token);
      auto next = pair.client->Step(answer->token);
      EXPECT_TRUE(next.ok()) << next.status();
      if (!next.ok()) return pair;
      to_server = next->token;
    }
    return pair;
  }

  static MitKdc* kdc_;
  static std::string* setup_error_;
};

MitKdc* GssTest::kdc_ = nullptr;
std::string* GssTest::setup_error_ = nullptr;

// A request PDU fragment: 24-byte header, stub padded to 16, 8-byte sec_trailer, auth_value.
struct Pdu {
  Bytes bytes;
  size_t header = 24, body = 0, trailer = 8, auth = 0;
  PduRegions Regions() {
    std::span<uint8_t> all(bytes);
    return {all.subspan(0, header), all.subspan(header, body), all.subspan(header + body, trailer),
            all.subspan(header + body + trailer, auth)};
  }
  Bytes Part(std::span<uint8_t> part) const { return Bytes(part.begin(), part.end()); }
};

Pdu MakePdu(SecurityContext& context, const Protection& protection, size_t stub_length) {
  Pdu pdu;
  pdu.body = stub_length + AuthPadLength(stub_length);
  auto auth = context.AuthValueLength(protection, pdu.header, pdu.body, pdu.trailer);
  EXPECT_TRUE(auth.ok()) << auth.status();
  pdu.auth = auth.ok() ? *auth : 0;
  pdu.bytes.resize(pdu.header + pdu.body + pdu.trailer + pdu.auth);
  for (size_t i = 0; i < pdu.header + pdu.body + pdu.trailer; ++i) pdu.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  return pdu;
}

TEST_F(GssTest, Krb5DceStyleTakesThreeLegs) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, Mech::kKerberos);
  ASSERT_TRUE(pair.client && pair.client->done());
  ASSERT_TRUE(pair.server->done());
  // Raw AP-REQ (no GSS framing, MS-KILE 3.4.5.1), the server's AP-REP, the client's AP-REP.
  ASSERT_EQ(pair.tokens.size(), 3u);
  EXPECT_EQ(pair.tokens[0][0], 0x6e);
  EXPECT_EQ(pair.tokens[1][0], 0x6f);
  EXPECT_EQ(pair.tokens[2][0], 0x6f);
  EXPECT_EQ(pair.server->client_name(), kClient);
  EXPECT_TRUE(pair.client->negotiated_krb5());
  EXPECT_EQ(pair.client->granted_flags() & DceContextFlags(Level::kPrivacy), DceContextFlags(Level::kPrivacy));
  EXPECT_TRUE(pair.client->granted_flags() & GSS_C_DCE_STYLE);
  EXPECT_TRUE(pair.server->granted_flags() & GSS_C_DCE_STYLE);
  EXPECT_TRUE(pair.server->granted_flags() & GSS_C_CONF_FLAG);
  EXPECT_EQ(DceAuthType(pair.client->mech()), 16);
}

TEST_F(GssTest, SpnegoDceStyleCompletesWithKrb5Underneath) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, Mech::kSpnego);
  ASSERT_TRUE(pair.client && pair.client->done());
  ASSERT_TRUE(pair.server->done());
  EXPECT_EQ(pair.tokens[0][0], 0x60);  // NegTokenInit
  // NegTokenInit(AP-REQ), NegTokenResp(AP-REP), NegTokenResp(AP-REP), NegTokenResp(accept-completed).
  EXPECT_EQ(pair.tokens.size(), 4u);
  EXPECT_TRUE(pair.client->negotiated_krb5());
  EXPECT_TRUE(pair.server->negotiated_krb5());
  EXPECT_EQ(pair.server->client_name(), kClient);
  EXPECT_EQ(DceAuthType(pair.client->mech()), 9);
}

// Fills a FILE ccache with a TGT for kClient from its keytab, as `kinit -k` would. With
// `clock_offset`, the ccache also records that offset from the system clock (what MIT's
// kdc_timesync stores after seeing the KDC's time), and every libkrb5 context that opens the
// ccache then runs its clock that far off: a client whose clock is wrong, without faking the
// process's clock.
void WriteCcache(const std::filesystem::path& keytab, const std::string& ccache,
                 std::chrono::seconds clock_offset = std::chrono::seconds(0)) {
  krb5_context k = nullptr;
  ASSERT_EQ(krb5_init_context(&k), 0);
  krb5_principal me = nullptr;
  krb5_keytab kt = nullptr;
  krb5_ccache cc = nullptr;
  krb5_creds creds{};
  ASSERT_EQ(krb5_parse_name(k, kClient, &me), 0);
  ASSERT_EQ(krb5_kt_resolve(k, keytab.c_str(), &kt), 0);
  ASSERT_EQ(krb5_get_init_creds_keytab(k, &creds, me, kt, 0, nullptr, nullptr), 0);
  if (clock_offset.count() != 0) {
    krb5_timestamp now = 0;
    ASSERT_EQ(krb5_timeofday(k, &now), 0);
    ASSERT_EQ(krb5_set_real_time(k, now + static_cast<krb5_timestamp>(clock_offset.count()), 0), 0);
  }
  ASSERT_EQ(krb5_cc_resolve(k, ccache.c_str(), &cc), 0);
  ASSERT_EQ(krb5_cc_initialize(k, cc, me), 0);
  ASSERT_EQ(krb5_cc_store_cred(k, cc, &creds), 0);
  krb5_free_cred_contents(k, &creds);
  krb5_cc_close(k, cc);
  krb5_kt_close(k, kt);
  krb5_free_principal(k, me);
  krb5_free_context(k);
}

TEST_F(GssTest, PasswordAndCcacheCredentialsAuthenticate) {
  auto by_password = Credentials::Acquire(CredentialSource::Password(kClient, kClientPassword));
  ASSERT_TRUE(by_password.ok()) << by_password.status();
  EXPECT_EQ((*by_password)->principal(), kClient);
  EXPECT_TRUE(Establish(**by_password, Mech::kKerberos).server->done());

  // A ccache another tool keeps (here: one filled from the keytab with libkrb5, as kinit -k would).
  const std::string ccache = "FILE:" + (kdc_->dir() / "kinit.ccache").string();
  WriteCcache(ClientKeytab(), ccache);
  auto from_ccache = Credentials::Acquire(CredentialSource::Ccache(ccache));
  ASSERT_TRUE(from_ccache.ok()) << from_ccache.status();
  EXPECT_EQ((*from_ccache)->principal(), kClient);
  EXPECT_TRUE(Establish(**from_ccache, Mech::kSpnego).server->done());
}

class GssProtectionTest : public GssTest, public ::testing::WithParamInterface<Mech> {};

TEST_P(GssProtectionTest, PrivacyEncryptsTheStubAndSignsHeaderAndTrailer) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, GetParam());
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection privacy{Level::kPrivacy, true};
  Pdu pdu = MakePdu(*pair.client, privacy, 37);
  EXPECT_EQ(pdu.body, 48u);  // padded to 16
  // AES-256 in DCE style: 16 token header + 16 confounder + 16 EC + 16 E(header) + 12 HMAC.
  EXPECT_EQ(pdu.auth, 76u);
  const Bytes plain = pdu.bytes;
  ASSERT_TRUE(pair.client->Protect(privacy, pdu.Regions()).ok());
  EXPECT_EQ(pdu.Part(pdu.Regions().header), Bytes(plain.begin(), plain.begin() + 24));
  EXPECT_EQ(pdu.Part(pdu.Regions().sec_trailer), Bytes(plain.begin() + 72, plain.begin() + 80));
  EXPECT_NE(pdu.Part(pdu.Regions().body), Bytes(plain.begin() + 24, plain.begin() + 72));
  EXPECT_EQ(pdu.bytes[24 + 48 + 8], 0x05);  // RFC 4121 wrap token, TOK_ID 05 04
  EXPECT_EQ(pdu.bytes[24 + 48 + 9], 0x04);
  ASSERT_TRUE(pair.server->Unprotect(privacy, pdu.Regions()).ok());
  EXPECT_EQ(Bytes(pdu.bytes.begin(), pdu.bytes.begin() + 80), Bytes(plain.begin(), plain.begin() + 80));

  // And the other way: the server's response to the client.
  Pdu response = MakePdu(*pair.server, privacy, 100);
  const Bytes response_plain = response.bytes;
  ASSERT_TRUE(pair.server->Protect(privacy, response.Regions()).ok());
  ASSERT_TRUE(pair.client->Unprotect(privacy, response.Regions()).ok());
  EXPECT_EQ(Bytes(response.bytes.begin(), response.bytes.end() - response.auth),
            Bytes(response_plain.begin(), response_plain.end() - response.auth));
}

TEST_P(GssProtectionTest, IntegritySendsAMicAndLeavesTheStubClear) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, GetParam());
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection integrity{Level::kIntegrity, true};
  Pdu pdu = MakePdu(*pair.client, integrity, 20);
  EXPECT_EQ(pdu.auth, 28u);  // RFC 4121 MIC: 16 header + 12 HMAC
  const Bytes plain = pdu.bytes;
  ASSERT_TRUE(pair.client->Protect(integrity, pdu.Regions()).ok());
  EXPECT_EQ(Bytes(pdu.bytes.begin(), pdu.bytes.end() - pdu.auth), Bytes(plain.begin(), plain.end() - pdu.auth));
  EXPECT_EQ(pdu.bytes[pdu.bytes.size() - pdu.auth], 0x04);  // TOK_ID 04 04
  ASSERT_TRUE(pair.server->Unprotect(integrity, pdu.Regions()).ok());

  // A MIC where privacy was negotiated is refused (a downgrade), and poisons the context.
  Pdu second = MakePdu(*pair.client, integrity, 20);
  ASSERT_TRUE(pair.client->Protect(integrity, second.Regions()).ok());
  Pdu as_privacy = second;
  as_privacy.auth = second.auth;
  EXPECT_EQ(pair.server->Unprotect({Level::kPrivacy, true}, as_privacy.Regions()).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_P(GssProtectionTest, AFlippedBitInASignedRegionIsRefused) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  const Protection privacy{Level::kPrivacy, true};
  for (size_t region : {0u, 1u, 2u}) {  // header, body, sec_trailer
    Pair pair = Establish(*credentials, GetParam());
    ASSERT_TRUE(pair.server && pair.server->done());
    Pdu pdu = MakePdu(*pair.client, privacy, 32);
    ASSERT_TRUE(pair.client->Protect(privacy, pdu.Regions()).ok());
    const size_t offset = region == 0 ? 3 : region == 1 ? 24 + 5 : 24 + 32 + 2;
    pdu.bytes[offset] ^= 0x10;
    absl::Status status = pair.server->Unprotect(privacy, pdu.Regions());
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << "region " << region << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr("did not verify")) << status;
  }
}

TEST_P(GssProtectionTest, WithoutHeaderSigningOnlyTheStubIsProtected) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, GetParam());
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection stub_only{Level::kPrivacy, false};
  Pdu pdu = MakePdu(*pair.client, stub_only, 16);
  ASSERT_TRUE(pair.client->Protect(stub_only, pdu.Regions()).ok());
  pdu.bytes[3] ^= 0x10;  // the header is not covered
  EXPECT_TRUE(pair.server->Unprotect(stub_only, pdu.Regions()).ok());
  // A header-signed PDU checked as stub-only (or the reverse) fails: both sides must agree.
  Pdu signed_pdu = MakePdu(*pair.client, {Level::kPrivacy, true}, 16);
  ASSERT_TRUE(pair.client->Protect({Level::kPrivacy, true}, signed_pdu.Regions()).ok());
  EXPECT_EQ(pair.server->Unprotect(stub_only, signed_pdu.Regions()).code(), absl::StatusCode::kPermissionDenied);
}

TEST_P(GssProtectionTest, AReplayedPduIsRefused) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, GetParam());
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection privacy{Level::kPrivacy, true};
  Pdu pdu = MakePdu(*pair.client, privacy, 16);
  ASSERT_TRUE(pair.client->Protect(privacy, pdu.Regions()).ok());
  const Bytes sealed = pdu.bytes;
  ASSERT_TRUE(pair.server->Unprotect(privacy, pdu.Regions()).ok());
  pdu.bytes = sealed;
  absl::Status replay = pair.server->Unprotect(privacy, pdu.Regions());
  EXPECT_EQ(replay.code(), absl::StatusCode::kPermissionDenied) << replay;
}

TEST_P(GssProtectionTest, ProtectRefusesUnpaddedStubsAndWrongAuthLengths) {
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  Pair pair = Establish(*credentials, GetParam());
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection privacy{Level::kPrivacy, true};
  Pdu pdu = MakePdu(*pair.client, privacy, 16);
  pdu.body = 15;
  pdu.trailer = 9;
  EXPECT_EQ(pair.client->Protect(privacy, pdu.Regions()).code(), absl::StatusCode::kInvalidArgument);
  Pdu short_auth = MakePdu(*pair.client, privacy, 16);
  short_auth.auth -= 1;
  EXPECT_EQ(pair.client->Protect(privacy, short_auth.Regions()).code(), absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(BothMechs, GssProtectionTest, ::testing::Values(Mech::kKerberos, Mech::kSpnego),
                         [](const auto& info) { return std::string(MechName(info.param)); });

TEST_F(GssTest, AStaleServiceKeytabIsReportedAsAKeyMismatch) {
  const std::string service = std::string("host/") + kStaleHost;
  const auto stale = kdc_->dir() / "stale.keytab";
  ASSERT_EQ(kdc_->ExportKeytab(service, stale), "");
  ASSERT_EQ(kdc_->RandomizeKeyToKeytab(service, kdc_->dir() / "fresh.keytab"), "");  // the KDC moves on
  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  auto client = InitiatorContext::Create(*credentials, TargetName::Host(kStaleHost), Mech::kKerberos);
  ASSERT_TRUE(client.ok());
  auto ap_req = (*client)->Step({});
  ASSERT_TRUE(ap_req.ok()) << ap_req.status();
  auto acceptor_credentials = AcceptorCredentials::FromKeytab(stale.string());
  ASSERT_TRUE(acceptor_credentials.ok()) << acceptor_credentials.status();
  auto server = AcceptorContext::Create(*acceptor_credentials, Mech::kKerberos);
  auto answer = server->Step(ap_req->token);
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kFailedPrecondition) << answer.status();
  EXPECT_THAT(answer.status().message(), HasSubstr("keytab's key does not match")) << answer.status();
}

TEST_F(GssTest, AnUnreachableKdcIsReportedAsSuch) {
  const std::string good = kdc_->krb5_conf().string();
  const std::string unreachable = kdc_->WriteUnreachableKrb5Conf().string();
  auto credentials = ClientCredentials();  // TGT fetched while the KDC is reachable
  ASSERT_NE(credentials, nullptr);

  ::setenv("KRB5_CONFIG", unreachable.c_str(), 1);
  auto acquire = Credentials::Acquire(CredentialSource::Keytab(kClient, ClientKeytab().string()));
  // The TGS-REQ for a service not yet in the memory ccache.
  auto client = InitiatorContext::Create(*credentials, TargetName::Host("other.adcsc.test"), Mech::kSpnego);
  absl::StatusOr<StepResult> step = client.ok() ? (*client)->Step({}) : client.status();
  ::setenv("KRB5_CONFIG", good.c_str(), 1);

  ASSERT_FALSE(acquire.ok());
  EXPECT_EQ(acquire.status().code(), absl::StatusCode::kUnavailable) << acquire.status();
  EXPECT_THAT(acquire.status().message(), HasSubstr("cannot reach the KDC for realm ADCSC.TEST")) << acquire.status();
  ASSERT_FALSE(step.ok());
  EXPECT_EQ(step.status().code(), absl::StatusCode::kUnavailable) << step.status();
  EXPECT_THAT(step.status().message(), HasSubstr("cannot reach the KDC for realm ADCSC.TEST")) << step.status();
}

TEST_F(GssTest, WrongPasswordAndUnknownServiceAreNamed) {
  auto wrong = Credentials::Acquire(CredentialSource::Password(kClient, "not-the-password"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();

  auto credentials = ClientCredentials();
  ASSERT_NE(credentials, nullptr);
  auto client = InitiatorContext::Create(*credentials, TargetName::Host("nosuchca.adcsc.test"), Mech::kKerberos);
  ASSERT_TRUE(client.ok());
  auto step = (*client)->Step({});
  ASSERT_FALSE(step.ok());
  EXPECT_THAT(step.status().message(), HasSubstr("does not know the CA's service principal")) << step.status();
}

TEST_F(GssTest, AClientClockAnHourOffIsReportedAsClockSkew) {
  const std::string ccache = "FILE:" + (kdc_->dir() / "skewed.ccache").string();
  WriteCcache(ClientKeytab(), ccache, std::chrono::hours(1));
  auto credentials = Credentials::Acquire(CredentialSource::Ccache(ccache));
  ASSERT_TRUE(credentials.ok()) << credentials.status();  // the TGT is still valid an hour on
  for (Mech mech : {Mech::kKerberos, Mech::kSpnego}) {
    auto client = InitiatorContext::Create(**credentials, TargetName::Host(kCaHost), mech);
    ASSERT_TRUE(client.ok());
    auto step = (*client)->Step({});  // the KDC refuses the TGS-REQ's authenticator
    ASSERT_FALSE(step.ok());
    EXPECT_EQ(step.status().code(), absl::StatusCode::kFailedPrecondition) << step.status();
    EXPECT_THAT(std::string(step.status().message()),
                HasSubstr("clock skew too great between this host and the KDC/CA: check NTP"));
  }
}

TEST_F(GssTest, AnExpiredCcacheIsRefusedAtAcquire) {
  const std::string ccache = "FILE:" + (kdc_->dir() / "expired.ccache").string();
  WriteCcache(ClientKeytab(), ccache, std::chrono::hours(11));  // past the realm's 10 h max_life
  auto credentials = Credentials::Acquire(CredentialSource::Ccache(ccache));
  ASSERT_FALSE(credentials.ok());
  EXPECT_EQ(credentials.status().code(), absl::StatusCode::kFailedPrecondition) << credentials.status();
  EXPECT_THAT(std::string(credentials.status().message()), HasSubstr("expired")) << credentials.status();
}

TEST_F(GssTest, AStoppedKdcIsReportedAsUnreachable) {
  kdc_->Stop();
  auto acquire = Credentials::Acquire(CredentialSource::Keytab(kClient, ClientKeytab().string()));
  ASSERT_EQ(kdc_->Restart(), "");
  ASSERT_FALSE(acquire.ok());
  EXPECT_EQ(acquire.status().code(), absl::StatusCode::kUnavailable) << acquire.status();
  EXPECT_THAT(std::string(acquire.status().message()), HasSubstr("cannot reach the KDC for realm ADCSC.TEST"));
}

// The integrity-level trap (docs: an acceptor sizing tokens from CONF expects a wrap token):
// with no_ci_flags and an integrity-level context, the AP-REQ asserts INTEG but not CONF.
TEST_F(GssTest, NoCiFlagsAtIntegrityLeavesConfidentialityOutOfTheApReq) {
  CredentialOptions options;
  options.no_ci_flags = true;
  auto credentials = ClientCredentials(options);
  ASSERT_NE(credentials, nullptr);
  for (Mech mech : {Mech::kKerberos, Mech::kSpnego}) {
    Pair privacy = Establish(*credentials, mech, Level::kPrivacy);  // CONF asked for explicitly
    ASSERT_TRUE(privacy.server && privacy.server->done());
    EXPECT_TRUE(privacy.server->granted_flags() & GSS_C_CONF_FLAG);
    Pair integrity_only = Establish(*credentials, mech, Level::kIntegrity);
    ASSERT_TRUE(integrity_only.server && integrity_only.server->done());
    EXPECT_FALSE(integrity_only.server->granted_flags() & GSS_C_CONF_FLAG) << MechName(mech);
    EXPECT_TRUE(integrity_only.server->granted_flags() & GSS_C_INTEG_FLAG) << MechName(mech);
  }
  // Without the option MIT asserts CONF anyway, even at integrity.
  auto plain = ClientCredentials();
  ASSERT_NE(plain, nullptr);
  Pair defaulted = Establish(*plain, Mech::kKerberos, Level::kIntegrity);
  ASSERT_TRUE(defaulted.server && defaulted.server->done());
  EXPECT_TRUE(defaulted.server->granted_flags() & GSS_C_CONF_FLAG);

  Pair pair = Establish(*credentials, Mech::kKerberos, Level::kIntegrity);
  ASSERT_TRUE(pair.server && pair.server->done());
  const Protection integrity{Level::kIntegrity, true};
  Pdu pdu = MakePdu(*pair.client, integrity, 16);
  ASSERT_TRUE(pair.client->Protect(integrity, pdu.Regions()).ok());
  EXPECT_TRUE(pair.server->Unprotect(integrity, pdu.Regions()).ok());
}

// The same mapping for codes MIT returns as they are (no mechglue renumbering).
TEST(GssErrorsTest, ClockSkewSaysCheckNtp) {
  for (krb5_error_code code : {KRB5KRB_AP_ERR_SKEW, KRB5_KDCREP_SKEW}) {
    absl::Status status = GssError({"authenticating to host@ca1", Stage::kInitiate, GSS_S_FAILURE,
                                    static_cast<uint32_t>(code), Mech::kKerberos, "ADCSC.TEST"});
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(status.message(), HasSubstr("clock skew too great between this host and the KDC/CA: check NTP"));
    EXPECT_THAT(std::string(status.message()), HasSubstr("Clock skew too great"));  // MIT's own text follows
  }
}

TEST(GssErrorsTest, ExpiredAndMissingCredentialsSayWhatToRun) {
  absl::Status expired = GssError(
      {"x", Stage::kInitiate, GSS_S_FAILURE, static_cast<uint32_t>(KRB5KRB_AP_ERR_TKT_EXPIRED), Mech::kKerberos, ""});
  EXPECT_THAT(expired.message(), HasSubstr("ticket expired"));
  absl::Status none = GssError({"x", Stage::kAcquireInitiator, GSS_S_NO_CRED, 0, Mech::kKerberos, ""});
  EXPECT_EQ(none.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.message(), HasSubstr("no usable Kerberos credentials"));
}

TEST_F(GssTest, CredentialsRenewWithinTheMarginOfExpiry) {
  auto now = std::chrono::system_clock::now();
  CredentialOptions options;
  options.renew_margin = std::chrono::seconds(10);
  options.now = [&now] { return now; };
  auto credentials = Credentials::Acquire(CredentialSource::Password(kShortLived, kClientPassword), options);
  ASSERT_TRUE(credentials.ok()) << credentials.status();
  const auto first_expiry = (*credentials)->expiry();
  EXPECT_LE(first_expiry - now, std::chrono::seconds(60));  // the principal's maxlife
  EXPECT_GT(first_expiry - now, std::chrono::seconds(30));
  EXPECT_FALSE((*credentials)->NeedsRenewal());
  ASSERT_TRUE((*credentials)->RenewIfExpiring().ok());
  EXPECT_EQ((*credentials)->generation(), 1u);

  // A handshake started before the renewal keeps its own handle and still completes.
  auto in_progress = InitiatorContext::Create(**credentials, TargetName::Host(kCaHost), Mech::kKerberos);
  ASSERT_TRUE(in_progress.ok());
  now = first_expiry - std::chrono::seconds(5);
  EXPECT_TRUE((*credentials)->NeedsRenewal());
  EXPECT_FALSE((*credentials)->Expired());
  now = first_expiry;
  EXPECT_TRUE((*credentials)->Expired()) << "on the injected clock, not the system's";
  now = first_expiry - std::chrono::seconds(5);
  ASSERT_TRUE((*credentials)->RenewIfExpiring().ok());
  EXPECT_EQ((*credentials)->generation(), 2u);
  EXPECT_GT((*credentials)->expiry(), first_expiry);
  EXPECT_FALSE((*credentials)->NeedsRenewal());

  auto server = AcceptorContext::Create(ServiceCredentials(), Mech::kKerberos);
  auto leg1 = (*in_progress)->Step({});
  ASSERT_TRUE(leg1.ok()) << leg1.status();
  auto leg2 = server->Step(leg1->token);
  ASSERT_TRUE(leg2.ok()) << leg2.status();
  auto leg3 = (*in_progress)->Step(leg2->token);
  ASSERT_TRUE(leg3.ok()) << leg3.status();
  ASSERT_TRUE(server->Step(leg3->token).ok());
  EXPECT_TRUE(server->done());
  // And the renewed credentials authenticate.
  EXPECT_TRUE(Establish(**credentials, Mech::kKerberos).server->done());
}

TEST_F(GssTest, PasswordFileMustBePrivate) {
  const auto path = kdc_->dir() / "password";
  std::ofstream(path) << kClientPassword << "\n";
  ::chmod(path.c_str(), 0644);
  EXPECT_EQ(ReadPasswordFile(path).status().code(), absl::StatusCode::kFailedPrecondition);
  ::chmod(path.c_str(), 0600);
  auto password = ReadPasswordFile(path);
  ASSERT_TRUE(password.ok()) << password.status();
  EXPECT_EQ(*password, kClientPassword);
}

}  // namespace
}  // namespace adcsc::gss
