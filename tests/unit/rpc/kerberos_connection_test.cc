// ClientConnection against ServeConnection over loopback with Kerberos, against a throw-away
// MIT realm (krb5kdc on 127.0.0.1): SPNEGO (auth type 9) and raw krb5 (16) at every level,
// fragmentation both ways, who the server sees, header signing (agreed, and not echoed),
// a tampered answer, and the failures an operator meets: an SPN the KDC does not know, a CA
// without Kerberos, a CA whose keytab is stale, and a KDC that is down.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "node/gss/credentials.h"
#include "node/rpc/client.h"
#include "node/rpc/server.h"
#include "tests/testing/mit_kdc.h"
#include "tests/unit/rpc/loopback.h"

namespace adcsc::rpc {
namespace {

using ::testing::HasSubstr;
using testing::LoopbackServer;
using testing::MitKdc;
using testing::PduProxy;
using Direction = testing::PduProxy::Direction;

const SyntaxId kTestInterface{Uuid::Literal("12345678-1234-abcd-ef00-0123456789ab"), 1, 0};
constexpr char kClient[] = "svc-adcsc@ADCSC.TEST";
constexpr char kCaHost[] = "ca.adcsc.test";
// A CA whose keytab holds a key the KDC no longer uses (its key was changed after export).
constexpr char kStaleHost[] = "stale.adcsc.test";
// The domain the test server reports Kerberos callers under (ServerOptions::realm_domain).
constexpr char kRealmDomain[] = "EXAMPLE";

class KerberosConnectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!MitKdc::Installed()) return;
    kdc_ = new MitKdc();
    std::string error = kdc_->Start();
    const std::string ca = std::string("host/") + kCaHost;
    const std::string stale = std::string("host/") + kStaleHost;
    for (const std::string& step : {
             kdc_->AddRandomKeyPrincipal(kClient),
             kdc_->ExportKeytab(kClient, ClientKeytab()),
             kdc_->AddRandomKeyPrincipal(ca),
             kdc_->ExportKeytab(ca, ServiceKeytab()),
             kdc_->AddRandomKeyPrincipal(stale),
             // The server's keytab: the CA's current key and the stale host's old one...
             kdc_->ExportKeytab(ca, MixedKeytab()),
             kdc_->ExportKeytab(stale, MixedKeytab()),
             // ...then the KDC moves on to a new key (kvno 2) for the stale host.
             kdc_->RandomizeKeyToKeytab(stale, kdc_->dir() / "stale-new.keytab"),
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

  static std::filesystem::path ClientKeytab() { return kdc_->dir() / "client.keytab"; }
  static std::filesystem::path ServiceKeytab() { return kdc_->dir() / "service.keytab"; }
  static std::filesystem::path MixedKeytab() { return kdc_->dir() / "mixed.keytab"; }

  // Fresh credentials each time: a private memory ccache with a TGT and no service ticket yet.
  static std::shared_ptr<gss::Credentials> ClientCredentials() {
    auto credentials = gss::Credentials::Acquire(gss::CredentialSource::Keytab(kClient, ClientKeytab().string()));
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return credentials.ok() ? *credentials : nullptr;
  }
  static std::shared_ptr<gss::AcceptorCredentials> Acceptor(const std::filesystem::path& keytab) {
    auto credentials = gss::AcceptorCredentials::FromKeytab(keytab.string());
    EXPECT_TRUE(credentials.ok()) << credentials.status();
    return credentials.ok() ? *credentials : nullptr;
  }

  // A Kerberos-only server (no NTLM accounts) for `keytab`.
  static ServerOptions KerberosServer(const std::filesystem::path& keytab, std::string realm_domain = kRealmDomain) {
    ServerOptions options;
    options.interface = kTestInterface;
    options.kerberos = Acceptor(keytab);
    options.realm_domain = std::move(realm_domain);
    return options;
  }

  static ClientOptions KerberosClient(uint16_t port, gss::Mech mech, uint8_t level,
                                      std::shared_ptr<gss::Credentials> credentials,
                                      gss::TargetName target = gss::TargetName::Host(kCaHost)) {
    ClientOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.call_timeout = std::chrono::seconds(10);
    ClientAuth auth;
    auth.level = level;
    auth.kerberos = KerberosAuth{std::move(credentials), std::move(target), mech};
    o.auth = std::move(auth);
    return o;
  }

  static MitKdc* kdc_;
  static std::string* setup_error_;
};

MitKdc* KerberosConnectionTest::kdc_ = nullptr;
std::string* KerberosConnectionTest::setup_error_ = nullptr;

// Echoes the stub reversed, and records who called.
class Echo {
 public:
  CallHandler Handler() {
    return [this](const CallContext& c, uint16_t opnum, ByteView stub) -> absl::StatusOr<Bytes> {
      {
        std::lock_guard lock(mu_);
        last_ = c;
      }
      if (opnum == 7) return FaultError(fault::kOpRangeError, "test");
      return Bytes(stub.rbegin(), stub.rend());
    };
  }
  CallContext last() const {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  mutable std::mutex mu_;
  CallContext last_;
};

Bytes Pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + 7);
  return b;
}

// What a PduProxy saw, one entry per PDU.
class Recorder {
 public:
  struct Seen {
    Direction direction;
    int index;
    Bytes pdu;
    PduType type() const { return static_cast<PduType>(pdu[2]); }
    uint8_t flags() const { return pdu[3]; }
    uint16_t auth_length() const { return static_cast<uint16_t>(pdu[10] | pdu[11] << 8); }
    // The sec_trailer's auth_type and auth_level (only when auth_length != 0).
    uint8_t auth_type() const { return pdu[pdu.size() - auth_length() - kSecTrailerSize]; }
    uint8_t auth_level() const { return pdu[pdu.size() - auth_length() - kSecTrailerSize + 1]; }
  };
  PduProxy::Edit Edit(PduProxy::Edit then = nullptr) {
    return [this, then](Direction d, int n, Bytes& pdu) {
      if (then) then(d, n, pdu);
      std::lock_guard lock(mu_);
      seen_.push_back({d, n, pdu});
    };
  }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::optional<Seen> Find(Direction d, int index) const {
    for (const Seen& s : seen()) {
      if (s.direction == d && s.index == index) return s;
    }
    return std::nullopt;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
};

std::string LevelName(uint8_t level) {
  switch (level) {
    case authn_level::kConnect:
      return "Connect";
    case authn_level::kPktIntegrity:
      return "Integrity";
    case authn_level::kPktPrivacy:
      return "Privacy";
  }
  return std::to_string(level);
}

class KerberosLevels : public KerberosConnectionTest,
                       public ::testing::WithParamInterface<std::tuple<gss::Mech, uint8_t>> {
 protected:
  gss::Mech mech() const { return std::get<0>(GetParam()); }
  uint8_t level() const { return std::get<1>(GetParam()); }
  std::string mechanism() const { return mech() == gss::Mech::kSpnego ? "negotiate/kerberos" : "kerberos"; }
};

TEST_P(KerberosLevels, CallsRoundTripWithFragmentationBothWays) {
  Echo echo;
  LoopbackServer server(KerberosServer(ServiceKeytab()), echo.Handler());
  Recorder recorder;
  PduProxy proxy(server.port(), recorder.Edit());
  ClientOptions o = KerberosClient(proxy.port(), mech(), level(), ClientCredentials());
  o.max_frag = kMustRecvFragSize;  // forces several fragments for the larger stubs, both ways
  auto c = ClientConnection::Connect(o, kTestInterface);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->mechanism(), mechanism());
  EXPECT_TRUE((*c)->header_signing()) << "the server echoed PFC_SUPPORT_HEADER_SIGN";
  EXPECT_EQ((*c)->max_xmit_frag(), kMustRecvFragSize);
  EXPECT_EQ((*c)->max_recv_frag(), kMustRecvFragSize);

