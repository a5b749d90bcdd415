#include "node/api/api_service.h"

#include <chrono>
#include <functional>
#include <map>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "node/api/api_codec.h"
#include "node/api/ca_request_search.h"
#include "node/api/crash_point.h"
#include "node/ca/hresult.h"
#include "node/pki/absl_view.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/x509.h"

namespace adcsc::node {
namespace {

using adcsc::ca::Disposition;
using adcsc::store::IsSettled;
using adcsc::store::RecordStatus;
using adcsc::store::RequestRecord;
using Json = nlohmann::json;

constexpr std::string_view kVersionPath = "/api/v1/version";
constexpr std::string_view kSubmitPath = "/api/v1/certificate/request";
constexpr std::string_view kRetrievePath = "/api/v1/certificate/retrieve";

ApiResponse Make(int status, std::string body, std::string outcome) {
  ApiResponse r;
  r.status = status;
  r.body = std::move(body);
  r.outcome = std::move(outcome);
  return r;
}

ApiResponse BadRequest(std::string_view message) {
  return Make(400, StatusOnlyJson("BAD_REQUEST", message), "bad_request");
}

RecordStatus RecordStatusFor(Disposition d) {
  switch (d) {
    case Disposition::kIssued:
    case Disposition::kIssuedOutOfBand:
      return adcsc::store::v1::RECORD_STATUS_ISSUED;
    case Disposition::kUnderSubmission:
      return adcsc::store::v1::RECORD_STATUS_PENDING;
    case Disposition::kDenied:
      return adcsc::store::v1::RECORD_STATUS_DENIED;
    case Disposition::kRevoked:
      return adcsc::store::v1::RECORD_STATUS_REVOKED;
    case Disposition::kIncomplete:
    case Disposition::kError:
      return adcsc::store::v1::RECORD_STATUS_FAILED;
  }
  return adcsc::store::v1::RECORD_STATUS_FAILED;
}

std::string OutcomeFor(Disposition d) {
  switch (d) {
    case Disposition::kIssued:
    case Disposition::kIssuedOutOfBand:
      return "issued";
    case Disposition::kUnderSubmission:
      return "pending";
    case Disposition::kDenied:
      return "denied";
    case Disposition::kRevoked:
      return "revoked";
    case Disposition::kIncomplete:
    case Disposition::kError:
      return "ca_error";
  }
  return "ca_error";
}

// The record of a CA's answer: `base` (what is known of the request besides) with the
// answer's ID, status, disposition, HRESULT, message and certificate.
RequestRecord RecordOfAnswer(const std::string& ca_config, const adcsc::ca::CaResponse& answer,
                             RequestRecord base = RequestRecord()) {
  base.set_ca_config(ca_config);
  base.set_request_id(answer.request_id);
  base.set_status(RecordStatusFor(answer.disposition));
  base.set_disposition(static_cast<uint32_t>(answer.disposition));
  base.set_hresult(answer.hresult);
  base.set_message(answer.message);
  base.set_certificate_der(std::string(answer.cert_der.begin(), answer.cert_der.end()));
  return base;
}

// What a submit knows of its request before the CA answers: the CSR digest, template and the
// identity that submits.
RequestRecord SubmitFacts(const std::string& csr_sha256, const std::string& template_name,
                          const std::string& requester) {
  RequestRecord r;
  r.set_csr_sha256(csr_sha256);
  r.set_template_name(template_name);
  r.set_requester(requester);
  return r;
}

// What a stored record says, as a CA response.
adcsc::ca::CaResponse ResponseFromRecord(const RequestRecord& rec) {
  adcsc::ca::CaResponse r;
  r.request_id = rec.request_id();
  r.disposition = static_cast<Disposition>(rec.disposition());
  r.hresult = rec.hresult();
  r.message = rec.message();
  r.cert_der.assign(rec.certificate_der().begin(), rec.certificate_der().end());
  return r;
}

// The CA could not be reached, did not answer in time, or this node could not get a Kerberos
// ticket for it: nothing reached the CA, another node may do better.
bool CaUnreachable(const absl::Status& s) {
  const std::optional<uint32_t> hr = adcsc::ca::HresultOf(s);
  if (hr.has_value()) {
    return *hr == adcsc::ca::hr::kRpcServerUnavailable || *hr == adcsc::ca::hr::kRpcCallFailed ||
           *hr == adcsc::ca::hr::kTimeout || *hr == adcsc::ca::hr::kSecPkgError;
  }
  return s.code() == absl::StatusCode::kUnavailable || s.code() == absl::StatusCode::kDeadlineExceeded;
}

// How a CA call failed, which decides the answer (docs/api.md, "Errors").
enum class CaFailureKind {
  kAnswered,        // the CA answered with an error: the original's INTERNAL_ERROR, HTTP 200
  kUnreachable,     // the CA could not be reached and nothing was sent: another node may do better
  kOutcomeUnknown,  // the request may have reached the CA: a retry finds it (dedupe, intents)
};

CaFailureKind KindOf(const absl::Status& s) {
  if (adcsc::ca::IsOutcomeUnknown(s)) return CaFailureKind::kOutcomeUnknown;
  if (CaUnreachable(s)) return CaFailureKind::kUnreachable;
  return CaFailureKind::kAnswered;
}

std::string_view OutcomeOf(CaFailureKind kind) {
  switch (kind) {
    case CaFailureKind::kAnswered:
      return "ca_error";
    case CaFailureKind::kUnreachable:
      return "ca_unavailable";
    case CaFailureKind::kOutcomeUnknown:
      return "ca_outcome_unknown";
  }
  return "ca_error";
}

// The calls the original connector named in its INTERNAL_ERROR messages. CCertRequest::Submit
// is in its documented answers; RetrievePending is the CCertRequest method that fetches a
// request by ID (inferred: no retrieve error of the original is public).
constexpr std::string_view kOriginalSubmitCall = "CCertRequest::Submit";
constexpr std::string_view kOriginalRetrieveCall = "CCertRequest::RetrievePending";

// The original connector's INTERNAL_ERROR message: "System.Runtime.InteropServices.COMException
// - CCertRequest::Submit: <text> 0x... (decimal SYMBOL)" (a plain hyphen, as in its raw
// answers), with the CA's own message after it when it gave one. Without an HRESULT (a
// backend error of ours), the status's message stands in for the text.
std::string OriginalCaMessage(std::string_view call, std::optional<uint32_t> hresult, std::string_view detail,
                              std::string_view ca_message = {}) {
  std::string msg = absl::StrCat("System.Runtime.InteropServices.COMException - ", pki::AbslView(call), ": ",
                                 hresult ? adcsc::ca::FormatHresult(*hresult) : std::string(detail));
  if (!ca_message.empty()) absl::StrAppend(&msg, " CA message: ", pki::AbslView(ca_message));
  return msg;
}

// A submit's error body: the request-status and request-id 0.
std::string SubmitErrorJson(std::string_view code, std::string_view text) { return WithRequestIdJson(code, text, 0); }
// A retrieve's error body: the request-status and "x509":null.
std::string RetrieveErrorJson(std::string_view code, std::string_view text) { return WithX509Json(code, text, ""); }

bool IsErrorDisposition(Disposition d) { return d == Disposition::kError || d == Disposition::kIncomplete; }

// "<call>: <text> 0x... (decimal SYMBOL)", naming the backend's call (CaBackend::CallName):
// the SERVICE_UNAVAILABLE message of api.ca_unreachable_status = 503, as before it existed.
std::string CaFailureMessage(const adcsc::ca::CaBackend& backend, uint32_t hresult, std::string_view ca_message) {
  std::string msg = absl::StrCat(backend.CallName(), ": ", adcsc::ca::FormatHresult(hresult));
  if (!ca_message.empty()) absl::StrAppend(&msg, " CA message: ", pki::AbslView(ca_message));
  return msg;
}

std::string StripQuery(std::string_view target) {
  auto q = target.find('?');
  return std::string(q == std::string_view::npos ? target : target.substr(0, q));
}

}  // namespace

// The one JSON line each API call logs: fields gathered along the way, then outcome, HTTP
// status and latency, at a level that follows the status.
struct CallLog {
  CallLog(EventLog* log, ApiObserver* observer, const char* endpoint, const ApiRequest& request)
      : log(log),
        observer(observer),
        endpoint(endpoint),
        started(std::chrono::steady_clock::now()),
        fields({{"endpoint", endpoint}, {"client_pin", request.auth->pin}, {"remote", std::string(request.remote)}}) {
    if (!request.proxy_pin.empty()) fields["proxy_pin"] = std::string(request.proxy_pin);
    if (!request.forwarded_by.empty()) fields["forwarded_by"] = std::string(request.forwarded_by);
  }

