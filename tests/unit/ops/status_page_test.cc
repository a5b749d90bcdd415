// The status page's HTML from a model: every node with its state, the CA per node with its
// error, replication, certificates with dates and thresholds, the hour's outcomes, the latest
// failures across nodes; text escaped; nothing loaded from elsewhere; the stylesheet allowed
// by the hash in the page's Content-Security-Policy.
#include "node/ops/status_page.h"

#include <gtest/gtest.h>

#include <string>

#include "node/pki/encoding.h"

namespace adcsc::ops {
namespace {

constexpr int64_t kNow = 1'800'000'000'000;  // 2027-01-15T08:00:00Z
constexpr int64_t kDay = 86'400'000;
const std::string kCa = "ca ca01.example.com\\Example-CA";

StatusPageNode Ready(const std::string& id) {
  StatusPageNode n;
  n.node_id = id;
  n.address = id + ".example.com:9443";
  n.version = "0.2.0";
  n.health_known = true;
  n.ready = true;
  n.lb = "UP";
  n.mode = "active";
  n.checks = {{"store", true, "ok"}, {kCa, true, "ok in 3 ms"}, {"mode", true, "active"}};
  n.records = 1200;
  n.write_quorum = 2;
  n.quorum_writes = 40;
  n.certificates_known = true;
  n.certificates = {{"api identity", "CN=adcsc.example.com", "/etc/adcsc/api.pem", kNow + 20 * kDay, "warning"},
                    {"cluster identity", "CN=" + id, "/etc/adcsc/cluster/node.pem", kNow + 300 * kDay, "ok"}};
  n.activity_known = true;
  return n;
}

StatusPageModel Cluster() {
  StatusPageModel m;
  m.cluster_id = "prod";
  m.served_by = "node-a";
  m.version = "0.2.0";
  m.now_ms = kNow;
  StatusPageNode a = Ready("node-a");
  a.peers = {{"node-b", 0, 0, kNow - 800, 3, ""}, {"node-c", 17, 95'000, kNow - 120'000, 3, ""}};
  ActivityMinute minute;
  minute.start_unix_ms = kNow - 5 * 60'000;
  minute.counts[{"request", "issued"}] = 30;
  minute.counts[{"request", "ca_error"}] = 2;
  a.activity.minutes.push_back(minute);
  a.activity.failures = {{kNow - 4 * 60'000, "request", "ca_error", 200, "The RPC server is unavailable. 0x800706ba"}};
  StatusPageNode b = Ready("node-b");
  b.ready = false;
  b.lb = "DOWN";
  b.checks[1] = {kCa, false, "<script>alert(1)</script> RPC_S_SERVER_UNAVAILABLE"};
  b.activity.failures = {{kNow - 60'000, "retrieve", "bad_request", 400, "request ID \"x\" is not a number"}};
  StatusPageNode c;
  c.node_id = "node-c";
  c.address = "node-c.example.com:9443";
  c.error = "failed to connect to all addresses";
  m.nodes = {a, b, c};
  return m;
}

bool Has(const std::string& page, const std::string& what) { return page.find(what) != std::string::npos; }

TEST(StatusPageTest, EveryNodeWithItsStateTheCaPerNodeAndAnUnreachableOne) {
  const std::string page = RenderStatusPage(Cluster());
  EXPECT_TRUE(Has(page, "<title>adcsc cluster prod</title>"));
  EXPECT_TRUE(Has(page, "1 of 3</b><span>nodes ready")) << page;
  for (const char* node : {"node-a", "node-b", "node-c"}) EXPECT_TRUE(Has(page, node)) << node;
  EXPECT_TRUE(Has(page, ">NOT READY<")) << "node-b fails its CA check";
  EXPECT_TRUE(Has(page, ">unreachable<"));
  EXPECT_TRUE(Has(page, "failed to connect to all addresses"));
  EXPECT_TRUE(Has(page, "reachable from 1 of 2</b><span>ca01.example.com\\Example-CA")) << page;
  EXPECT_TRUE(Has(page, "RPC_S_SERVER_UNAVAILABLE")) << "the CA's last error on node-b";
}

TEST(StatusPageTest, TextIsEscapedAndNothingIsLoadedFromElsewhere) {
  const std::string page = RenderStatusPage(Cluster());
  EXPECT_FALSE(Has(page, "<script")) << "a check's detail is text, never markup";
  EXPECT_TRUE(Has(page, "&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_TRUE(Has(page, "request ID &quot;x&quot; is not a number"));
  for (const char* external : {"http://", "https://", " src=", "<link", "@import", "url("}) {
    EXPECT_FALSE(Has(page, external)) << external;
  }
  EXPECT_TRUE(Has(page, "<meta http-equiv=\"refresh\" content=\"15\">"));
  EXPECT_TRUE(Has(page, "name=\"viewport\""));
}

TEST(StatusPageTest, TheStylesheetIsTheOneThePolicyAllows) {
  const std::string page = RenderStatusPage(Cluster());
  const size_t open = page.find("<style>");
  const size_t close = page.find("</style>");
  ASSERT_NE(open, std::string::npos);
  ASSERT_NE(close, std::string::npos);
  const std::string css = page.substr(open + 7, close - open - 7);
  const std::string hash = pki::Base64Encode(pki::Sha256(std::string_view(css)));
  const std::string csp = StatusPageCsp();
  EXPECT_TRUE(Has(csp, "default-src 'none'")) << csp;
  EXPECT_TRUE(Has(csp, "style-src 'sha256-" + hash + "'")) << csp;
  EXPECT_FALSE(Has(csp, "unsafe")) << csp;
  EXPECT_FALSE(Has(page, " style=\"")) << "inline style attributes would need 'unsafe-inline'";
}

TEST(StatusPageTest, ReplicationCertificatesActivityAndFailures) {
  const std::string page = RenderStatusPage(Cluster());
  // Replication: node-c lags with 17 writes, the oldest waiting 1 min 35 s.
  EXPECT_TRUE(Has(page, ">17<"));
  EXPECT_TRUE(Has(page, "1 min 35 s"));
  EXPECT_TRUE(Has(page, "2 min 0 s ago"));
  // Certificates with their expiry date, days left, state and the thresholds.
  EXPECT_TRUE(Has(page, ">2027-02-04T08:00:00Z<")) << "the API identity, 20 days on";
  EXPECT_TRUE(Has(page, ">20<"));
  EXPECT_TRUE(Has(page, "class=\"warn\">warning<"));
  EXPECT_TRUE(Has(page, "warning under 30 days, critical under 7 days"));
  EXPECT_TRUE(Has(page, "20 days</b><span>until the first certificate expires (api identity on node-a)"));
  // The hour's outcomes on node-a.
  EXPECT_TRUE(Has(page, "class=\"ok\">issued</td><td class=\"num\">30<"));
  EXPECT_TRUE(Has(page, "class=\"bad\">ca_error</td><td class=\"num\">2<"));
  EXPECT_TRUE(Has(page, "peak 32"));
  // Failures from both nodes, newest (node-b's) first.
  const size_t b = page.find("request ID &quot;x&quot;");
  const size_t a = page.find("The RPC server is unavailable. 0x800706ba");
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_LT(b, a);
}

TEST(StatusPageTest, AtMostFiftyFailuresAcrossTheCluster) {
  StatusPageModel m = Cluster();
  for (auto& n : m.nodes) {
    n.activity.failures.clear();
    for (int i = 0; i < 40; ++i) {
      n.activity.failures.push_back(
          {kNow - i * 1000, "request", "ca_error", 200, n.node_id + " failure " + std::to_string(i)});
    }
  }
  const std::string page = RenderStatusPage(m);
  size_t rows = 0;
  for (size_t at = page.find(" failure "); at != std::string::npos; at = page.find(" failure ", at + 1)) ++rows;
  EXPECT_EQ(rows, ActivityLog::kMaxFailures);
}

TEST(StatusPageTest, ANodeTooOldToReportIsSaidToBe) {
  StatusPageModel m = Cluster();
  m.nodes[1].health_known = false;
  m.nodes[1].certificates_known = false;
  m.nodes[1].activity_known = false;
  const std::string page = RenderStatusPage(m);
  EXPECT_TRUE(Has(page, "health not reported"));
  EXPECT_TRUE(Has(page, "not reported (an older release)"));
}

}  // namespace
}  // namespace adcsc::ops
