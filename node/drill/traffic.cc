#include "node/drill/traffic.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/client/https_client.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/keys.h"

namespace adcsc::drill {

namespace {

constexpr char kSubmitPath[] = "/api/v1/certificate/request";
constexpr char kRetrievePath[] = "/api/v1/certificate/retrieve";

// A short word for why a call failed, from the client's error.
std::string TransportReason(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kDeadlineExceeded || absl::StrContains(s.message(), "timed out") ||
      absl::StrContains(s.message(), "timeout")) {
    return "timeout";
  }
  if (absl::StrContains(s.message(), "handshake") || absl::StrContains(s.message(), "SSL") ||
      absl::StrContains(s.message(), "certificate")) {
    return "tls";
  }
  return "connection";
}

}  // namespace

Traffic::Traffic(TrafficOptions options, std::function<std::string()> phase, std::chrono::steady_clock::time_point t0)
    : options_(std::move(options)), phase_(std::move(phase)), t0_(t0), cert_(options_.cert), key_(options_.key) {}

void Traffic::SwitchIdentity(const std::filesystem::path& cert, const std::filesystem::path& key) {
  std::lock_guard lock(mu_);
  cert_ = cert;
  key_ = key;
  ++identity_generation_;
}

bool Traffic::AwaitIdentitySwitched(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return std::all_of(in_flight_.begin(), in_flight_.end(),
                       [&](const auto& entry) { return entry.first == identity_generation_ || entry.second == 0; });
  });
}

Traffic::~Traffic() { Stop(); }

int64_t Traffic::Now() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0_).count();
}

absl::Status Traffic::Start() {
  node::HttpsClientOptions o;
  o.url = options_.url;
  o.cert_file = options_.cert;
  o.key_file = options_.key;
  o.server_ca_file = options_.server_ca;
  auto probe = node::HttpsClient::Create(o);  // loads the files: fails here, not in every worker
  if (!probe.ok()) return probe.status();
  next_start_ = std::chrono::steady_clock::now();
  for (int i = 0; i < std::max(1, options_.concurrency); ++i) workers_.emplace_back([this] { Worker(); });
  return absl::OkStatus();
}

void Traffic::Stop() {
  stopping_ = true;
  cv_.notify_all();
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
  workers_.clear();
}

bool Traffic::WaitUntil(std::chrono::steady_clock::time_point when) {
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, when, [&] { return stopping_.load(); });
  return !stopping_.load();
}

std::vector<Sample> Traffic::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

std::vector<Acknowledged> Traffic::acknowledged() const {
  std::lock_guard lock(mu_);
  return acknowledged_;
}

void Traffic::Worker() {
  node::HttpsClientOptions o;
  o.url = options_.url;
  o.server_ca_file = options_.server_ca;
  o.keep_alive = false;  // Jamf Pro's client opens a connection per request
  o.timeout = options_.call_timeout;
  o.user_agent = "adcsc-drill";
  std::unique_ptr<node::HttpsClient> client_ptr;
  uint64_t generation = 0;
  // The client for the current identity (made again after SwitchIdentity); false when its
  // files cannot be loaded.
  auto refresh_client = [&]() -> bool {
    {
      std::lock_guard lock(mu_);
      if (client_ptr != nullptr && generation == identity_generation_) return true;
      o.cert_file = cert_;
      o.key_file = key_;
      generation = identity_generation_;
    }
    auto created = node::HttpsClient::Create(o);
    if (!created.ok()) return false;
    client_ptr = std::move(*created);
    return true;
  };
  if (!refresh_client()) return;
  const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(1.0 / std::max(0.01, options_.rate)));

  // One call: sends, times, classifies and records it; returns the parsed answer when the
  // HTTP status was 200 and the body JSON.
  auto call = [&](const char* op, const char* path, const nlohmann::json& body,
                  uint32_t request_id) -> std::optional<nlohmann::json> {
    Sample s;
    // Every call presents the current identity, as Jamf Pro does: a retrieve after the switch
    // presents the new one even when its submit presented the old.
    if (!refresh_client()) {
      s.reason = "client identity";
      s.phase = phase_();
      s.op = op;
      std::lock_guard lock(mu_);
      samples_.push_back(s);
      return std::nullopt;
    }
    s.phase = phase_();
    s.op = op;
    s.request_id = request_id;
    s.start_ms = Now();
    {
      std::lock_guard lock(mu_);
      ++in_flight_[generation];
    }
    auto answer = client_ptr->Post(path, body.dump());
    s.end_ms = Now();
    {
      std::lock_guard lock(mu_);
      --in_flight_[generation];
    }
    cv_.notify_all();
    std::optional<nlohmann::json> parsed;
    if (!answer.ok()) {
      s.reason = TransportReason(answer.status());
    } else {
      s.node = answer->node;
      auto j = nlohmann::json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
      if (answer->status != 200) {
        s.reason = absl::StrCat("http ", answer->status);
      } else if (!j.is_object()) {
        s.reason = "answer";
      } else {
        parsed = std::move(j);
      }
    }
    if (parsed.has_value()) {
      const std::string status = (*parsed)["request-status"].value("status", "");
      if (status != "CR_DISP_ISSUED" && status != "CR_DISP_UNDER_SUBMISSION") {
        s.reason = absl::StrCat("answer ", status);
      } else {
        s.ok = true;
      }
      if (std::string(op) == "submit" && s.ok) s.request_id = (*parsed).value("request-id", 0u);
    }
    std::lock_guard lock(mu_);
    samples_.push_back(s);
    return s.ok ? parsed : std::nullopt;
  };

  for (;;) {
    std::chrono::steady_clock::time_point at;
    int n = 0;
    {
      std::lock_guard lock(mu_);
      if (stopping_ || started_.load() >= options_.max_enrollments) return;
      n = ++started_;
      at = std::max(next_start_, std::chrono::steady_clock::now());
      next_start_ = at + interval;
    }
    if (!WaitUntil(at)) return;
    auto key = pki::GenerateKey(pki::KeyType::kEcP256);
    if (!key.ok()) return;
    const std::string cn = absl::StrCat(options_.cn_prefix, "-", n);
    auto csr = pki::MakeCsr(key->get(), cn, {});
    if (!csr.ok()) return;
    const nlohmann::json config = {{"dc", options_.dc}, {"ca", options_.ca}};
    auto submitted =
        call("submit", kSubmitPath,
             {{"pkcs10", pki::Base64Encode(*csr)}, {"template", options_.template_name}, {"config", config}}, 0);
    if (!submitted.has_value()) continue;
    const uint32_t id = submitted->value("request-id", 0u);
    {
      std::lock_guard lock(mu_);
      acknowledged_.push_back({id, cn});
    }
    // Jamf Pro retrieves about a second later, then polls a pending request. The drill's end
    // does not cut this short: an acknowledged request is followed through.
    std::this_thread::sleep_for(options_.retrieve_delay);
    auto got = call("retrieve", kRetrievePath, {{"request-id", id}, {"config", config}}, id);
    for (int poll = 0; got.has_value() && (*got)["request-status"].value("status", "") == "CR_DISP_UNDER_SUBMISSION" &&
                       poll < options_.max_polls;
         ++poll) {
      std::this_thread::sleep_for(options_.poll_interval);
      got = call("poll", kRetrievePath, {{"request-id", id}, {"config", config}}, id);
    }
  }
}

}  // namespace adcsc::drill