  ApiResponse Finish(ApiResponse r) {
    const double latency_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    fields["outcome"] = r.outcome;
    fields["http_status"] = r.status;
    fields["latency_ms"] = latency_ms;
    log->Log(level.value_or(r.status >= 500   ? LogLevel::kError
                            : r.status >= 400 ? LogLevel::kWarn
                                              : LogLevel::kInfo),
             "api", fields);
    if (observer != nullptr) {
      const double ca_ms = fields.contains("ca_ms") ? fields["ca_ms"].get<double>() : -1.0;
      observer->ObserveCall(endpoint, r.outcome, r.status, latency_ms, ca_ms);
      const auto error = fields.find("error");
      observer->ObserveResult(
          endpoint, r.outcome, r.status,
          error != fields.end() && error->is_string() ? error->get_ref<const std::string&>() : std::string_view());
    }
    return r;
  }

  EventLog* log;
  ApiObserver* observer;
  std::optional<LogLevel> level;  // set: the line's level whatever the status
  // A submit that may fail over: a CA it could not reach is not answered at once but left in
  // `unreachable` for ApiService::Submit (SubmitCaFailure).
  bool defer_unreachable = false;
  absl::Status unreachable;
  const char* endpoint;
  std::chrono::steady_clock::time_point started;
  Json fields;
};

ApiService::ApiService(const Config& config, adcsc::ca::CaBackend* backend, adcsc::store::RequestStore* store,
                       EventLog* log, const Clock* clock, ApiServiceLinks links)
    : config_(config),
      backend_(backend),
      store_(store),
      log_(log),
      clock_(clock),
      replication_(links.replication),
      peers_(links.peers),
      observer_(links.observer),
      leases_(clock, LeaseOptions(config, links)),
      allowlist_(std::make_shared<const std::vector<AllowedCa>>(config.ca.allow)),
      refusal_log_(config.api.refusal_log_interval) {}

std::shared_ptr<const std::vector<AllowedCa>> ApiService::Allowlist() const {
  std::lock_guard<std::mutex> lock(allowlist_mutex_);
  return allowlist_;
}

void ApiService::ReplaceAllowlist(std::vector<AllowedCa> allow) {
  auto fresh = std::make_shared<const std::vector<AllowedCa>>(std::move(allow));
  std::lock_guard<std::mutex> lock(allowlist_mutex_);
  allowlist_ = std::move(fresh);
}

SubmitLeases::Options ApiService::LeaseOptions(const Config& config, const ApiServiceLinks& links) {
  SubmitLeases::Options o;
  o.lease = config.ca.submit_lease;
  // A restarted node forgot what it granted its peers: in a cluster, it grants nothing until
  // every lease it may have granted has lapsed (as far as its stamp file tells).
  if (links.peers != nullptr && !config.cluster.peers.empty()) {
    o.grace = config.ca.submit_lease;
    if (!config.data_dir.empty()) o.grant_stamp = config.data_dir / "lease-grants.stamp";
  }
  return o;
}

ApiResponse ApiService::Handle(const ApiRequest& request) {
  ApiResponse response = Route(request);
  response.node = config_.node_id;
  return response;
}

ApiResponse ApiService::Route(const ApiRequest& request) {
  const std::string path = StripQuery(request.target);
  if (request.auth == nullptr || !request.auth->ok) {
    std::string reason = request.auth ? request.auth->reason : "client certificate not checked";
    const int substatus = request.auth ? request.auth->iis_substatus : 0;
    const uint32_t win32 = request.auth ? request.auth->win32_status : 0;
    // Anyone can cause this at will: one line per caller address per interval, with the count
    // of refusals left out, and the path they chose cut short.
    uint64_t suppressed = 0;
    if (refusal_log_.ShouldLog(request.remote, &suppressed)) {
      log_->Warn("client_refused", {{"path", UntrustedField(path)},
                                    {"remote", std::string(request.remote)},
                                    {"client_pin", request.auth ? request.auth->pin : ""},
                                    {"reason", reason},
                                    {"iis_substatus", substatus},
                                    {"win32_status", win32},
                                    {"suppressed", suppressed}});
    }
    ApiResponse r = Make(403, StatusOnlyJson("FORBIDDEN", reason), "forbidden");
    r.iis_substatus = substatus;
    r.win32_status = win32;
    r.close_connection = true;
    return r;
  }
  struct Route {
    std::string_view path;
    std::string_view method;
  };
  static constexpr Route kRoutes[] = {{kVersionPath, "GET"}, {kSubmitPath, "POST"}, {kRetrievePath, "POST"}};
  for (const Route& route : kRoutes) {
    if (path != route.path) continue;
    if (request.method != route.method) {
      ApiResponse r = Make(405,
                           StatusOnlyJson("METHOD_NOT_ALLOWED", absl::StrCat("use ", pki::AbslView(route.method),
                                                                             " for ", pki::AbslView(route.path))),
                           "method_not_allowed");
      r.allow = std::string(route.method);
      NoteUnserved(request, path, r.status);
      return r;
    }
    if (route.path == kVersionPath) return Version();
    if (route.path == kSubmitPath) return Submit(request);
    return Retrieve(request);
  }
  NoteUnserved(request, path, 404);
  return Make(404, StatusOnlyJson("NOT_FOUND", absl::StrCat("no such endpoint: ", path)), "not_found");
}

void ApiService::NoteUnserved(const ApiRequest& request, const std::string& path, int status) {
  if (!UnservedCalls::Covers(path)) return;  // a scanner's /wp-login.php is not a Jamf call
  const UnservedNote note = unserved_.Note(request.method, request.target, request.header_names, request.body);
  if (observer_ != nullptr) observer_->ObserveUnserved(note.shape.method, note.path_label);
  if (!note.first) return;
  const UnservedShape& shape = note.shape;
  nlohmann::json fields = {{"method", shape.method},
                           {"path", shape.path},
                           {"status", status},
                           {"query_keys", shape.query_keys},
                           {"header_names", shape.header_names},
                           {"body_kind", shape.body_kind},
                           {"body_bytes", shape.body_bytes},
                           {"body_keys", shape.body_keys},
                           {"remote", std::string(request.remote)},
                           {"client_pin", request.auth ? request.auth->pin : ""}};
  if (shape.body_keys_truncated) fields["body_keys_truncated"] = true;
  if (note.table_full) {
    fields["note"] = absl::StrCat("more than ", UnservedCalls::kMaxShapes,
                                  " kinds of unserved call: later new ones are counted under path \"other\" only");
  }
  // Names only, never values: see docs/api.md, "Calls adcsc does not serve".
  log_->Warn("unserved_api_call", std::move(fields));
}

absl::Status ApiService::Record(const adcsc::store::RequestRecord& record, const adcsc::store::SubmitKey* settles) {
  auto put = store_->Put(record, settles);
  if (!put.ok()) return put.status();
  if (replication_ == nullptr || !put->changed) return absl::OkStatus();
  return replication_->Replicate(*put);
}

absl::Status ApiService::RecordAdminAction(const adcsc::store::RequestRecord& record) {
  auto put = store_->PutAdminOutcome(record);
  if (!put.ok()) return put.status();
  if (replication_ == nullptr || !put->changed) return absl::OkStatus();
  return replication_->Replicate(*put);
}

ApiResponse ApiService::Version() {
  nlohmann::ordered_json j;
  j["name"] = "adcsc";
  j["version"] = ADCSC_VERSION;
  j["api"] = "v1";
  j["node"] = config_.node_id;
  return Make(200, j.dump(), "version");
}

absl::StatusOr<ApiService::CheckedSubmit> ApiService::CheckSubmit(const ApiRequest& request, Json* fields) const {
  auto body = ParseSubmitBody(request.body);
  if (!body.ok()) {
    (*fields)["error"] = std::string(body.status().message());
    return body.status();
  }
  CheckedSubmit s;
  s.ca_config = adcsc::store::CaConfigKey(body->dc, body->ca);
  s.template_name = body->template_name;
  s.target = {body->dc, body->ca};
  (*fields)["ca_config"] = s.ca_config;
  (*fields)["template"] = s.template_name;
  s.allowlist = Allowlist();
  const AllowedCa* allowed = FindAllowedCa(*s.allowlist, body->dc, body->ca);
  if (allowed == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA config \"", body->dc, "\\", body->ca,
                     "\" is not allowed on this connector (check ca.allow in the node config)"));
  }
  if (!allowed->templates.empty() && std::find(allowed->templates.begin(), allowed->templates.end(),
                                               body->template_name) == allowed->templates.end()) {
    return absl::InvalidArgumentError(absl::StrCat("template \"", body->template_name, "\" is not allowed for CA \"",
                                                   body->dc, "\\", body->ca, "\" (check ca.allow.templates)"));
  }
  auto der = adcsc::pki::Base64Decode(body->pkcs10);
  if (!der.ok()) return absl::InvalidArgumentError(absl::StrCat("pkcs10: ", std::string(der.status().message())));
  auto csr = adcsc::pki::CheckCsr(*der);
  if (!csr.ok()) return absl::InvalidArgumentError(absl::StrCat("pkcs10: ", std::string(csr.status().message())));
  s.allowed = allowed;
  s.csr = std::move(*csr);
  const adcsc::pki::Sha256Digest digest = adcsc::pki::Sha256(adcsc::pki::ByteView(*der));
  s.csr_sha256.assign(digest.begin(), digest.end());
  s.csr_der = std::move(*der);
  return s;
}