  for (size_t size : {0u, 1u, 15u, 16u, 17u, 100u, 1432u, 5000u, 20000u}) {
    const Bytes stub = Pattern(size);
    auto answer = (*c)->Call(1, stub);
    ASSERT_TRUE(answer.ok()) << size << ": " << answer.status();
    EXPECT_EQ(*answer, Bytes(stub.rbegin(), stub.rend())) << size;
  }
  const CallContext caller = echo.last();
  EXPECT_EQ(caller.auth_level, level());
  EXPECT_EQ(caller.user, "svc-adcsc");
  EXPECT_EQ(caller.domain, kRealmDomain) << "the realm is mapped to the configured domain";
  EXPECT_EQ(caller.principal, kClient);
  EXPECT_EQ(caller.mechanism, mechanism());
  EXPECT_EQ(caller.target_spn, "");

  // A fault answers one call; the connection goes on.
  auto fault = (*c)->Call(7, Pattern(10));
  ASSERT_FALSE(fault.ok());
  EXPECT_EQ(FaultOf(fault.status()), fault::kOpRangeError) << fault.status();
  EXPECT_FALSE((*c)->broken());
  EXPECT_TRUE((*c)->Call(1, Pattern(10)).ok());

  // On the wire: bind and bind_ack both carry PFC_SUPPORT_HEADER_SIGN, then one
  // alter_context round trip completes the exchange (krb5's third leg; SPNEGO's third and
  // fourth), then the calls.
  const auto bind = recorder.Find(Direction::kToServer, 0), bind_ack = recorder.Find(Direction::kToClient, 0);
  const auto alter = recorder.Find(Direction::kToServer, 1), alter_resp = recorder.Find(Direction::kToClient, 1);
  ASSERT_TRUE(bind && bind_ack && alter && alter_resp);
  EXPECT_EQ(bind->type(), PduType::kBind);
  EXPECT_EQ(bind->auth_type(), gss::DceAuthType(mech()));
  EXPECT_EQ(bind->auth_level(), level());
  EXPECT_TRUE(bind->flags() & pfc::kSupportHeaderSign);
  EXPECT_EQ(bind_ack->type(), PduType::kBindAck);
  EXPECT_TRUE(bind_ack->flags() & pfc::kSupportHeaderSign);
  EXPECT_EQ(alter->type(), PduType::kAlterContext);
  EXPECT_EQ(alter_resp->type(), PduType::kAlterContextResp);
  EXPECT_EQ(recorder.Find(Direction::kToServer, 2)->type(), PduType::kRequest);

