// The API's HTTPS server with real TLS on loopback: its named limits (headers above 16 KiB,
// the connection cap, the header timeout), 100-continue for a mapped client and none for a
// refused one, keep-alive, the 403 a client without a certificate gets, and admission
// (unmapped clients never take the reserve, per-source caps and refusal budgets). The client is
// OpenSSL driven directly, so each test writes exactly the bytes it needs. Every wait is a
// read with a deadline.
#include "node/http/https_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"
#include "tests/testing/fake_ca_backend.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

using adcsc::pki::EvpPkeyPtr;
using adcsc::pki::X509Ptr;
using namespace std::chrono_literals;

// How long a test waits for an answer it expects before it fails.
constexpr auto kAnswerDeadline = 10s;

struct Identity {
  EvpPkeyPtr key;
  X509Ptr cert;
};

Identity MakeCa(const std::string& cn) {
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto cert = adcsc::pki::MakeSelfSignedCa(key->get(), cn, {"localhost"}, 5, {"serverAuth", "clientAuth"});
  EXPECT_TRUE(cert.ok()) << cert.status();
  return {std::move(*key), std::move(*cert)};
}

Identity IssueClient(const Identity& ca, const std::string& cn) {
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto der = adcsc::pki::MakeCsr(key->get(), cn, {});
  auto csr = adcsc::pki::ParseCsr(*der);
  adcsc::pki::IssueOptions o;
  o.validity_days = 30;
  o.ekus = {"clientAuth"};
  auto cert = adcsc::pki::IssueCertificate(ca.cert.get(), ca.key.get(), csr->request.get(), o);
  EXPECT_TRUE(cert.ok()) << cert.status();
  return {std::move(*key), std::move(*cert)};
}

// Polls `condition` until it holds or the deadline passes; returns whether it held.
template <typename Condition>
bool WaitFor(Condition condition, std::chrono::milliseconds deadline = kAnswerDeadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::yield();
  }
  return true;
}

// One TLS connection to the server, blocking, with a deadline on every read.
class TlsConnection {
 public:
  // `source`: the loopback address to connect from (admission counts by source).
  TlsConnection(uint16_t port, const Identity* client, const char* source = nullptr) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
    if (client != nullptr) {
      SSL_CTX_use_certificate(ctx_, client->cert.get());
      SSL_CTX_use_PrivateKey(ctx_, client->key.get());
    }
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      inet_pton(AF_INET, source, &from.sin_addr);
      bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
  }
  ~TlsConnection() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
    close(fd_);
  }
  bool Handshake() {
    return connected_ && WaitReadable(kAnswerDeadline, [&] { return SSL_connect(ssl_); }) == 1;
  }
  bool Send(std::string_view bytes) {
    return SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) == static_cast<int>(bytes.size());
  }
  // Reads until `until` appears, the peer closes, or the deadline passes; returns what came.
  std::string ReadUntil(std::string_view until, std::chrono::milliseconds deadline = kAnswerDeadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (received_.find(until) == std::string::npos && !closed_) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left <= 0ms) break;
      char buf[4096];
      const int n = WaitReadable(left, [&] { return SSL_read(ssl_, buf, sizeof buf); });
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || n == kWouldBlockTooLong) {
        if (n == 0) closed_ = true;
        break;
      }
    }
    return received_;
  }
  // True when the server closed the connection within the deadline.
  bool ClosedByServer(std::chrono::milliseconds deadline = kAnswerDeadline) {
    ReadUntil("\x01never\x01", deadline);
    return closed_;
  }
  void Forget() { received_.clear(); }

 private:
  static constexpr int kWouldBlockTooLong = -2;
  // Runs an OpenSSL call that may need to wait for the socket, polling up to `deadline`.
  // Returns the call's result (> 0 data or success), 0 for a closed connection, or
  // kWouldBlockTooLong.
  template <typename Call>
  int WaitReadable(std::chrono::milliseconds deadline, Call call) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      const int r = call();
      if (r > 0) return r;
      const int err = SSL_get_error(ssl_, r);
      ERR_clear_error();
      if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) return 0;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left <= 0ms) return kWouldBlockTooLong;
      pollfd p{fd_, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
      poll(&p, 1, static_cast<int>(left.count()));
    }
  }

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

class HttpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A refused request's remaining bytes meet a closed socket: an error to the client, not a
    // signal that ends the test (the node ignores SIGPIPE the same way).
    signal(SIGPIPE, SIG_IGN);
    ca_ = MakeCa("localhost");
    jamf_ = IssueClient(ca_, "jamf.example.test");
    const auto cert = dir_.path() / "server.pem";
    const auto key = dir_.path() / "server-key.pem";
    std::ofstream(cert) << *adcsc::pki::CertToPem(ca_.cert.get());
    ASSERT_TRUE(adcsc::pki::WritePrivateFile(key, *adcsc::pki::PrivateKeyToPem(ca_.key.get())).ok());
    config_.node_id = "node-a";
    config_.ca.identity = "EXAMPLE\\svc";
    config_.api.listen_address = "127.0.0.1";
    config_.api.listen_port = 0;
    config_.api.cert_file = cert;
    config_.api.key_file = key;
    config_.api.client_ca_file = cert;
    config_.api.client_pins = {adcsc::pki::CertSha256Hex(jamf_.cert.get())};
    config_.api.io_threads = 1;
    config_.api.worker_threads = 2;
    adcsc::store::StoreOptions o;
    o.path = dir_.path() / "store.db";
    o.node_id = "node-a";
    o.fsync = false;
    store_ = std::move(*adcsc::store::RequestStore::Open(o));
    log_ = EventLog::Stderr("node-a", LogLevel::kError);
  }
  void Start() {
    auto a = ClientAuthorizer::Create(config_.api.client_ca_file.string(), config_.api.client_pins);
    ASSERT_TRUE(a.ok()) << a.status();
    authorizer_ = std::move(*a);
    service_ = std::make_unique<ApiService>(config_, &ca_backend_, store_.get(), log_.get(), SystemClock::Default());
    server_ = std::make_unique<HttpsServer>(config_.api, service_.get(), authorizer_.get(), log_.get(), nullptr);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  std::unique_ptr<TlsConnection> Connect(const Identity* who, const char* source = nullptr) {
    auto c = std::make_unique<TlsConnection>(server_->port(), who, source);
    EXPECT_TRUE(c->Handshake());
    return c;
  }
  static constexpr std::string_view kVersion = "GET /api/v1/version HTTP/1.1\r\nHost: localhost\r\n\r\n";

  adcsc::testing::TempDir dir_;
  Identity ca_, jamf_;
  Config config_;
  adcsc::testing::FakeCaBackend ca_backend_;
  std::unique_ptr<adcsc::store::RequestStore> store_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<ClientAuthorizer> authorizer_;
  std::unique_ptr<ApiService> service_;
  std::unique_ptr<HttpsServer> server_;
};

TEST_F(HttpsServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  Start();
  auto c = Connect(&jamf_);
  for (int i = 0; i < 3; ++i) {
    c->Forget();
    ASSERT_TRUE(c->Send(kVersion));
    const std::string answer = c->ReadUntil("}");
    EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
    EXPECT_NE(answer.find("X-Adcsc-Node: node-a"), std::string::npos) << answer;
  }
  EXPECT_EQ(server_->counters().requests.load(), 3u);
}

TEST_F(HttpsServerTest, HeadersOver16KiBAre431AndTheConnectionCloses) {
  Start();
  auto c = Connect(&jamf_);
  ASSERT_TRUE(
      c->Send("GET /api/v1/version HTTP/1.1\r\nHost: localhost\r\nX-Big: " + std::string(17 * 1024, 'a') + "\r\n\r\n"));
  const std::string answer = c->ReadUntil("}");
  EXPECT_EQ(answer.rfind("HTTP/1.1 431", 0), 0u) << answer.substr(0, 200);
  EXPECT_NE(answer.find("HEADERS_TOO_LARGE"), std::string::npos);
  EXPECT_TRUE(c->ClosedByServer());
}