std::optional<ApiResponse> ApiService::DenyOutsidePolicy(const CheckedSubmit& s, CallLog* call) {
  const adcsc::pki::PolicyDecision decision = adcsc::pki::EvaluateCsrPolicy(s.allowed->policy, s.allowed->key, s.csr);
  if (decision.allowed) return std::nullopt;
  call->fields["request_id"] = 0;
  call->fields["policy_rule"] = decision.rule;
  call->fields["policy_reason"] = decision.reason;  // CSR text in it is quoted and cut short
  call->fields["subject"] = s.csr.subject.substr(0, adcsc::pki::kMaxQuotedChars);
  call->level = LogLevel::kWarn;
  if (observer_ != nullptr) observer_->ObservePolicyDenial(decision.rule);
  // As the CA would deny it, so Jamf Pro reports it the same way; the message says why.
  return call->Finish(Make(200,
                           WithRequestIdJson(DispositionStatus(Disposition::kDenied),
                                             absl::StrCat(pki::AbslView(DispositionMessage(Disposition::kDenied)),
                                                          " by the connector's signing policy: ", decision.reason),
                                             0),
                           "policy_denied"));
}

namespace {
// An earlier request that a retried submit of the same CSR can answer with: issued, pending
// or revoked. Not a failure, and not a denial: the CA's reasons to deny (a missing
// permission, a template setting) get fixed, and a retry must then reach the CA again rather
// than hear the old "denied" for the rest of the dedupe window.
bool Reusable(const RequestRecord& r) {
  return r.request_id() != 0 && r.status() != adcsc::store::v1::RECORD_STATUS_FAILED &&
         r.status() != adcsc::store::v1::RECORD_STATUS_DENIED;
}
bool Reusable(const std::optional<RequestRecord>& r) { return r.has_value() && Reusable(*r); }
}  // namespace

absl::StatusOr<std::optional<RequestRecord>> ApiService::FindEarlierSubmit(const CheckedSubmit& s,
                                                                           int64_t not_before_ms, bool ask_peers,
                                                                           Json* fields) {
  auto earlier = store_->FindByDedupeKey(s.ca_config, s.template_name, s.csr_sha256, not_before_ms);
  if (!earlier.ok()) return earlier.status();
  if (Reusable(*earlier)) {
    (*fields)["deduplicated"] = "store";
    return earlier;
  }
  if (ask_peers && peers_ != nullptr) {
    // The earlier submit may have gone to another node whose write has not reached us yet.
    if (auto theirs = peers_->LookupByDedupeKey(s.ca_config, s.template_name, s.csr_sha256, not_before_ms);
        Reusable(theirs) && theirs->csr_sha256() == s.csr_sha256) {
      (*fields)["deduplicated"] = "peer";
      return theirs;
    }
  }
  return std::optional<RequestRecord>();
}

// A submit: check the request, answer a retried CSR with its earlier request (here, at a peer,
// or found at the CA after a node died mid-way), else submit to the CA, record the answer
// durably (and on a write quorum in a cluster), then answer.
ApiResponse ApiService::Submit(const ApiRequest& request) {
  CallLog call(log_, observer_, "request", request);
  auto checked = CheckSubmit(request, &call.fields);
  if (!checked.ok()) return call.Finish(BadRequest(std::string(checked.status().message())));
  const CheckedSubmit& s = *checked;
  // The signing policy first: a CSR outside it reaches no dedupe, lease, intent or CA.
  if (std::optional<ApiResponse> denied = DenyOutsidePolicy(s, &call)) return *denied;
  // In a cluster, a CA this node cannot reach is another node's to try (one hop).
  call.defer_unreachable = request.forwarded_by.empty() && peers_ != nullptr && ClusterSize() > 1;
  ApiResponse answer = SubmitChecked(s, &call);
  if (call.unreachable.ok()) return answer;
  return FailSubmitOver(request, s, call.unreachable, &call);
}

ApiResponse ApiService::SubmitForPeer(const std::string& peer_id, std::string_view body, std::string_view client_pin,
                                      std::string_view remote) {
  ClientAuthResult auth;  // the peer checked the client's certificate
  auth.ok = true;
  auth.pin = std::string(client_pin);
  ApiRequest request;
  request.method = "POST";
  request.target = kSubmitPath;
  request.body = body;
  request.remote = remote;
  request.auth = &auth;
  request.forwarded_by = peer_id;
  return Handle(request);
}