  int requests = 0, responses = 0, plaintext_first_fragments = 0;
  const Bytes stub_start = Pattern(16);
  for (const Recorder::Seen& s : recorder.seen()) {
    if (s.type() != PduType::kRequest && s.type() != PduType::kResponse) continue;
    (s.type() == PduType::kRequest ? requests : responses)++;
    EXPECT_LE(s.pdu.size(), kMustRecvFragSize);
    if (level() == authn_level::kConnect) {
      EXPECT_EQ(s.auth_length(), 0) << "no per-call token at connect level";
    } else {
      ASSERT_NE(s.auth_length(), 0) << "every fragment is protected";
      EXPECT_EQ(s.auth_type(), gss::DceAuthType(mech()));
      EXPECT_EQ(s.auth_level(), level());
    }
    if (s.type() == PduType::kRequest && (s.flags() & pfc::kFirstFrag) && s.pdu.size() >= kRequestHeaderSize + 16 &&
        std::equal(stub_start.begin(), stub_start.end(), s.pdu.begin() + kRequestHeaderSize)) {
      plaintext_first_fragments++;
    }
  }
  // 20000 bytes in fragments of at most 1432 take at least 15 each way.
  EXPECT_GE(requests, 15 + 9);
  EXPECT_GE(responses, 15 + 9);
  if (level() == authn_level::kPktPrivacy) {
    EXPECT_EQ(plaintext_first_fragments, 0) << "privacy encrypts the stub";
  } else {
    EXPECT_GE(plaintext_first_fragments, 4) << "the stubs of 16 bytes and more, in the clear";
  }
}

INSTANTIATE_TEST_SUITE_P(MechsAndLevels, KerberosLevels,
                         ::testing::Combine(::testing::Values(gss::Mech::kSpnego, gss::Mech::kKerberos),
                                            ::testing::Values(authn_level::kConnect, authn_level::kPktIntegrity,
                                                              authn_level::kPktPrivacy)),
                         [](const auto& info) {
                           return std::string(gss::MechName(std::get<0>(info.param))) +
                                  LevelName(std::get<1>(info.param));
                         });

class KerberosMechs : public KerberosConnectionTest, public ::testing::WithParamInterface<gss::Mech> {};

TEST_P(KerberosMechs, WithoutARealmDomainTheRealmsFirstLabelIsTheDomain) {
  Echo echo;
  LoopbackServer server(KerberosServer(ServiceKeytab(), ""), echo.Handler());
  auto c = ClientConnection::Connect(
      KerberosClient(server.port(), GetParam(), authn_level::kPktPrivacy, ClientCredentials()), kTestInterface);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->Call(1, Pattern(10)).ok());
  EXPECT_EQ(echo.last().domain, "ADCSC");
  EXPECT_EQ(echo.last().user, "svc-adcsc");
}

