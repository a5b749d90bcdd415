// The ops listener over plain HTTP on loopback: each endpoint's status and body, drain seen by
// the load-balancer endpoint, and the API never served here.
#include "node/ops/ops_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "nlohmann/json.hpp"
#include "tests/testing/temp_dir.h"

namespace adcsc::ops {
namespace {

// Sends `request` to 127.0.0.1:port and returns the whole answer (the server closes).
std::string Exchange(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "";
  }
  ::send(fd, request.data(), request.size(), 0);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

struct Reply {
  int status = 0;
  std::string body;
};

Reply Get(uint16_t port, const std::string& path, const std::string& method = "GET") {
  const std::string raw = Exchange(port, method + " " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
  Reply r;
  if (raw.size() > 12) r.status = std::stoi(raw.substr(9, 3));
  if (auto b = raw.find("\r\n\r\n"); b != std::string::npos) r.body = raw.substr(b + 4);
  return r;
}

class OpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto mode = ServiceModeStore::Open(dir_.path() / kServiceModeFile);
    ASSERT_TRUE(mode.ok());
    mode_ = std::move(*mode);
    HealthSources s;
    s.store_check = [] { return absl::OkStatus(); };
    s.cas = {{"ca01\\Issuing", [this] { return ca_answer_; }}};
    s.mode = mode_.get();
    s.clock = SystemClock::Default();
    monitor_ = std::make_unique<HealthMonitor>(s, std::chrono::hours(1));
    monitor_->ProbeNow();
    OpsServerOptions o;
    o.tls = false;
    o.node_id = "node-a";
    o.version = "test";
    o.status_page = [this] {
      ++pages_rendered_;
      return std::string("<!DOCTYPE html><title>page</title>");
    };
    server_ = std::make_unique<OpsServer>(o, monitor_.get());
    ASSERT_TRUE(server_->Start().ok());
  }

  adcsc::testing::TempDir dir_;
  absl::Status ca_answer_ = absl::OkStatus();
  std::unique_ptr<ServiceModeStore> mode_;
  std::unique_ptr<HealthMonitor> monitor_;
  std::unique_ptr<OpsServer> server_;
  std::atomic<int> pages_rendered_{0};
};

TEST_F(OpsServerTest, AHealthyNodeAnswersUpAndReady) {
  const uint16_t port = server_->port();
  EXPECT_EQ(Get(port, "/health/live").status, 200);
  Reply ready = Get(port, "/health/ready");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(nlohmann::json::parse(ready.body)["ready"], true);
  Reply lb = Get(port, "/health/lb");
  EXPECT_EQ(lb.status, 200);
  EXPECT_EQ(lb.body, "UP\n");
  Reply status = Get(port, "/status");
  EXPECT_EQ(status.status, 200);
  const auto j = nlohmann::json::parse(status.body);
  EXPECT_EQ(j.value("status", ""), "UP");
  EXPECT_EQ(j.value("ready", false), true);
  EXPECT_EQ(j.value("mode", ""), "active");
  EXPECT_FALSE(j.contains("node")) << "who the node is, is for an administrator: " << status.body;
  EXPECT_FALSE(j.contains("health")) << status.body;
}

TEST_F(OpsServerTest, DrainAndAFailedCheckReachTheLoadBalancer) {
  const uint16_t port = server_->port();
  ASSERT_TRUE(mode_->Set(ServiceMode::kDrain).ok());
  Reply lb = Get(port, "/health/lb");
  EXPECT_EQ(lb.status, 503);
  EXPECT_EQ(lb.body, "DRAIN\n");
  EXPECT_EQ(Get(port, "/health/ready").status, 503);
  EXPECT_EQ(Get(port, "/health/live").status, 200) << "draining is not dying";

  ASSERT_TRUE(mode_->Set(ServiceMode::kActive).ok());
  ca_answer_ = absl::UnavailableError("connection refused");
  monitor_->ProbeNow();
  lb = Get(port, "/health/lb");
  EXPECT_EQ(lb.status, 503);
  EXPECT_EQ(lb.body, "DOWN\n");
  Reply ready = Get(port, "/health/ready");
  EXPECT_NE(ready.body.find("connection refused"), std::string::npos) << ready.body;
}

TEST_F(OpsServerTest, OnlyTheOpsEndpointsAndOnlyGet) {
  const uint16_t port = server_->port();
  Reply api = Get(port, "/api/v1/certificate/retrieve", "POST");
  EXPECT_EQ(api.status, 404) << "the ops port never serves the API";
  EXPECT_NE(api.body.find("API port"), std::string::npos) << api.body;
  EXPECT_EQ(Get(port, "/health/lb", "POST").status, 405);
  EXPECT_EQ(Get(port, "/health/lb?probe=1").status, 200);
  // Garbage and oversized requests get 400, and the server keeps serving.
  EXPECT_NE(Exchange(port, "NONSENSE\r\n\r\n").find(" 400 "), std::string::npos);
  EXPECT_NE(Exchange(port, "GET /health/lb HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n").find(" 400 "),
            std::string::npos);
  EXPECT_EQ(Get(port, "/health/live").status, 200);
}

TEST_F(OpsServerTest, TheStatusPageIsForAdministratorsOnly) {
  // Plain HTTP carries no administrator's certificate: the generic refusal, nothing rendered
  // (the page's data never reaches an anonymous caller). Over TLS: test_status_page.py.
  Reply page = Get(server_->port(), "/");
  EXPECT_EQ(page.status, 403) << page.body;
  EXPECT_EQ(page.body.find("<title>"), std::string::npos);
  EXPECT_EQ(pages_rendered_.load(), 0);
}

}  // namespace
}  // namespace adcsc::ops