ApiResponse ApiService::FailSubmitOver(const ApiRequest& request, const CheckedSubmit& s,
                                       const absl::Status& unreachable, CallLog* call) {
  Json& fields = call->fields;
  call->defer_unreachable = false;
  fields["ca_error_here"] = std::string(unreachable.message());
  SubmitToForward forward;
  forward.ca_config = s.ca_config;
  forward.body = std::string(request.body);
  forward.client_pin = request.auth->pin;
  forward.remote = std::string(request.remote);
  auto theirs = peers_->ForwardSubmit(forward);
  if (theirs.ok()) {
    fields["source"] = "forwarded";
    fields["forwarded_to"] = theirs->node_id;
    const Json answer = Json::parse(theirs->body, nullptr, /*allow_exceptions=*/false);
    if (answer.is_object() && answer.contains("request-id")) fields["request_id"] = answer["request-id"];
    ApiResponse r = Make(theirs->http_status, std::move(theirs->body), std::move(theirs->outcome));
    if (r.status == 200 && absl::StartsWith(r.outcome, "ca_")) call->level = LogLevel::kError;
    return call->Finish(std::move(r));
  }
  fields["forward_error"] = std::string(theirs.status().message());
  if (adcsc::ca::IsOutcomeUnknown(theirs.status())) {
    // A peer took the submit and did not answer in time: it may still reach the CA. The
    // client's retry finds its request (dedupe, or the lapsed lease's search).
    return call->Finish(CaFailureAnswer(adcsc::ca::MarkOutcomeUnknown(adcsc::ca::CaError(
                                            adcsc::ca::hr::kTimeout, std::string(theirs.status().message()))),
                                        kOriginalSubmitCall, SubmitErrorJson, "", call));
  }
  return SubmitCaFailure(unreachable, call);
}

ApiResponse ApiService::SubmitChecked(const CheckedSubmit& s, CallLog* callp) {
  CallLog& call = *callp;
  Json& fields = call.fields;
  auto finish = [&](ApiResponse r) { return call.Finish(std::move(r)); };
  auto submit_error = SubmitErrorJson;
  auto ca_failure = [&](const absl::Status& status) { return SubmitCaFailure(status, &call); };
  auto answer_with = [&](const RequestRecord& rec) { return AnswerWithRecord(rec, &call); };

  const int64_t window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(config_.ca.dedupe_window).count();
  const int64_t not_before_ms = clock_->NowUnixMillis() - window_ms;
  auto store_failure = [&](const absl::Status& status, const char* what) {
    fields["error"] = std::string(status.message());
    return finish(Make(500, submit_error("INTERNAL_ERROR", absl::StrCat(what, ": ", std::string(status.message()))),
                       "store_error"));
  };
  if (window_ms == 0) return SubmitOnce(s, nullptr, &call);  // dedupe is off: every submit goes to the CA
  // A retry of a CSR this node already holds: answer from the store, no lease needed.
  auto earlier = FindEarlierSubmit(s, not_before_ms, /*ask_peers=*/false, &fields);
  if (!earlier.ok()) return store_failure(earlier.status(), "request store unavailable");
  if (earlier->has_value()) return answer_with(**earlier);

  // One submitter per CSR in the cluster: take the lease (or wait for the node that has it).
  Lease lease = AcquireLease(s, &fields);
  if (lease.found.has_value()) return answer_with(*lease.found);
  if (!lease.error.ok()) {
    if (adcsc::ca::HresultOf(lease.error).has_value()) return ca_failure(lease.error);
    fields["error"] = std::string(lease.error.message());
    return finish(Make(503, submit_error("SERVICE_UNAVAILABLE", std::string(lease.error.message())), "lease_busy"));
  }
  // Released however this submit ends; `settled` turns false when the CA's answer was lost.
  struct Release {
    ApiService* self;
    const SubmitIntent& claim;
    bool settled = true;
    ~Release() { self->ReleaseLease(claim, settled); }
  } release{this, *lease.claim};

  // Look again now that this node holds the lease: a rival may have recorded its answer
  // just before letting go.
  earlier = FindEarlierSubmit(s, not_before_ms, /*ask_peers=*/true, &fields);
  if (!earlier.ok()) return store_failure(earlier.status(), "request store unavailable");
  if (earlier->has_value()) return answer_with(**earlier);

  // An earlier attempt whose outcome is unknown (this node's, found as an intent in its store
  // after a crash or a lost answer, or a claim that lapsed at a peer): its request may be at
  // the CA. Look there before submitting; submit only if it is not.
  auto ours = store_->FindSubmitIntent(s.key());
  if (!ours.ok()) return store_failure(ours.status(), "request store unavailable");
  std::optional<uint32_t> search_after;
  std::string search_requester = config_.ca.identity;  // who would have submitted it
  if (ours->has_value()) search_after = (*ours)->after_request_id;
  if (lease.lapsed.has_value() && (!search_after || lease.lapsed->after_request_id < *search_after)) {
    search_after = lease.lapsed->after_request_id;
    search_requester = lease.lapsed->ca_identity;
    fields["lapsed_claim_of"] = lease.lapsed->node_id;
  }
  if (search_after.has_value()) {
    auto found = FindAtCa(s, *search_after, search_requester, &fields);
    if (!found.ok()) return ca_failure(found.status());
    if (found->has_value()) {
      fields["deduplicated"] = "ca-search";
      return answer_with(**found);
    }
  }
  adcsc::store::SubmitIntentRow intent;
  intent.key = s.key();
  intent.after_request_id = search_after.value_or(lease.claim->after_request_id);
  intent.requester = config_.ca.identity;
  intent.csr_der.assign(s.csr_der.begin(), s.csr_der.end());
  return SubmitOnce(s, &intent, &call, &release.settled);
}