// Offsets in the response PDU (the third towards the client: bind_ack, alter_context_resp,
// response): in the stub, in the response header's alloc_hint (signed only with header
// signing), and the last byte of the token.
TEST_P(KerberosMechs, ATamperedAnswerIsRefused) {
  for (uint8_t level : {authn_level::kPktIntegrity, authn_level::kPktPrivacy}) {
    for (std::optional<size_t> offset :
         {std::optional<size_t>(30), std::optional<size_t>(16), std::optional<size_t>()}) {
      Echo echo;
      LoopbackServer server(KerberosServer(ServiceKeytab()), echo.Handler());
      const size_t at = offset.value_or(0);
      PduProxy proxy(server.port(), [&](Direction d, int n, Bytes& pdu) {
        if (d == Direction::kToClient && n == 2) pdu[offset ? at : pdu.size() - 1] ^= 0x01;
      });
      auto c = ClientConnection::Connect(KerberosClient(proxy.port(), GetParam(), level, ClientCredentials()),
                                         kTestInterface);
      ASSERT_TRUE(c.ok()) << c.status();
      ASSERT_TRUE((*c)->header_signing());
      auto answer = (*c)->Call(1, Pattern(64));
      const std::string where = "level " + LevelName(level) + " offset " + (offset ? std::to_string(at) : "last");
      ASSERT_FALSE(answer.ok()) << where;
      EXPECT_TRUE(absl::IsPermissionDenied(answer.status())) << where << ": " << answer.status();
      EXPECT_THAT(std::string(answer.status().message()), HasSubstr("failed verification")) << where;
      EXPECT_TRUE((*c)->broken()) << where;
      EXPECT_FALSE((*c)->Call(1, Pattern(8)).ok()) << where;
    }
  }
}

