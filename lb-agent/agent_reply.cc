#include "lb-agent/agent_reply.h"

#include <algorithm>

#include "nlohmann/json.hpp"

namespace adcsc::lbagent {
namespace {

// HAProxy shows the text after '#' as the reason; keep it one short printable line.
std::string Sanitize(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (out.size() >= 200) break;
    out.push_back(c == '\n' || c == '\r' || static_cast<unsigned char>(c) < 0x20 ? ' ' : c);
  }
  return out;
}

}  // namespace

namespace {

std::string FailingCheckIn(const nlohmann::json& health) {
  if (!health.is_object() || !health.contains("checks") || !health["checks"].is_array()) return "";
  for (const auto& c : health["checks"]) {
    if (c.is_object() && !c.value("ok", true) && c.value("name", std::string()) != "mode") {
      return c.value("name", std::string("check")) + ": " + c.value("detail", std::string());
    }
  }
  return "";
}

}  // namespace

std::optional<NodeView> ParseStatus(std::string_view json, int64_t at_ms) {
  const auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  NodeView v;
  v.mode = j.value("mode", std::string("active"));
  v.at_ms = at_ms;
  if (j.contains("health") && j["health"].is_object()) {  // an administrator's view
    const auto& h = j["health"];
    if (!h.contains("lb") || !h["lb"].is_string()) return std::nullopt;
    v.lb = h["lb"].get<std::string>();
    v.ca_ping_ms = h.value("ca_ping_ms", int64_t{0});
    v.reason = FailingCheckIn(h);
    return v;
  }
  if (!j.contains("status") || !j["status"].is_string()) return std::nullopt;
  v.lb = j["status"].get<std::string>();
  if (j.contains("ca_ping_ms") && j["ca_ping_ms"].is_number_integer()) v.ca_ping_ms = j["ca_ping_ms"].get<int64_t>();
  return v;
}

std::string FirstFailingCheck(std::string_view health_json) {
  return FailingCheckIn(nlohmann::json::parse(health_json, nullptr, /*allow_exceptions=*/false));
}

int WeightPercent(int64_t ca_ping_ms) {
  constexpr int64_t kFullUpToMs = 50;
  constexpr int64_t kFloorFromMs = 1000;
  constexpr int kFloorPercent = 10;
  if (ca_ping_ms <= kFullUpToMs) return 100;
  if (ca_ping_ms >= kFloorFromMs) return kFloorPercent;
  const double span = static_cast<double>(kFloorFromMs - kFullUpToMs);
  const double f = static_cast<double>(ca_ping_ms - kFullUpToMs) / span;
  return std::max(kFloorPercent, static_cast<int>(100 - f * (100 - kFloorPercent)));
}

std::string AgentReply(const std::optional<NodeView>& last, int64_t now_ms, int64_t stale_ms) {
  if (!last.has_value() || now_ms - last->at_ms > stale_ms) return "down#node not answering\n";
  if (last->mode == "maint") return "maint\n";
  if (last->lb == "UP") return "up ready " + std::to_string(WeightPercent(last->ca_ping_ms)) + "%\n";
  if (last->lb == "DRAIN") return "up drain\n";
  return "down#" + Sanitize(last->reason.empty() ? "node not ready" : last->reason) + "\n";
}

}  // namespace adcsc::lbagent