ApiResponse ApiService::SubmitOnce(const CheckedSubmit& s, const adcsc::store::SubmitIntentRow* intent, CallLog* call,
                                   bool* settled) {
  Json& fields = call->fields;
  auto finish = [&](ApiResponse r) { return call->Finish(std::move(r)); };
  auto submit_error = SubmitErrorJson;
  auto ca_failure = [&](const absl::Status& status) { return SubmitCaFailure(status, call); };
  const adcsc::store::SubmitKey key = s.key();
  // Durable before the CA call: if this node dies from here on, the intent says to look
  // at the CA before submitting again. No intent, no CA call.
  if (intent != nullptr) {
    CrashPoint("before-intent");
    if (absl::Status durable = store_->RecordSubmitIntent(*intent); !durable.ok()) {
      fields["error"] = std::string(durable.message());
      return finish(Make(
          500,
          submit_error("INTERNAL_ERROR", absl::StrCat("nothing was sent to the CA: ", std::string(durable.message()))),
          "store_error"));
    }
    CrashPoint("after-intent");
  }

  adcsc::ca::SubmitRequest sub;
  sub.target = s.target;
  sub.caller = {config_.ca.identity};
  sub.csr_der = s.csr_der;
  sub.template_name = s.template_name;
  const auto ca_started = std::chrono::steady_clock::now();
  auto answer = backend_->Submit(sub);
  fields["ca_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ca_started).count();
  if (answer.ok() || KindOf(answer.status()) == CaFailureKind::kUnreachable) {
    ca_reachability_.Note(s.ca_config, answer.ok());
  }
  CrashPoint("after-ca");
  if (!answer.ok()) {
    if (intent == nullptr) return ca_failure(answer.status());
    if (!adcsc::ca::IsOutcomeUnknown(answer.status())) {
      // The CA did not take it: nothing to look for later.
      store_->DropSubmitIntent(key).IgnoreError();
      return ca_failure(answer.status());
    }
    // The request may be at the CA: look for it now rather than leave the client guessing,
    // once the CA shows it answers this node at all (a wrong password gets an unsigned
    // "access denied" fault for every call, and a search would read nothing but those).
    fields["outcome_unknown"] = std::string(answer.status().message());
    const absl::Status reachable = backend_->Ping(s.target, {config_.ca.identity});
    absl::StatusOr<std::optional<RequestRecord>> found =
        reachable.ok() ? FindAtCa(s, intent->after_request_id, config_.ca.identity, &fields)
                       : absl::StatusOr<std::optional<RequestRecord>>(reachable);
    if (found.ok() && found->has_value()) {
      fields["deduplicated"] = "ca-search";
      return AnswerWithRecord(**found, call);
    }
    if (settled != nullptr) *settled = false;  // peers keep the claim as lapsed: the next claimant searches
    if (!found.ok()) {
      // The CA refuses this node's reads too (a wrong password gets an unsigned "access denied"
      // fault for every call): its error is the answer, as the original connector gave it. The
      // intent stays, so a retry looks again before it submits.
      fields["search_error"] = std::string(found.status().message());
      return ca_failure(answer.status());
    }
    fields["error"] = std::string(answer.status().message());
    if (config_.api.ca_unreachable_status == 200) {
      // As the original answered a CA call that failed; the client's retry looks at the CA
      // again before it submits (the intent stays), so the retry is deduplicated.
      return finish(CaFailureAnswer(answer.status(), kOriginalSubmitCall, SubmitErrorJson, "", call));
    }
    return finish(Make(
        503,
        submit_error("SERVICE_UNAVAILABLE",
                     absl::StrCat("the CA's answer to this request was lost (", std::string(answer.status().message()),
                                  ") and the request is not among the CA's requests yet; retry: the connector looks at "
                                  "the CA again before it submits")),
        "ca_outcome_unknown"));
  }
  fields["request_id"] = answer->request_id;
  if (answer->hresult != 0) fields["hresult"] = absl::StrCat("0x", absl::Hex(answer->hresult, absl::kZeroPad8));
  if (!answer->message.empty()) fields["ca_message"] = answer->message;

  if (answer->request_id != 0) {
    const RequestRecord rec =
        RecordOfAnswer(s.ca_config, *answer, SubmitFacts(s.csr_sha256, s.template_name, config_.ca.identity));
    if (auto put = Record(rec, intent != nullptr ? &key : nullptr); !put.ok()) {
      fields["error"] = std::string(put.message());
      return finish(Make(500,
                         WithRequestIdJson("INTERNAL_ERROR",
                                           absl::StrCat("the CA accepted request ", answer->request_id,
                                                        " but it could not be recorded: ", std::string(put.message())),
                                           answer->request_id),
                         "store_error"));
    }
    CrashPoint("after-record");
  } else if (intent != nullptr) {
    store_->DropSubmitIntent(key).IgnoreError();  // refused without a request: nothing at the CA
  }
  if (IsErrorDisposition(answer->disposition)) {
    // The CA answered with an error: the original's INTERNAL_ERROR, with HTTP 200.
    call->level = LogLevel::kError;
    return finish(Make(200,
                       WithRequestIdJson("INTERNAL_ERROR",
                                         OriginalCaMessage(kOriginalSubmitCall, answer->hresult, "", answer->message),
                                         answer->request_id),
                       "ca_error"));
  }
  return finish(Make(200,
                     WithRequestIdJson(DispositionStatus(answer->disposition), DispositionMessage(answer->disposition),
                                       answer->request_id),
                     OutcomeFor(answer->disposition)));
}

ApiResponse ApiService::SubmitCaFailure(const absl::Status& status, CallLog* call) {
  if (call->defer_unreachable && KindOf(status) == CaFailureKind::kUnreachable) {
    call->unreachable = status;  // Submit fails it over once the lease is released
    ApiResponse deferred;
    deferred.outcome = "ca_unavailable";
    return deferred;
  }
  return call->Finish(CaFailureAnswer(status, kOriginalSubmitCall, SubmitErrorJson, "", call));
}

ApiResponse ApiService::CaFailureAnswer(const absl::Status& status, std::string_view original_call,
                                        std::string (*body)(std::string_view, std::string_view), std::string_view extra,
                                        CallLog* call) const {
  const CaFailureKind kind = KindOf(status);
  const std::optional<uint32_t> hr = adcsc::ca::HresultOf(status);
  call->fields["error"] = std::string(status.message());
  call->fields["ca_call"] = backend_->CallName();
  if (hr) call->fields["hresult"] = absl::StrCat("0x", absl::Hex(*hr, absl::kZeroPad8));
  call->level = LogLevel::kError;
  const std::string outcome(OutcomeOf(kind));
  // After the HRESULT: why this host could not authenticate to the CA (a Kerberos problem
  // reads "The RPC server is unavailable" otherwise), then the caller's addition.
  std::string after;
  if (hr) {
    if (std::optional<std::string> why = adcsc::ca::AuthFailureOf(status)) after = *std::move(why);
  }
  if (!extra.empty()) absl::StrAppend(&after, after.empty() ? "" : "; ", pki::AbslView(extra));
  if (kind != CaFailureKind::kAnswered && config_.api.ca_unreachable_status == 503) {
    // For a load balancer's L7 retry (api.ca_unreachable_status = 503): the answer as it was
    // before the original's form was restored.
    std::string message = hr ? CaFailureMessage(*backend_, *hr, "") : std::string(status.message());
    if (!after.empty()) absl::StrAppend(&message, "; ", after);
    return Make(503, body("SERVICE_UNAVAILABLE", message), outcome);
  }
  std::string message = OriginalCaMessage(original_call, hr, std::string(status.message()));
  if (!after.empty()) absl::StrAppend(&message, "; ", after);
  return Make(200, body("INTERNAL_ERROR", message), outcome);
}

int ApiService::ResolveOpenIntents() {
  // Enough for any crash: a node holds at most one intent per submit in flight.
  constexpr size_t kMaxIntentsPerRun = 10'000;
  auto open = store_->OpenSubmitIntents(kMaxIntentsPerRun);
  if (!open.ok()) {
    log_->Log(LogLevel::kError, "open_intents", {{"error", std::string(open.status().message())}});
    return 0;
  }
  const int64_t too_old_ms =
      clock_->NowUnixMillis() - std::chrono::duration_cast<std::chrono::milliseconds>(config_.ca.dedupe_window).count();
  int settled = 0;
  for (const adcsc::store::SubmitIntentRow& intent : *open) {
    Json fields = {{"ca_config", intent.key.ca_config},
                   {"template", intent.key.template_name},
                   {"after_request_id", intent.after_request_id},
                   {"attempts", intent.attempts}};
    const size_t sep = intent.key.ca_config.find('\\');
    CheckedSubmit s;
    s.ca_config = intent.key.ca_config;
    s.template_name = intent.key.template_name;
    s.csr_sha256 = intent.key.csr_sha256;
    s.csr_der.assign(intent.csr_der.begin(), intent.csr_der.end());
    if (sep != std::string::npos)
      s.target = {intent.key.ca_config.substr(0, sep), intent.key.ca_config.substr(sep + 1)};
    if (intent.created_ms < too_old_ms) {
      // Past the dedupe window a retry is a new request anyway.
      store_->DropSubmitIntent(intent.key).IgnoreError();
      fields["outcome"] = "expired";
      log_->Log(LogLevel::kWarn, "open_intent", fields);
      continue;
    }
    if (sep == std::string::npos || FindAllowedCa(*Allowlist(), s.target.dc, s.target.ca) == nullptr) {
      fields["outcome"] = "ca_not_allowed";
      log_->Log(LogLevel::kWarn, "open_intent", fields);
      continue;
    }
    auto found = FindAtCa(s, intent.after_request_id, intent.requester, &fields);
    if (!found.ok()) {
      fields["outcome"] = "search_failed";
      fields["error"] = std::string(found.status().message());
      log_->Log(LogLevel::kError, "open_intent", fields);
    } else if (found->has_value()) {
      ++settled;
      fields["outcome"] = "found_at_ca";
      fields["request_id"] = (*found)->request_id();
      log_->Log(LogLevel::kInfo, "open_intent", fields);
    } else {
      // Left open: the client's retry searches again, then submits once.
      fields["outcome"] = "not_at_ca";
      log_->Log(LogLevel::kWarn, "open_intent", fields);
    }
  }
  return settled;
}

uint64_t ApiService::NextClaimId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0) id = rng();
  return id;
}

