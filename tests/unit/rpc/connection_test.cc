// ClientConnection against ServeConnection over loopback TCP, in one process: binds with and
// without NTLM, every auth level, fragmentation both ways, faults, a failed logon, and a
// response whose bytes are changed on the way (the client must refuse it).
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <string_view>

#include "node/rpc/client.h"
#include "node/rpc/server.h"
#include "node/rpc/tcp_stream.h"
#include "tests/unit/rpc/loopback.h"

namespace adcsc::rpc {
namespace {

const SyntaxId kTestInterface{Uuid::Literal("12345678-1234-abcd-ef00-0123456789ab"), 1, 0};
constexpr char kPassword[] = "Test-Password-1";

// Serves every accepted connection with NTLM for EXAMPLE\svc, until destroyed.
ServerOptions NtlmServerOptions() {
  ServerOptions options;
  options.interface = kTestInterface;
  options.names = {"EXAMPLE", "SERVER", "", ""};
  const ntlm::Key16 hash = *ntlm::NtHash(kPassword);
  options.accounts = [hash](std::string_view domain, std::string_view user) -> std::optional<ntlm::Key16> {
    if (domain == "EXAMPLE" && user == "svc") return hash;
    return std::nullopt;
  };
  return options;
}

class TestServer : public testing::LoopbackServer {
 public:
  explicit TestServer(CallHandler handler) : LoopbackServer(NtlmServerOptions(), std::move(handler)) {}
};

// Echoes the stub reversed, and records who called at which level.
struct Echo {
  CallContext last;
  absl::StatusOr<Bytes> operator()(const CallContext& c, uint16_t opnum, ByteView stub) {
    last = c;
    if (opnum == 7) return FaultError(fault::kOpRangeError, "test");
    return Bytes(stub.rbegin(), stub.rend());
  }
};

ClientOptions Options(uint16_t port, std::optional<uint8_t> level, const char* password = kPassword) {
  ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.call_timeout = std::chrono::seconds(10);
  if (level)
    o.auth = ClientAuth{
        {"EXAMPLE", "svc", *ntlm::NtHash(password), "TEST"}, *level, nullptr, "host/ca.example.test", std::nullopt};
  return o;
}

Bytes Pattern(size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 31 + 7);
  return b;
}

class ConnectionLevels : public ::testing::TestWithParam<std::optional<uint8_t>> {};

TEST_P(ConnectionLevels, CallsRoundTripWithFragmentationBothWays) {
  Echo echo;
  TestServer server([&](const CallContext& c, uint16_t op, ByteView s) { return echo(c, op, s); });
  ClientOptions o = Options(server.port(), GetParam());
  o.max_frag = kMustRecvFragSize;  // forces several fragments for the larger stubs
  auto c = ClientConnection::Connect(o, kTestInterface);
  ASSERT_TRUE(c.ok()) << c.status();
  for (size_t size : {0u, 1u, 100u, 1432u, 5000u, 20000u}) {
    const Bytes stub = Pattern(size);
    auto answer = (*c)->Call(1, stub);
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(*answer, Bytes(stub.rbegin(), stub.rend())) << size;
  }
  EXPECT_EQ(echo.last.auth_level, GetParam().value_or(authn_level::kNone));
  EXPECT_EQ(echo.last.user, GetParam() ? "svc" : "");
  EXPECT_EQ(echo.last.target_spn, GetParam() ? "host/ca.example.test" : "") << "NTLM carried the SPN the client meant";
  // A fault answers one call; the connection goes on.
  auto fault = (*c)->Call(7, Pattern(10));
  ASSERT_FALSE(fault.ok());
  EXPECT_EQ(FaultOf(fault.status()), fault::kOpRangeError);
  EXPECT_FALSE((*c)->broken());
  EXPECT_TRUE((*c)->Call(1, Pattern(10)).ok());
}

INSTANTIATE_TEST_SUITE_P(Levels, ConnectionLevels,
                         ::testing::Values(std::nullopt, std::optional<uint8_t>(authn_level::kConnect),
                                           std::optional<uint8_t>(authn_level::kPktIntegrity),
                                           std::optional<uint8_t>(authn_level::kPktPrivacy)));

TEST(Connection, WrongPasswordIsRefusedAtTheFirstCall) {
  Echo echo;
  TestServer server([&](const CallContext& c, uint16_t op, ByteView s) { return echo(c, op, s); });
  auto c = ClientConnection::Connect(Options(server.port(), authn_level::kPktPrivacy, "wrong"), kTestInterface);
  ASSERT_TRUE(c.ok()) << c.status();  // NTLM's last leg (auth3) has no answer
  auto answer = (*c)->Call(1, Pattern(10));
  ASSERT_FALSE(answer.ok());
  EXPECT_EQ(FaultOf(answer.status()), fault::kAccessDenied) << answer.status();
}

TEST(Connection, UnknownInterfaceIsAClearError) {
  Echo echo;
  TestServer server([&](const CallContext& c, uint16_t op, ByteView s) { return echo(c, op, s); });
  auto c = ClientConnection::Connect(Options(server.port(), std::nullopt), kIcprSyntax);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();
  EXPECT_NE(c.status().message().find("does not serve interface"), std::string_view::npos);
}

TEST(Connection, NothingListeningIsUnavailable) {
  uint16_t port;
  {
    auto l = TcpListener::Listen("127.0.0.1", 0);
    port = (*l)->port();
  }
  auto c = ClientConnection::Connect(Options(port, std::nullopt), kTestInterface);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(absl::IsUnavailable(c.status())) << c.status();
}

TEST(Connection, ATamperedAnswerIsRefused) {
  for (uint8_t level : {authn_level::kPktIntegrity, authn_level::kPktPrivacy}) {
    // Offset 30: inside the response stub (the response header is 24 bytes). Offset 8: the
    // frag header's call-id area is checked elsewhere, so use the stub and the signature.
    for (size_t offset : {30u, 40u}) {
      Echo echo;
      TestServer server([&](const CallContext& c, uint16_t op, ByteView s) { return echo(c, op, s); });
      // The first answer after bind_ack (NTLM's last leg, AUTH3, has no answer).
      testing::PduProxy proxy(server.port(), testing::PduProxy::FlipToClient(1, offset));
      auto c = ClientConnection::Connect(Options(proxy.port(), level), kTestInterface);
      ASSERT_TRUE(c.ok()) << c.status();
      auto answer = (*c)->Call(1, Pattern(64));
      ASSERT_FALSE(answer.ok()) << "level " << int(level) << " offset " << offset;
      EXPECT_TRUE(absl::IsPermissionDenied(answer.status())) << answer.status();
      EXPECT_TRUE((*c)->broken());
    }
  }
}

// Whether a failed call may have run at the server decides whether a submit may be sent
// again (ca_backend.h, IsOutcomeUnknown): only a failure before anything went out, or the
// server's signed fault, says it did not.
TEST(Connection, AFailureAfterTheRequestWentOutMayHaveRun) {
  // The server runs the call, then drops the connection without answering.
  std::atomic<int> ran{0};
  TestServer dropping([&](const CallContext&, uint16_t op, ByteView) -> absl::StatusOr<Bytes> {
    ran++;
    if (op == 7) return FaultError(fault::kCantPerform, "test");  // unsigned, as ServeConnection sends it
    return absl::UnavailableError("test: dropped after running the call");
  });
  auto c = ClientConnection::Connect(Options(dropping.port(), authn_level::kPktPrivacy), kTestInterface);
  ASSERT_TRUE(c.ok()) << c.status();
  auto dropped = (*c)->Call(1, Pattern(10));
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(ran.load(), 1);
  EXPECT_TRUE(RequestMayHaveRun(dropped.status())) << dropped.status();

  auto c2 = ClientConnection::Connect(Options(dropping.port(), authn_level::kPktPrivacy), kTestInterface);
  ASSERT_TRUE(c2.ok()) << c2.status();
  auto unsigned_fault = (*c2)->Call(7, Pattern(10));
  ASSERT_FALSE(unsigned_fault.ok());
  EXPECT_EQ(FaultOf(unsigned_fault.status()), fault::kCantPerform);
  EXPECT_TRUE(RequestMayHaveRun(unsigned_fault.status())) << "an unsigned fault could be forged";

  // A broken connection fails before sending: nothing went out.
  auto again = (*c)->Call(1, Pattern(10));
  ASSERT_FALSE(again.ok());
  EXPECT_FALSE(RequestMayHaveRun(again.status())) << again.status();
  EXPECT_EQ(ran.load(), 2);
}

}  // namespace
}  // namespace adcsc::rpc