TEST_F(HttpsServerTest, ABodyOverTheLimitIs413WithoutReadingIt) {
  config_.api.max_body_bytes = 1024;
  Start();
  auto c = Connect(&jamf_);
  ASSERT_TRUE(c->Send("POST /api/v1/certificate/request HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n"));
  const std::string answer = c->ReadUntil("}");
  EXPECT_EQ(answer.rfind("HTTP/1.1 413", 0), 0u) << answer;
  EXPECT_TRUE(c->ClosedByServer());
}

TEST_F(HttpsServerTest, ExpectContinueInvitesAMappedClientToSendItsBody) {
  Start();
  auto c = Connect(&jamf_);
  const std::string body = R"({"request-id": 7, "config": {"dc": "nowhere", "ca": "x"}})";
  ASSERT_TRUE(
      c->Send("POST /api/v1/certificate/retrieve HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
              "Content-Length: " +
              std::to_string(body.size()) + "\r\n\r\n"));
  EXPECT_EQ(c->ReadUntil("\r\n\r\n").rfind("HTTP/1.1 100 Continue", 0), 0u);
  c->Forget();
  ASSERT_TRUE(c->Send(body));
  const std::string answer = c->ReadUntil("}}");
  EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;  // the CA config is not allowed: the body was read
  EXPECT_NE(answer.find("is not allowed on this connector"), std::string::npos) << answer;
}

TEST_F(HttpsServerTest, ARefusedClientGetsItsAnswerInsteadOf100ContinueAndIsClosed) {
  Start();
  auto c = Connect(nullptr);  // no client certificate
  ASSERT_TRUE(
      c->Send("POST /api/v1/certificate/request HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
              "Content-Length: 5000\r\n\r\n"));
  const std::string answer = c->ReadUntil("}}");
  EXPECT_EQ(answer.rfind("HTTP/1.1 403", 0), 0u) << answer;
  EXPECT_NE(answer.find("403.7 Client certificate required"), std::string::npos) << answer;
  EXPECT_EQ(answer.find("100 Continue"), std::string::npos) << answer;
  EXPECT_TRUE(c->ClosedByServer());
}