int ApiService::ClusterSize() const {
  return 1 + (peers_ != nullptr ? static_cast<int>(config_.cluster.peers.size()) : 0);
}

ApiService::Lease ApiService::AcquireLease(const CheckedSubmit& s, Json* fields) {
  // How long a claim that lost waits before it claims again: briefly when it is the earlier
  // request (the rival should let go for it), longer when the rival is (it should win).
  constexpr int64_t kReclaimSoonMs = 10;
  constexpr int64_t kReclaimLaterMs = 100;
  const int64_t started_ms = clock_->NowMonotonicMillis();
  const int64_t deadline_ms = started_ms + config_.ca.in_flight_wait.count();
  const int cluster_size = ClusterSize();
  // One per request: the older request goes first. Only an order (ties and a skewed clock
  // cost a retry pause, never a second winner: a lease needs a majority of grants).
  const int64_t ballot_ms = leases_.BallotMs();
  std::unique_ptr<CaRequestSearch> search;  // for a rival that died after the CA took its request
  std::map<std::pair<std::string, uint64_t>, int64_t> silent_since;  // rival claim -> when its node fell silent
  auto failed = [](absl::Status error) { return Lease{std::nullopt, std::nullopt, std::nullopt, std::move(error)}; };
  for (int round = 1;; ++round) {
    SubmitIntent claim;
    claim.ca_config = s.ca_config;
    claim.template_name = s.template_name;
    claim.csr_sha256 = s.csr_sha256;
    auto highest = store_->MaxRequestId(s.ca_config);
    claim.after_request_id = highest.ok() ? *highest : 0;
    claim.ca_identity = config_.ca.identity;
    claim.node_id = config_.node_id;
    claim.claim_id = NextClaimId();
    claim.ballot_ms = ballot_ms;

    std::vector<LeaseAnswer> answers{leases_.Claim(claim, config_.node_id)};
    if (peers_ != nullptr && cluster_size > 1) {
      // A majority ends the wait; a peer that is down must not cost every submit a timeout.
      const size_t majority = static_cast<size_t>(cluster_size / 2 + 1);
      const size_t granted_here = answers.front().grant == LeaseGrant::kGranted ? 1 : 0;
      std::vector<LeaseAnswer> theirs = peers_->ClaimSubmit(claim, majority - granted_here);
      answers.insert(answers.end(), theirs.begin(), theirs.end());
    }
    const LeaseTally tally = TallyLease(answers, cluster_size);
    (*fields)["lease_rounds"] = round;
    if (tally.outcome == LeaseOutcome::kWon) return Lease{claim, tally.lapsed, std::nullopt, absl::OkStatus()};
    if (tally.outcome == LeaseOutcome::kNoQuorum && config_.cluster.on_quorum_loss != "refuse") {
      // Too few nodes answered to decide; as with writes under policy "serve", go on (and say so).
      (*fields)["lease"] = absl::StrCat("no majority: ", tally.grants, " of ", cluster_size, " granted");
      return Lease{claim, tally.lapsed, std::nullopt, absl::OkStatus()};
    }
    ReleaseLease(claim, /*settled=*/true);  // not ours: let the rival (or a later claim) have it
    const int64_t now_ms = clock_->NowMonotonicMillis();
    if (tally.outcome == LeaseOutcome::kNoQuorum) {
      if (now_ms >= deadline_ms) {
        return failed(absl::UnavailableError(
            absl::StrCat("only ", tally.grants, " of the ", cluster_size,
                         " nodes could agree that this node submits this CSR (a majority is needed and "
                         "cluster.on_quorum_loss is \"refuse\"); check the links between the nodes, then retry")));
      }
      leases_.WaitForChange(std::chrono::milliseconds(std::min(kReclaimLaterMs, deadline_ms - now_ms)));
      continue;
    }
    // Another claim holds it. If the process that made it is gone (its node answered as a
    // newer process, or has not answered for a while), its lease lapses now, everywhere, and
    // the next round takes the CSR over, searching the CA from that claim first. Otherwise
    // look for its answer meanwhile: in the store, and at the CA (its node may have died
    // after the CA took its request).
    const SubmitIntent& rival = *tally.wait_for;
    (*fields)["in_flight_on"] = rival.node_id;
    if (std::string why = RivalGone(rival, answers, &silent_since); !why.empty()) {
      (*fields)["lapsed_holder"] = absl::StrCat(rival.node_id, ": ", why);
      leases_.Release(rival, /*settled=*/false);
      if (peers_ != nullptr && cluster_size > 1) peers_->LapseSubmit(rival);
      if (clock_->NowMonotonicMillis() >= deadline_ms) {
        return failed(absl::UnavailableError(
            absl::StrCat("node ", rival.node_id, " held this CSR and is gone; retry in a few seconds")));
      }
      leases_.WaitForChange(std::chrono::milliseconds(kReclaimSoonMs));
      continue;
    }
    if (search == nullptr) search = NewCaSearch(s, rival.after_request_id);
    const int64_t pause_ms = ClaimPrecedes(claim, rival) ? kReclaimSoonMs : kReclaimLaterMs;
    auto found = AwaitRival(rival, s, search.get(), std::min(now_ms + pause_ms, deadline_ms), fields);
    (*fields)["in_flight_wait_ms"] = clock_->NowMonotonicMillis() - started_ms;
    if (!found.ok()) return failed(found.status());
    if (found->has_value()) return Lease{std::nullopt, std::nullopt, *found, absl::OkStatus()};
    if (clock_->NowMonotonicMillis() >= deadline_ms) {
      return failed(absl::UnavailableError(
          absl::StrCat("node ", rival.node_id,
                       " is submitting this CSR to the CA right now; retry in a few seconds for its answer")));
    }
  }
}

