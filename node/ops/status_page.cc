// The status page's HTML; see status_page.h.
#include "node/ops/status_page.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "node/pki/encoding.h"
#include "node/pki/x509.h"

namespace adcsc::ops {
namespace {

constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kMinuteMs = 60'000;

// The whole stylesheet. The page allows it by its SHA-256 (StatusPageCsp), so it is one
// constant: any change changes the hash with it. Classes only: inline style attributes would
// need 'unsafe-inline'.
constexpr char kStyle[] = R"css(
:root{--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#fff}
header{padding:.8rem 1rem;background:#24292f;color:#fff}
header h1{margin:0;font-size:1.2rem}
header p{margin:.2rem 0 0;font-size:.85rem;color:#d0d7de}
main{padding:1rem;max-width:80rem;margin:0 auto}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(13rem,1fr));gap:.7rem}
.card{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;background:var(--bg)}
.card b{display:block;font-size:1.35rem}
.card span{color:var(--muted);font-size:.85rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:var(--bg);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td b,.nw{white-space:nowrap}
.ok{color:var(--ok);font-weight:600}
.warn{color:var(--warn);font-weight:600}
.bad{color:var(--bad);font-weight:600}
.muted{color:var(--muted)}
.detail{color:var(--muted);font-size:.85rem;word-break:break-word}
details{margin:.3rem 0}
summary{cursor:pointer}
ul.checks{margin:.3rem 0 .6rem;padding-left:1.2rem}
svg.bars{width:100%;height:3rem;display:block;background:var(--bg);border:1px solid var(--line)}
svg.bars rect.calls{fill:#8c959f}
svg.bars rect.failed{fill:var(--bad)}
footer{padding:1rem;color:var(--muted);font-size:.8rem;text-align:center}
@media (max-width:40rem){body{font-size:14px}main{padding:.6rem}th,td{padding:.3rem}}
)css";

std::string Esc(std::string_view s) { return HtmlEscape(s); }

std::string StateClass(std::string_view state) {
  if (state == "ok") return "ok";
  if (state == "warning") return "warn";
  return "bad";
}

std::string Duration(int64_t ms) {
  if (ms < 0) return "never";
  const int64_t s = ms / 1000;
  if (s < 60) return absl::StrCat(s, " s");
  if (s < 3600) return absl::StrCat(s / 60, " min ", s % 60, " s");
  if (s < 86400) return absl::StrCat(s / 3600, " h ", (s % 3600) / 60, " min");
  return absl::StrCat(s / 86400, " d ", (s % 86400) / 3600, " h");
}

std::string Time(int64_t unix_ms) { return pki::UtcDateTime(unix_ms / 1000); }

bool IsCaCheck(const StatusPageCheck& c) { return c.name.rfind("ca ", 0) == 0 || c.name == "ca"; }

// One node's state in a word, with its class.
std::pair<std::string, std::string> NodeState(const StatusPageNode& n) {
  if (!n.error.empty()) return {"unreachable", "bad"};
  if (!n.health_known) return {"up (health not reported: no [ops] section, or an older release)", "warn"};
  if (n.ready) return {"ready", "ok"};
  if (n.mode == "drain") return {"draining", "warn"};
  if (n.mode == "maint") return {"maintenance", "warn"};
  return {"NOT READY", "bad"};
}

void Cards(const StatusPageModel& m, std::string* out) {
  int ready = 0;
  for (const auto& n : m.nodes) ready += n.error.empty() && n.health_known && n.ready ? 1 : 0;
  // CAs: reachable from how many of the nodes that report them.
  std::map<std::string, std::pair<int, int>> cas;  // check name -> (ok, reported)
  int64_t worst_lag_ms = 0;
  uint64_t under = 0, refused = 0;
  int64_t soonest = 0;
  std::string soonest_what;
  for (const auto& n : m.nodes) {
    for (const auto& c : n.checks) {
      if (!IsCaCheck(c)) continue;
      auto& [ok, all] = cas[c.name];
      ok += c.ok ? 1 : 0;
      ++all;
    }
    for (const auto& p : n.peers) worst_lag_ms = std::max(worst_lag_ms, p.lag_ms);
    under += n.under_replicated_writes;
    refused += n.refused_writes;
    for (const auto& c : n.certificates) {
      if (soonest == 0 || c.not_after_ms < soonest) {
        soonest = c.not_after_ms;
        soonest_what = absl::StrCat(c.role, " on ", n.node_id);
      }
    }
  }
  absl::StrAppend(out, "<section class=\"cards\">");
  const size_t total = m.nodes.size();
  absl::StrAppend(out, "<div class=\"card\"><b class=\"",
                  ready == static_cast<int>(total) ? "ok"
                  : ready                          ? "warn"
                                                   : "bad",
                  "\">", ready, " of ", total, "</b><span>nodes ready</span></div>");
  if (cas.empty()) {
    absl::StrAppend(out, "<div class=\"card\"><b class=\"muted\">?</b><span>CA health not reported</span></div>");
  }
  for (const auto& [name, counts] : cas) {
    const auto [ok, all] = counts;
    absl::StrAppend(out, "<div class=\"card\"><b class=\"",
                    ok == all ? "ok"
                    : ok      ? "warn"
                              : "bad",
                    "\">", ok == 0 ? "unreachable" : absl::StrCat("reachable from ", ok, " of ", all), "</b><span>",
                    Esc(name.substr(name.rfind("ca ", 0) == 0 ? 3 : 0)), "</span></div>");
  }
  absl::StrAppend(out, "<div class=\"card\"><b class=\"",
                  worst_lag_ms > 60'000 ? "bad"
                  : worst_lag_ms > 0    ? "warn"
                                        : "ok",
                  "\">", worst_lag_ms == 0 ? "none" : Duration(worst_lag_ms),
                  "</b><span>replication lag (oldest unacknowledged write)</span></div>");
  absl::StrAppend(out, "<div class=\"card\"><b class=\"",
                  refused ? "bad"
                  : under ? "warn"
                          : "ok",
                  "\">", under, " / ", refused, "</b><span>writes under-replicated / refused since start</span></div>");
  if (soonest != 0) {
    const int64_t days = (soonest - m.now_ms) / kDayMs;
    const std::string cls = soonest <= m.now_ms      ? "bad"
                            : days < m.critical_days ? "bad"
                            : days < m.warn_days     ? "warn"
                                                     : "ok";
    absl::StrAppend(out, "<div class=\"card\"><b class=\"", cls, "\">",
                    soonest <= m.now_ms ? std::string("EXPIRED") : absl::StrCat(days, " days"),
                    "</b><span>until the first certificate expires (", Esc(soonest_what), ")</span></div>");
  }
  absl::StrAppend(out, "</section>");
}

void NodesTable(const StatusPageModel& m, std::string* out) {
  absl::StrAppend(out,
                  "<h2 id=\"nodes\">Nodes</h2><div class=\"scroll\"><table><thead><tr><th>node</th><th>state</th>"
                  "<th>load balancer</th><th>mode</th><th>CA</th><th>records</th><th>writes (quorum "
                  "/ under / refused)</th><th>version</th></tr></thead><tbody>");
  for (const auto& n : m.nodes) {
    const auto [word, cls] = NodeState(n);
    absl::StrAppend(out, "<tr><td><b>", Esc(n.node_id), "</b>",
                    n.node_id == m.served_by ? " <span class=\"muted\">(this page)</span>" : "",
                    "<div class=\"detail\">", Esc(n.address), "</div></td><td class=\"", cls, "\">", Esc(word));
    if (!n.error.empty()) absl::StrAppend(out, "<div class=\"detail\">", Esc(n.error), "</div>");
    if (n.cut_off) absl::StrAppend(out, "<div class=\"bad\">cut off from its peers (fault injection)</div>");
    if (n.ca_outage) absl::StrAppend(out, "<div class=\"bad\">cut off from its CA (fault injection)</div>");
    absl::StrAppend(out, "</td>");
    if (!n.error.empty()) {
      absl::StrAppend(out, "<td colspan=\"6\" class=\"muted\">no answer</td></tr>");
      continue;
    }
    absl::StrAppend(out, "<td>", Esc(n.lb.empty() ? "?" : n.lb), "</td><td>", Esc(n.mode.empty() ? "?" : n.mode),
                    "</td><td>");
    bool any_ca = false;
    for (const auto& c : n.checks) {
      if (!IsCaCheck(c)) continue;
      any_ca = true;
      absl::StrAppend(out, "<div><span class=\"", c.ok ? "ok" : "bad", "\">", c.ok ? "reachable" : "FAILING",
                      "</span> ", Esc(c.name.size() > 3 ? c.name.substr(3) : c.name));
      if (!c.ok) absl::StrAppend(out, "<div class=\"detail\">", Esc(c.detail), "</div>");
      absl::StrAppend(out, "</div>");
    }
    if (!any_ca) absl::StrAppend(out, "<span class=\"muted\">not reported</span>");
    absl::StrAppend(out, "</td><td class=\"num\">", n.records, "</td><td class=\"num\">", n.quorum_writes, " / ",
                    n.under_replicated_writes, " / ", n.refused_writes,
                    n.write_quorum ? absl::StrCat("<div class=\"detail\">quorum ", n.write_quorum, "</div>") : "",
                    "</td><td>", Esc(n.version), "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></div>");
}

void Checks(const StatusPageModel& m, std::string* out) {
  absl::StrAppend(out, "<h2 id=\"checks\">Health checks</h2>");
  for (const auto& n : m.nodes) {
    if (!n.error.empty() || !n.health_known) continue;
    int failing = 0;
    for (const auto& c : n.checks) failing += c.ok ? 0 : 1;
    absl::StrAppend(out, "<details", failing ? " open" : "", "><summary><b>", Esc(n.node_id), "</b>: ",
                    failing ? absl::StrCat("<span class=\"bad\">", failing, " failing</span>")
                            : std::string("<span class=\"ok\">all pass</span>"),
                    "</summary><ul class=\"checks\">");
    for (const auto& c : n.checks) {
      absl::StrAppend(out, "<li><span class=\"", c.ok ? "ok" : "bad", "\">", c.ok ? "ok" : "FAIL", "</span> ",
                      Esc(c.name), "<div class=\"detail\">", Esc(c.detail), "</div></li>");
    }
    absl::StrAppend(out, "</ul></details>");
  }
}

void Replication(const StatusPageModel& m, std::string* out) {
  bool any = false;
  for (const auto& n : m.nodes) any = any || !n.peers.empty();
  if (!any) return;
  absl::StrAppend(out,
                  "<h2 id=\"replication\">Replication</h2><div class=\"scroll\"><table><thead><tr><th>from</th>"
                  "<th>to peer</th><th>writes it lacks</th><th>oldest waits</th><th>last answer</th>"
                  "<th>protocol</th></tr></thead><tbody>");
  for (const auto& n : m.nodes) {
    for (const auto& p : n.peers) {
      const int64_t age = p.last_answer_ms == 0 ? -1 : std::max<int64_t>(0, m.now_ms - p.last_answer_ms);
      absl::StrAppend(out, "<tr><td class=\"nw\">", Esc(n.node_id), "</td><td class=\"nw\">", Esc(p.peer),
                      "</td><td class=\"num ", p.lag_mutations ? "warn" : "", "\">", p.lag_mutations,
                      "</td><td class=\"num ", p.lag_ms > 60'000 ? "bad" : "", "\">",
                      p.lag_ms ? Duration(p.lag_ms) : "-", "</td><td class=\"", age < 0 || age > 60'000 ? "bad" : "",
                      "\">", age < 0 ? std::string("never") : absl::StrCat(Duration(age), " ago"), "</td><td>",
                      p.protocol ? absl::StrCat(p.protocol) : "?",
                      p.refused.empty() ? "" : absl::StrCat("<div class=\"bad\">refused: ", Esc(p.refused), "</div>"),
                      "</td></tr>");
    }
  }
  absl::StrAppend(out, "</tbody></table></div>");
}

void Certificates(const StatusPageModel& m, std::string* out) {
  absl::StrAppend(out, "<h2 id=\"certificates\">Certificates</h2><p class=\"detail\">warning under ", m.warn_days,
                  " days, critical under ", m.critical_days, " days, as /health/ready judges them</p>");
  absl::StrAppend(out,
                  "<div class=\"scroll\"><table><thead><tr><th>node</th><th>role</th><th>subject</th>"
                  "<th>expires</th><th>days left</th><th>state</th></tr></thead><tbody>");
  for (const auto& n : m.nodes) {
    if (!n.error.empty()) continue;
    if (!n.certificates_known) {
      absl::StrAppend(out, "<tr><td>", Esc(n.node_id), "</td><td colspan=\"5\" class=\"muted\">not reported</td></tr>");
      continue;
    }
    std::vector<const StatusPageCertificate*> sorted;
    for (const auto& c : n.certificates) sorted.push_back(&c);
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const auto* a, const auto* b) { return a->not_after_ms < b->not_after_ms; });
    for (const auto* c : sorted) {
      absl::StrAppend(out, "<tr><td class=\"nw\">", Esc(n.node_id), "</td><td>", Esc(c->role), "</td><td>",
                      Esc(c->subject), "<div class=\"detail\">", Esc(c->source), "</div></td><td class=\"nw\">",
                      Time(c->not_after_ms), "</td><td class=\"num\">", (c->not_after_ms - m.now_ms) / kDayMs,
                      "</td><td class=\"", StateClass(c->state), "\">", Esc(c->state), "</td></tr>");
    }
  }
  absl::StrAppend(out, "</tbody></table></div>");
}

// Calls per minute over the last hour as bars (grey: all calls, red: failures).
void Bars(const StatusPageModel& m, const ActivitySnapshot& a, std::string* out) {
  std::map<int64_t, std::pair<uint64_t, uint64_t>> per_minute;  // minutes ago -> (calls, failures)
  uint64_t peak = 0;
  for (const auto& minute : a.minutes) {
    const int64_t ago = (m.now_ms - minute.start_unix_ms) / kMinuteMs;
    if (ago < 0 || ago >= 60) continue;
    auto& [calls, failed] = per_minute[ago];
    for (const auto& [key, count] : minute.counts) {
      calls += count;
      if (IsFailure(key.second, 0)) failed += count;
    }
    peak = std::max(peak, calls);
  }
  absl::StrAppend(out,
                  "<svg class=\"bars\" viewBox=\"0 0 600 60\" preserveAspectRatio=\"none\" role=\"img\" "
                  "aria-label=\"calls per minute, last hour\">");
  for (const auto& [ago, counts] : per_minute) {
    const auto [calls, failed] = counts;
    if (peak == 0) break;
    const double x = (59 - ago) * 10.0;
    const double h = 58.0 * static_cast<double>(calls) / static_cast<double>(peak);
    const double hf = 58.0 * static_cast<double>(failed) / static_cast<double>(peak);
    absl::StrAppend(out, "<rect class=\"calls\" x=\"", x, "\" y=\"", 60 - h, "\" width=\"9\" height=\"", h,
                    "\"><title>", calls, " calls, ", failed, " failed, ", ago, " min ago</title></rect>");
    if (failed) {
      absl::StrAppend(out, "<rect class=\"failed\" x=\"", x, "\" y=\"", 60 - hf, "\" width=\"9\" height=\"", hf,
                      "\"></rect>");
    }
  }
  absl::StrAppend(out, "</svg><div class=\"detail\">calls per minute, the last hour (red: failures); peak ", peak,
                  "</div>");
}

void Activity(const StatusPageModel& m, std::string* out) {
  absl::StrAppend(out, "<h2 id=\"activity\">Requests, the last hour</h2>");
  for (const auto& n : m.nodes) {
    if (!n.error.empty()) continue;
    absl::StrAppend(out, "<h3>", Esc(n.node_id), "</h3>");
    if (!n.activity_known) {
      absl::StrAppend(out, "<p class=\"muted\">not reported (an older release)</p>");
      continue;
    }
    std::map<std::pair<std::string, std::string>, uint64_t> totals;
    for (const auto& minute : n.activity.minutes) {
      for (const auto& [key, count] : minute.counts) totals[key] += count;
    }
    if (totals.empty()) {
      absl::StrAppend(out, "<p class=\"muted\">no API calls in the last hour</p>");
      continue;
    }
    Bars(m, n.activity, out);
    absl::StrAppend(out,
                    "<div class=\"scroll\"><table><thead><tr><th>endpoint</th><th>outcome</th><th>calls</th>"
                    "<th>per minute</th></tr></thead><tbody>");
    for (const auto& [key, count] : totals) {
      const bool failed = IsFailure(key.second, 0);
      absl::StrAppend(out, "<tr><td>", Esc(key.first), "</td><td class=\"", failed ? "bad" : "ok", "\">",
                      Esc(key.second), "</td><td class=\"num\">", count, "</td><td class=\"num\">",
                      absl::StrFormat("%.2f", static_cast<double>(count) / 60.0), "</td></tr>");
    }
    absl::StrAppend(out, "</tbody></table></div>");
  }
}

void Failures(const StatusPageModel& m, std::string* out) {
  struct Row {
    const ActivityFailure* f;
    const std::string* node;
  };
  std::vector<Row> rows;
  for (const auto& n : m.nodes) {
    for (const auto& f : n.activity.failures) rows.push_back({&f, &n.node_id});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.f->unix_ms > b.f->unix_ms; });
  if (rows.size() > ActivityLog::kMaxFailures) rows.resize(ActivityLog::kMaxFailures);
  absl::StrAppend(out, "<h2 id=\"failures\">Latest failures</h2>");
  if (rows.empty()) {
    absl::StrAppend(out, "<p class=\"muted\">none recorded since the nodes started</p>");
    return;
  }
  absl::StrAppend(out,
                  "<div class=\"scroll\"><table><thead><tr><th>time (UTC)</th><th>node</th><th>endpoint</th>"
                  "<th>HTTP</th><th>outcome</th><th>message</th></tr></thead><tbody>");
  for (const Row& r : rows) {
    absl::StrAppend(out, "<tr><td class=\"nw\">", Time(r.f->unix_ms), "</td><td class=\"nw\">", Esc(*r.node),
                    "</td><td>", Esc(r.f->endpoint), "</td><td class=\"num\">", r.f->http_status,
                    "</td><td class=\"bad\">", Esc(r.f->outcome), "</td><td class=\"detail\">", Esc(r.f->message),
                    "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></div>");
}

}  // namespace

std::string HtmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string StatusPageCsp() {
  const pki::Sha256Digest digest = pki::Sha256(std::string_view(kStyle));
  return absl::StrCat("default-src 'none'; style-src 'sha256-", pki::Base64Encode(digest),
                      "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
}

std::string RenderStatusPage(const StatusPageModel& m) {
  std::string out;
  out.reserve(32 * 1024);
  const std::string title =
      m.cluster_id.empty() ? absl::StrCat("adcsc ", m.served_by) : absl::StrCat("adcsc cluster ", m.cluster_id);
  absl::StrAppend(&out, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                  "<meta http-equiv=\"refresh\" content=\"", m.refresh_seconds, "\">", "<title>", Esc(title),
                  "</title><style>", kStyle, "</style></head><body><header><h1>", Esc(title), "</h1><p>served by ",
                  Esc(m.served_by), " (adcsc ", Esc(m.version), ") at ", Time(m.now_ms), " UTC; refreshes every ",
                  m.refresh_seconds, " s</p></header><main>");
  Cards(m, &out);
  NodesTable(m, &out);
  Checks(m, &out);
  Replication(m, &out);
  Certificates(m, &out);
  Activity(m, &out);
  Failures(m, &out);
  absl::StrAppend(&out, "</main><footer>The same data as JSON: <code>adcsc ctl status --json</code>, ",
                  "<code>/status</code>; metrics on <code>/metrics</code>. docs/operations.md, \"The status "
                  "page\".</footer></body></html>\n");
  return out;
}

}  // namespace adcsc::ops