TEST_F(HttpsServerTest, ANewConnectionOverTheCapIsClosedAtOnce) {
  config_.api.max_connections = 2;
  Start();
  // One after the other, each answered before the next connects: the server has found it
  // mapped by then (a client can finish its TLS 1.3 handshake before the server has read its
  // Finished; until then the connection is unverified, and with one shared slot a second
  // new connection would take that slot's place).
  std::unique_ptr<TlsConnection> a, b;
  for (auto* c : {&a, &b}) {
    *c = Connect(&jamf_);
    ASSERT_TRUE((*c)->Send(kVersion));
    ASSERT_EQ((*c)->ReadUntil("}").rfind("HTTP/1.1 200", 0), 0u);
  }
  TlsConnection third(server_->port(), &jamf_);
  EXPECT_FALSE(third.Handshake()) << "the third connection got through the cap";
  EXPECT_EQ(server_->counters().connections_refused.load(), 1u);
  // A slot freed is a slot again.
  a.reset();
  ASSERT_TRUE(WaitFor([&] { return server_->active_connections() <= 1; }));
  auto d = Connect(&jamf_);
  ASSERT_TRUE(d->Send(kVersion));
  EXPECT_EQ(d->ReadUntil("}").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpsServerTest, ASlowClientIsDisconnectedAfterTheHeaderTimeout) {
  config_.api.header_timeout = 200ms;
  Start();
  auto c = Connect(&jamf_);
  ASSERT_TRUE(c->Send("GET /api/v1/version HTTP/1.1\r\nHost: loc"));  // and nothing more
  EXPECT_TRUE(c->ClosedByServer());
  // The timer closes the socket before the session counts it.
  EXPECT_TRUE(WaitFor([&] { return server_->counters().header_timeouts.load() == 1; }));
}

TEST_F(HttpsServerTest, AConnectionThatNeverSendsIsClosedAfterTheHeaderTimeout) {
  config_.api.header_timeout = 200ms;
  Start();
  auto c = Connect(&jamf_);
  EXPECT_TRUE(c->ClosedByServer());
}

TEST_F(HttpsServerTest, UnmappedConnectionsNeverTakeTheSlotsReservedForMappedClients) {
  config_.api.max_connections = 6;
  config_.api.reserved_connections = 3;
  Start();
  const Identity stranger = MakeCa("stranger.example.test");
  // Eight strangers from eight sources shake hands and sit there, more than the cap: the
  // three shared slots keep the newest three, the older ones are closed to make room.
  std::vector<std::unique_ptr<TlsConnection>> strangers;
  for (int i = 0; i < 8; ++i) {
    const std::string source = "127.0.1." + std::to_string(i + 1);
    strangers.push_back(Connect(&stranger, source.c_str()));
  }
  ASSERT_TRUE(WaitFor([&] { return server_->refusals(Refusal::kEvicted) >= 5; }));
  EXPECT_TRUE(strangers.front()->ClosedByServer());
  // Three mapped clients still get in and are served, at once and together.
  std::vector<std::unique_ptr<TlsConnection>> jamf;
  for (int i = 0; i < 3; ++i) {
    jamf.push_back(Connect(&jamf_));
    ASSERT_TRUE(jamf.back()->Send(kVersion));
    EXPECT_EQ(jamf.back()->ReadUntil("}").rfind("HTTP/1.1 200", 0), 0u);
  }
  EXPECT_EQ(server_->refusals(Refusal::kConnectionCap), 0u);
}

TEST_F(HttpsServerTest, ASourceHoldsAtMostItsShareOfConnectionsNotYetMapped) {
  config_.api.max_connections_per_source = 2;
  Start();
  const Identity stranger = MakeCa("stranger.example.test");
  auto a = Connect(&stranger, "127.0.2.1");
  auto b = Connect(&stranger, "127.0.2.1");
  TlsConnection third(server_->port(), &stranger, "127.0.2.1");
  EXPECT_FALSE(third.Handshake()) << "a third connection from the same source got in";
  EXPECT_EQ(server_->refusals(Refusal::kSourceConnections), 1u);
  auto other = Connect(&jamf_, "127.0.2.2");
  ASSERT_TRUE(other->Send(kVersion));
  EXPECT_EQ(other->ReadUntil("}").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HttpsServerTest, ASourceThatSpentItsRefusalBudgetIsClosedBeforeTheHandshake) {
  config_.api.refusals_per_source_per_s = 1;
  config_.api.refusal_burst = 3;
  Start();
  const Identity stranger = MakeCa("stranger.example.test");
  // Three refused requests spend the budget (each is a 403 and a closed connection).
  for (int i = 0; i < 3; ++i) {
    auto c = Connect(&stranger, "127.0.3.1");
    ASSERT_TRUE(c->Send(kVersion));
    EXPECT_EQ(c->ReadUntil("}").rfind("HTTP/1.1 403", 0), 0u);
    EXPECT_TRUE(c->ClosedByServer());
  }
  TlsConnection next(server_->port(), &stranger, "127.0.3.1");
  EXPECT_FALSE(next.Handshake());
  EXPECT_GE(server_->refusals(Refusal::kSourceRate), 1u);
  EXPECT_EQ(server_->refusals(Refusal::kUnmappedCertificate), 3u);
  // Another address is not held to that source's budget, and a mapped client never is.
  auto other = Connect(&stranger, "127.0.3.2");
  ASSERT_TRUE(other->Send(kVersion));
  EXPECT_EQ(other->ReadUntil("}").rfind("HTTP/1.1 403", 0), 0u);
  auto jamf = Connect(&jamf_, "127.0.3.3");
  ASSERT_TRUE(jamf->Send(kVersion));
  EXPECT_EQ(jamf->ReadUntil("}").rfind("HTTP/1.1 200", 0), 0u);
}

}  // namespace
}  // namespace adcsc::node