std::string ApiService::RivalGone(const SubmitIntent& rival, const std::vector<LeaseAnswer>& answers,
                                  std::map<std::pair<std::string, uint64_t>, int64_t>* silent_since) const {
  // How long a rival's node may stay silent before its claim counts as gone: well inside the
  // wait, yet long enough that a lost message or two does not count. A node that is cut off
  // but alive could still be in its CA call then; the takeover searches the CA first, and
  // docs/reliability.md lists this case.
  const int64_t silent_limit_ms = std::min<int64_t>(2'000, config_.ca.in_flight_wait.count() / 2);
  const auto key = std::make_pair(rival.node_id, rival.claim_id);
  const int64_t now_ms = clock_->NowMonotonicMillis();
  for (const LeaseAnswer& a : answers) {
    if (a.node_id != rival.node_id) continue;
    silent_since->erase(key);
    return ClaimOutlivedItsNode(rival, a) ? "it restarted after the claim began" : "";
  }
  auto [it, first] = silent_since->try_emplace(key, now_ms);
  if (!first && now_ms - it->second >= silent_limit_ms) {
    return absl::StrCat("it has not answered for ", now_ms - it->second, " ms");
  }
  return "";
}

void ApiService::ReleaseLease(const SubmitIntent& claim, bool settled) {
  leases_.Release(claim, settled);
  if (peers_ != nullptr && ClusterSize() > 1) peers_->ReleaseSubmit(claim, settled);
}

absl::StatusOr<std::optional<RequestRecord>> ApiService::AwaitRival(const SubmitIntent& rival, const CheckedSubmit& s,
                                                                    CaRequestSearch* search, int64_t until_ms,
                                                                    Json* fields) {
  const int64_t not_before_ms =
      clock_->NowUnixMillis() - std::chrono::duration_cast<std::chrono::milliseconds>(config_.ca.dedupe_window).count();
  for (bool waited = false;; waited = true) {
    auto local = store_->FindByDedupeKey(s.ca_config, s.template_name, s.csr_sha256, not_before_ms);
    if (local.ok() && Reusable(*local) && (*local)->csr_sha256() == s.csr_sha256) {
      (*fields)["deduplicated"] = "store";
      return *local;
    }
    if (waited) return std::nullopt;  // claim again
    if (!search->exhausted()) {
      auto found = search->Pass();
      (*fields)["ca_search_reads"] = search->ca_reads();
      if (!found.ok()) return found.status();
      if (found->has_value()) {
        auto rec = RecordFound(s, **found, rival.ca_identity);
        if (!rec.ok()) return rec.status();
        (*fields)["recovered_for_node"] = rival.node_id;
        (*fields)["deduplicated"] = "ca-search";
        return *rec;
      }
    }
    const int64_t now_ms = clock_->NowMonotonicMillis();
    if (now_ms < until_ms) leases_.WaitForChange(std::chrono::milliseconds(until_ms - now_ms));
  }
}

absl::StatusOr<std::optional<RequestRecord>> ApiService::FindAtCa(const CheckedSubmit& s, uint32_t after_request_id,
                                                                  const std::string& requester, Json* fields) {
  std::unique_ptr<CaRequestSearch> search = NewCaSearch(s, after_request_id);
  auto found = search->Pass();
  (*fields)["ca_search_reads"] = search->ca_reads();
  if (!found.ok()) return found.status();
  if (!found->has_value()) return std::optional<RequestRecord>();
  return RecordFound(s, **found, requester);
}

std::unique_ptr<CaRequestSearch> ApiService::NewCaSearch(const CheckedSubmit& s, uint32_t after_request_id) {
  // Requests the cluster already knows for another CSR need no CA call.
  auto known_elsewhere = [store = store_, ca_config = s.ca_config, digest = s.csr_sha256](uint32_t id) {
    auto rec = store->Get(ca_config, id);
    return rec.ok() && rec->has_value() && !(*rec)->csr_sha256().empty() && (*rec)->csr_sha256() != digest;
  };
  return std::make_unique<CaRequestSearch>(backend_, s.target, adcsc::ca::CallerIdentity{config_.ca.identity},
                                           s.csr_der, after_request_id, config_.ca.recovery_scan_limit,
                                           std::move(known_elsewhere));
}

absl::StatusOr<RequestRecord> ApiService::RecordFound(const CheckedSubmit& s, const adcsc::ca::CaResponse& found,
                                                      const std::string& requester) {
  const RequestRecord facts = SubmitFacts(s.csr_sha256, s.template_name, requester);
  const adcsc::store::SubmitKey key = s.key();
  if (auto put = RecordRetrieved(s.target, found, &facts, &key); !put.ok()) return put;
  auto rec = store_->Get(s.ca_config, found.request_id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) {
    return absl::InternalError(absl::StrCat("request ", found.request_id, " vanished after recording"));
  }
  return **rec;
}

ApiResponse ApiService::AnswerWithRecord(const RequestRecord& rec, CallLog* call) {
  auto d = static_cast<Disposition>(rec.disposition());
  call->fields["request_id"] = rec.request_id();
  return call->Finish(
      Make(200, WithRequestIdJson(DispositionStatus(d), DispositionMessage(d), rec.request_id()), OutcomeFor(d)));
}

absl::StatusOr<adcsc::ca::CaResponse> ApiService::CaRetrieve(const adcsc::ca::CaTarget& target, uint32_t request_id,
                                                             Json* fields) {
  adcsc::ca::RetrieveRequest ret;
  ret.target = target;
  ret.caller = {config_.ca.identity};
  ret.request_id = request_id;
  const auto ca_started = std::chrono::steady_clock::now();
  auto from_ca = backend_->Retrieve(ret);
  (*fields)["ca_ms"] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - ca_started).count();
  if (from_ca.ok() || KindOf(from_ca.status()) == CaFailureKind::kUnreachable) {
    ca_reachability_.Note(adcsc::store::CaConfigKey(target.dc, target.ca), from_ca.ok());
  }
  if (from_ca.ok()) from_ca->request_id = request_id;
  return from_ca;
}

absl::Status ApiService::RecordRetrieved(const adcsc::ca::CaTarget& target, const adcsc::ca::CaResponse& answer,
                                         const RequestRecord* known, const adcsc::store::SubmitKey* settles) {
  RequestRecord rec = RecordOfAnswer(adcsc::store::CaConfigKey(target.dc, target.ca), answer,
                                     known != nullptr ? *known : RequestRecord());
  if (rec.requester().empty()) rec.set_requester(config_.ca.identity);
  auto put = Record(rec, settles);
  if (put.ok()) return put;
  return absl::Status(put.code(),
                      absl::StrCat("request ", answer.request_id,
                                   " was read from the CA but could not be recorded: ", std::string(put.message())));
}