// A server that does not echo PFC_SUPPORT_HEADER_SIGN (here: the flag taken out of the bind on
// the way, so the server never saw it): both sides protect the stub alone, and calls work.
TEST_P(KerberosMechs, WithoutTheServersEchoOnlyTheStubIsProtected) {
  for (uint8_t level : {authn_level::kPktIntegrity, authn_level::kPktPrivacy}) {
    Echo echo;
    LoopbackServer server(KerberosServer(ServiceKeytab()), echo.Handler());
    Recorder recorder;
    PduProxy proxy(server.port(), recorder.Edit([](Direction d, int n, Bytes& pdu) {
      if (d == Direction::kToServer && n == 0) pdu[3] &= static_cast<uint8_t>(~pfc::kSupportHeaderSign);
      // The second call's response: a changed alloc_hint, outside what is signed now.
      if (d == Direction::kToClient && n == 3) pdu[16] ^= 0x01;
    }));
    auto c =
        ClientConnection::Connect(KerberosClient(proxy.port(), GetParam(), level, ClientCredentials()), kTestInterface);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_FALSE((*c)->header_signing());
    ASSERT_TRUE(recorder.Find(Direction::kToClient, 0));
    EXPECT_FALSE(recorder.Find(Direction::kToClient, 0)->flags() & pfc::kSupportHeaderSign);
    ASSERT_TRUE(recorder.Find(Direction::kToServer, 1));
    EXPECT_FALSE(recorder.Find(Direction::kToServer, 1)->flags() & pfc::kSupportHeaderSign)
        << "the alter_context does not ask again";
    for (size_t size : {10u, 3000u}) {
      const Bytes stub = Pattern(size);
      auto answer = (*c)->Call(1, stub);
      ASSERT_TRUE(answer.ok()) << LevelName(level) << " " << size << ": " << answer.status();
      EXPECT_EQ(*answer, Bytes(stub.rbegin(), stub.rend()));
    }
    EXPECT_EQ(server.errors(), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(BothMechs, KerberosMechs, ::testing::Values(gss::Mech::kSpnego, gss::Mech::kKerberos),
                         [](const auto& info) { return std::string(gss::MechName(info.param)); });

TEST_F(KerberosConnectionTest, AnSpnTheKdcDoesNotKnowFailsBeforeTheBind) {
  Echo echo;
  LoopbackServer server(KerberosServer(ServiceKeytab()), echo.Handler());
  Recorder recorder;
  absl::StatusOr<std::unique_ptr<ClientConnection>> c;
  uint16_t port = 0;
  {
    PduProxy proxy(server.port(), recorder.Edit());
    port = proxy.port();
    c = ClientConnection::Connect(KerberosClient(port, gss::Mech::kSpnego, authn_level::kPktPrivacy,
                                                 ClientCredentials(), gss::TargetName::Host("nosuchca.adcsc.test")),
                                  kTestInterface);
  }  // the client has closed: once the proxy is gone, it has passed on all there was
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(AuthFailedBeforeBind(c.status())) << c.status();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("does not know the CA's service principal"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("127.0.0.1:" + std::to_string(port)));
  EXPECT_TRUE(recorder.seen().empty()) << "nothing was sent to the server";
}

TEST_F(KerberosConnectionTest, AServerWithoutKerberosRefusesTheBind) {
  ServerOptions ntlm_only;
  ntlm_only.interface = kTestInterface;
  ntlm_only.names = {"EXAMPLE", "SERVER", "", ""};
  ntlm_only.accounts = [](std::string_view, std::string_view) -> std::optional<ntlm::Key16> { return std::nullopt; };
  Echo echo;
  LoopbackServer server(std::move(ntlm_only), echo.Handler());
  for (gss::Mech mech : {gss::Mech::kSpnego, gss::Mech::kKerberos}) {
    auto c = ClientConnection::Connect(
        KerberosClient(server.port(), mech, authn_level::kPktPrivacy, ClientCredentials()), kTestInterface);
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(absl::IsPermissionDenied(c.status())) << c.status();
    EXPECT_FALSE(AuthFailedBeforeBind(c.status())) << "the bind went out: negotiate must not fall back on this";
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("authentication_type_not_recognized"));
    EXPECT_THAT(std::string(c.status().message()),
                HasSubstr(mech == gss::Mech::kSpnego ? "may not accept auth type 9 (negotiate)"
                                                     : "may not accept auth type 16 (kerberos)"))
        << "the hint says the CA may not take Kerberos at all, not only that it refused a ticket";
    EXPECT_EQ(server.WaitForError(std::string("(") + (mech == gss::Mech::kSpnego ? "negotiate" : "kerberos") +
                                  "), which is not enabled"),
              "");
  }
}

TEST_F(KerberosConnectionTest, AStaleServiceKeyRefusesTheBindAndTheServerGoesOn) {
  Echo echo;
  LoopbackServer server(KerberosServer(MixedKeytab()), echo.Handler());
  for (gss::Mech mech : {gss::Mech::kSpnego, gss::Mech::kKerberos}) {
    auto c = ClientConnection::Connect(KerberosClient(server.port(), mech, authn_level::kPktPrivacy,
                                                      ClientCredentials(), gss::TargetName::Host(kStaleHost)),
                                       kTestInterface);
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(absl::IsPermissionDenied(c.status())) << c.status();
    EXPECT_FALSE(AuthFailedBeforeBind(c.status())) << "the CA refused our ticket: no reason to fall back";
    const std::string message(c.status().message());
    EXPECT_THAT(message, HasSubstr("the CA did not accept our Kerberos ticket"));
    EXPECT_THAT(message, HasSubstr(std::string("host@") + kStaleHost)) << "names the SPN to check";
    EXPECT_THAT(message, HasSubstr("clock skew"));
    EXPECT_EQ(server.WaitForError("keytab's key does not match"), "");
  }
  // The same server still serves the principal whose key is current.
  auto good = ClientConnection::Connect(
      KerberosClient(server.port(), gss::Mech::kSpnego, authn_level::kPktPrivacy, ClientCredentials()), kTestInterface);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_TRUE((*good)->Call(1, Pattern(100)).ok());
}

TEST_F(KerberosConnectionTest, AKdcDownBeforeTheServiceTicketFailsBeforeTheBind) {
  Echo echo;
  LoopbackServer server(KerberosServer(ServiceKeytab()), echo.Handler());
  auto credentials = ClientCredentials();  // a TGT, but no ticket for the CA yet
  ASSERT_NE(credentials, nullptr);
  kdc_->Stop();
  auto c = ClientConnection::Connect(
      KerberosClient(server.port(), gss::Mech::kSpnego, authn_level::kPktPrivacy, credentials), kTestInterface);
  const std::string restarted = kdc_->Restart();
  ASSERT_EQ(restarted, "");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(AuthFailedBeforeBind(c.status())) << c.status();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cannot reach the KDC for realm ADCSC.TEST"));
  // With the KDC back, the same credentials get their ticket.
  auto again = ClientConnection::Connect(
      KerberosClient(server.port(), gss::Mech::kSpnego, authn_level::kPktPrivacy, credentials), kTestInterface);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->Call(1, Pattern(10)).ok());
}

}  // namespace
}  // namespace adcsc::rpc