absl::Status ApiService::RecordCaAdminOutcome(const adcsc::ca::CaTarget& target, const adcsc::ca::CaResponse& answer) {
  auto known = store_->Get(adcsc::store::CaConfigKey(target.dc, target.ca), answer.request_id);
  if (!known.ok()) return known.status();
  RequestRecord rec = RecordOfAnswer(adcsc::store::CaConfigKey(target.dc, target.ca), answer,
                                     known->has_value() ? **known : RequestRecord());
  if (rec.requester().empty()) rec.set_requester(config_.ca.identity);
  if (absl::Status put = RecordAdminAction(rec); !put.ok()) {
    return absl::Status(put.code(), absl::StrCat("request ", answer.request_id,
                                                 " was changed at the CA but could not be recorded: ", put.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<uint32_t>> ApiService::FindRequestBySerial(const adcsc::ca::CaTarget& target,
                                                                        const std::string& serial_hex) const {
  // The serial's bytes as the certificate carries them (an INTEGER's content, where a
  // leading zero byte may or may not appear): search for them without leading zeros, then
  // check each candidate's serial exactly.
  if (serial_hex.empty() || serial_hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return std::nullopt;
  }
  std::string bytes = absl::HexStringToBytes(serial_hex.size() % 2 == 1 ? "0" + serial_hex : serial_hex);
  const size_t first = bytes.find_first_not_of('\0');
  bytes = first == std::string::npos ? std::string(1, '\0') : bytes.substr(first);
  auto candidates = store_->FindByCertificateBytes(adcsc::store::CaConfigKey(target.dc, target.ca), bytes, 64);
  if (!candidates.ok()) return candidates.status();
  for (const RequestRecord& r : *candidates) {
    const std::string& der = r.certificate_der();
    auto cert = adcsc::pki::CertFromDer(adcsc::pki::ByteView(reinterpret_cast<const uint8_t*>(der.data()), der.size()));
    if (cert.ok() && adcsc::pki::SerialHex(cert->get()) == serial_hex) return r.request_id();
  }
  return std::nullopt;
}

ApiResponse ApiService::Retrieve(const ApiRequest& request) {
  CallLog call(log_, observer_, "retrieve", request);
  Json& fields = call.fields;
  auto finish = [&](ApiResponse r) { return call.Finish(std::move(r)); };
  // Our own failure (the store): 500, not the CA's answer.
  auto internal_error = [&](std::string message, std::string outcome) {
    fields["error"] = message;
    return finish(Make(500, WithX509Json("INTERNAL_ERROR", message, ""), std::move(outcome)));
  };
  auto ca_failure = [&](const absl::Status& status, std::string_view extra) {
    return finish(CaFailureAnswer(status, kOriginalRetrieveCall, RetrieveErrorJson, extra, &call));
  };

  auto body = ParseRetrieveBody(request.body);
  if (!body.ok()) {
    fields["error"] = std::string(body.status().message());
    return finish(BadRequest(std::string(body.status().message())));
  }
  const std::string ca_config = adcsc::store::CaConfigKey(body->dc, body->ca);
  const adcsc::ca::CaTarget target{body->dc, body->ca};
  fields["ca_config"] = ca_config;
  fields["request_id"] = body->request_id;
  if (FindAllowedCa(*Allowlist(), body->dc, body->ca) == nullptr) {
    return finish(BadRequest(absl::StrCat("CA config \"", body->dc, "\\", body->ca,
                                          "\" is not allowed on this connector (check ca.allow in the node config)")));
  }

  // Where the answer comes from, in order: this node's store; a peer's (replication may be
  // behind); the CA, through a peer running as the identity that submitted the request when
  // that is not this node's; the CA, as this node's identity (a shared identity may always
  // retrieve). A CA answer is recorded before it is returned.
  auto local = store_->Get(ca_config, body->request_id);
  if (!local.ok())
    return internal_error(absl::StrCat("request store unavailable: ", std::string(local.status().message())),
                          "store_error");
  std::optional<RequestRecord> known = std::move(*local);

  adcsc::ca::CaResponse answer;
  bool answered = false;
  if (known.has_value() && IsSettled(*known)) {
    answer = ResponseFromRecord(*known);
    answered = true;
    fields["source"] = "store";
  }
  if (!answered && peers_ != nullptr) {
    if (auto from_peer = peers_->Lookup(ca_config, body->request_id); from_peer.has_value()) {
      known = known.has_value() ? adcsc::store::Merge(*known, *from_peer) : *from_peer;
      if (IsSettled(*known)) {
        answer = ResponseFromRecord(*known);
        answered = true;
        fields["source"] = "peer";
      }
    }
  }
  std::string forward_error;
  if (!answered && peers_ != nullptr && known.has_value() && !known->requester().empty() &&
      !absl::EqualsIgnoreCase(known->requester(), config_.ca.identity)) {
    fields["requester"] = known->requester();
    auto forwarded = peers_->ForwardRetrieve(known->requester(), target, body->request_id);
    if (forwarded.ok()) {
      answer = ResponseFromRecord(forwarded->record);
      answered = true;
      fields["source"] = "forwarded";
      fields["forwarded_to"] = forwarded->node_id;
    } else if (adcsc::ca::HresultOf(forwarded.status()).has_value()) {
      // The right identity asked the CA, and the CA failed: asking again as another
      // identity would not help.
      fields["source"] = "forwarded";
      return ca_failure(forwarded.status(), "");
    } else {
      // No live node runs as the submitter: try as this node's identity (it may have the
      // CA's officer rights); if the CA refuses, the error says why we had to.
      forward_error =
          absl::StrCat("request ", body->request_id, " was submitted as ", known->requester(),
                       " and no node running as that identity could retrieve it (",
                       std::string(forwarded.status().message()), "); this node runs as ", config_.ca.identity);
      fields["forward_error"] = std::string(forwarded.status().message());
    }
  }
  if (!answered) {
    fields["source"] = "ca";
    auto from_ca = CaRetrieve(target, body->request_id, &fields);
    if (from_ca.ok()) {
      if (auto recorded = RecordRetrieved(target, *from_ca, known ? &*known : nullptr); !recorded.ok()) {
        return internal_error(std::string(recorded.message()), "store_error");
      }
      answer = std::move(*from_ca);
      answered = true;
    } else if (KindOf(from_ca.status()) != CaFailureKind::kAnswered && peers_ != nullptr && ClusterSize() > 1) {
      // This node cannot reach the CA: a peer with the same identity that does retrieves it
      // (a read: asking again elsewhere is harmless). The peer never forwards it on.
      fields["ca_error_here"] = std::string(from_ca.status().message());
      auto failover = peers_->ForwardRetrieve(config_.ca.identity, target, body->request_id);
      if (failover.ok()) {
        answer = ResponseFromRecord(failover->record);
        answered = true;
        fields["source"] = "forwarded";
        fields["forwarded_to"] = failover->node_id;
      } else if (adcsc::ca::HresultOf(failover.status()).has_value() &&
                 KindOf(failover.status()) == CaFailureKind::kAnswered) {
        fields["source"] = "forwarded";  // a peer reached the CA, which answered with an error
        return ca_failure(failover.status(), forward_error);
      } else {
        fields["failover_error"] = std::string(failover.status().message());
      }
    }
    if (!answered) return ca_failure(from_ca.status(), forward_error);
  }
  if (answer.hresult != 0) fields["hresult"] = absl::StrCat("0x", absl::Hex(answer.hresult, absl::kZeroPad8));
  if (IsErrorDisposition(answer.disposition)) {
    // The CA's answer is an error: the original's INTERNAL_ERROR, with HTTP 200.
    call.level = LogLevel::kError;
    fields["ca_call"] = backend_->CallName();
    return finish(Make(200,
                       WithX509Json("INTERNAL_ERROR",
                                    OriginalCaMessage(kOriginalRetrieveCall, answer.hresult, "", answer.message), ""),
                       "ca_error"));
  }
  std::string x509;
  if ((answer.disposition == Disposition::kIssued || answer.disposition == Disposition::kIssuedOutOfBand) &&
      !answer.cert_der.empty()) {
    x509 = adcsc::pki::Base64EncodeLines(answer.cert_der);
  }
  return finish(Make(200,
                     WithX509Json(DispositionStatus(answer.disposition), DispositionMessage(answer.disposition), x509),
                     OutcomeFor(answer.disposition)));
}

absl::StatusOr<RequestRecord> ApiService::RetrieveForPeer(const std::string& peer_id, const std::string& identity,
                                                          const adcsc::ca::CaTarget& target, uint32_t request_id) {
  Json fields = {
      {"peer", peer_id}, {"ca_config", adcsc::store::CaConfigKey(target.dc, target.ca)}, {"request_id", request_id}};
  const auto started = std::chrono::steady_clock::now();
  auto finish = [&](absl::StatusOr<RequestRecord> result) {
    fields["latency_ms"] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    if (result.ok()) {
      fields["outcome"] = adcsc::store::StatusName(result->status());
      log_->Log(LogLevel::kInfo, "forwarded_retrieve", fields);
    } else {
      fields["outcome"] = "error";
      fields["error"] = std::string(result.status().message());
      log_->Log(LogLevel::kWarn, "forwarded_retrieve", fields);
    }
    return result;
  };
  // A peer may only ask for what this node would do for Jamf itself: the same allowlist,
  // and only under this node's own identity.
  if (FindAllowedCa(*Allowlist(), target.dc, target.ca) == nullptr) {
    return finish(absl::FailedPreconditionError(absl::StrCat("CA config \"", target.dc, "\\", target.ca,
                                                             "\" is not allowed on node ", config_.node_id,
                                                             " (check ca.allow on both nodes)")));
  }
  if (!absl::EqualsIgnoreCase(identity, config_.ca.identity)) {
    return finish(absl::FailedPreconditionError(
        absl::StrCat("node ", config_.node_id, " runs as ", config_.ca.identity, ", not ", identity)));
  }
  const std::string ca_config = adcsc::store::CaConfigKey(target.dc, target.ca);
  auto local = store_->Get(ca_config, request_id);
  if (!local.ok()) return finish(local.status());
  if (local->has_value() && IsSettled(**local)) {
    fields["source"] = "store";
    return finish(**local);
  }
  fields["source"] = "ca";
  auto from_ca = CaRetrieve(target, request_id, &fields);
  if (!from_ca.ok()) return finish(from_ca.status());
  if (auto recorded = RecordRetrieved(target, *from_ca, local->has_value() ? &**local : nullptr); !recorded.ok()) {
    return finish(recorded);
  }
  auto stored = store_->Get(ca_config, request_id);
  if (!stored.ok()) return finish(stored.status());
  if (!stored->has_value())
    return finish(absl::InternalError(absl::StrCat("request ", request_id, " vanished after recording")));
  return finish(**stored);
}

}  // namespace adcsc::node
