#include "node/api/api_service.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <future>
#include <thread>

#include "nlohmann/json.hpp"
#include "node/api/api_codec.h"
#include "node/api/peer_lookup.h"
#include "node/ca/hresult.h"
#include "node/pki/csr.h"
#include "node/pki/encoding.h"
#include "node/pki/keys.h"
#include "tests/testing/fake_ca_backend.h"
#include "tests/testing/temp_dir.h"

namespace adcsc::node {
namespace {

using adcsc::ca::Disposition;
using nlohmann::json;

// A DER CSR for `key` with subject CN=<cn> and a UPN otherName SAN.
absl::StatusOr<adcsc::pki::Bytes> MakeCsrWithUpn(EVP_PKEY* key, const std::string& cn, const std::string& upn) {
  adcsc::pki::X509ReqPtr req(X509_REQ_new());
  adcsc::pki::X509NamePtr name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  X509_REQ_set_subject_name(req.get(), name.get());
  X509_REQ_set_pubkey(req.get(), key);
  OTHERNAME* other = OTHERNAME_new();
  ASN1_OBJECT_free(other->type_id);
  other->type_id = OBJ_nid2obj(NID_ms_upn);
  ASN1_UTF8STRING* value = ASN1_UTF8STRING_new();
  ASN1_STRING_set(value, upn.data(), static_cast<int>(upn.size()));
  ASN1_TYPE_set(other->value, V_ASN1_UTF8STRING, value);
  adcsc::pki::GeneralNamesPtr sans(sk_GENERAL_NAME_new_null());
  GENERAL_NAME* gen = GENERAL_NAME_new();
  GENERAL_NAME_set0_value(gen, GEN_OTHERNAME, other);
  sk_GENERAL_NAME_push(sans.get(), gen);
  adcsc::pki::X509ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  sk_X509_EXTENSION_push(exts.get(), X509V3_EXT_i2d(NID_subject_alt_name, 0, sans.get()));
  if (X509_REQ_add_extensions(req.get(), exts.get()) != 1 || X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0) {
    return absl::InternalError("could not build the CSR");
  }
  return adcsc::pki::CsrToDer(req.get());
}

class ApiServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.node_id = "node-a";
    config_.ca.identity = "EXAMPLE\\svc-adcsc";
    config_.ca.allow.resize(2);
    config_.ca.allow[0].dc = "ca1.example.com";
    config_.ca.allow[0].ca = "Example-CA";
    config_.ca.allow[0].templates = {"JamfDevice", "Other"};
    config_.ca.allow[0].key = "ca.allow[0]";
    config_.ca.allow[1].dc = "ca2.example.com";
    config_.ca.allow[1].ca = "Standalone-CA";
    config_.ca.allow[1].key = "ca.allow[1]";
    adcsc::store::StoreOptions o;
    o.path = dir_.path() / "store.db";
    o.node_id = "node-a";
    o.clock = &clock_;
    o.fsync = false;
    auto s = adcsc::store::RequestStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    log_ = EventLog::Stderr("node-a", LogLevel::kError);
    service_ = std::make_unique<ApiService>(config_, &ca_, store_.get(), log_.get(), &clock_);
    auth_.ok = true;
    auth_.pin = std::string(64, 'a');
  }

  std::string FreshCsr(std::string cn = "device-1") {
    auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
    EXPECT_TRUE(key.ok());
    auto der = adcsc::pki::MakeCsr(key->get(), cn, {});
    EXPECT_TRUE(der.ok());
    return adcsc::pki::Base64Encode(*der);
  }

  ApiResponse Call(std::string_view method, std::string_view path, const std::string& body) {
    ApiRequest r;
    r.method = method;
    r.target = path;
    r.body = body;
    r.auth = &auth_;
    return service_->Handle(r);
  }

  ApiResponse Submit(const std::string& pkcs10, std::string tmpl = "JamfDevice", std::string dc = "ca1.example.com",
                     std::string ca = "Example-CA") {
    json b = {{"pkcs10", pkcs10}, {"template", tmpl}, {"config", {{"dc", dc}, {"ca", ca}}}};
    return Call("POST", "/api/v1/certificate/request", b.dump());
  }

  ApiResponse Retrieve(uint32_t id, std::string dc = "ca1.example.com", std::string ca = "Example-CA") {
    json b = {{"request-id", id}, {"config", {{"dc", dc}, {"ca", ca}}}};
    return Call("POST", "/api/v1/certificate/retrieve", b.dump());
  }

  static std::string Status(const ApiResponse& r) { return json::parse(r.body)["request-status"]["status"]; }

  adcsc::testing::TempDir dir_;
  FakeClock clock_;
  Config config_;
  adcsc::testing::FakeCaBackend ca_;
  std::unique_ptr<adcsc::store::RequestStore> store_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<ApiService> service_;
  ClientAuthResult auth_;
};

TEST_F(ApiServiceTest, IssuedSubmitIsRecordedAndRetrievedFromTheStore) {
  auto r = Submit(FreshCsr());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"request-id":1})");
  EXPECT_EQ(ca_.last_submit().caller.name, "EXAMPLE\\svc-adcsc");
  EXPECT_EQ(ca_.last_submit().template_name, "JamfDevice");

  auto rec = store_->Get("ca1.example.com\\Example-CA", 1);
  ASSERT_TRUE(rec.ok());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->status(), adcsc::store::v1::RECORD_STATUS_ISSUED);

  auto got = Retrieve(1);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "CR_DISP_ISSUED");
  EXPECT_EQ(json::parse(got.body)["x509"], adcsc::pki::Base64EncodeLines(ca_.cert_der));
  EXPECT_EQ(ca_.retrieves(), 0) << "an issued record is served from the store";
}

// Counts what the service reports to its observer.
class CountingObserver : public ApiObserver {
 public:
  void ObserveCall(std::string_view, std::string_view outcome, int, double, double) override {
    outcomes.emplace_back(outcome);
  }
  void ObservePolicyDenial(std::string_view rule) override { denied_rules.emplace_back(rule); }
  void ObserveUnserved(std::string_view method, std::string_view path) override {
    unserved.push_back(std::string(method) + " " + std::string(path));
  }
  std::vector<std::string> outcomes, denied_rules, unserved;
};

TEST_F(ApiServiceTest, ACsrOutsideTheSigningPolicyIsDeniedWithoutAnyCaCallRecordOrIntent) {
  CountingObserver observer;
  service_ = std::make_unique<ApiService>(config_, &ca_, store_.get(), log_.get(), &clock_,
                                          ApiServiceLinks{.observer = &observer});
  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  ASSERT_TRUE(key.ok());
  // A UPN SAN: the ESC1 request a stolen Jamf identity would send.
  auto der = MakeCsrWithUpn(key->get(), "device-1", "administrator@corp.example");
  ASSERT_TRUE(der.ok()) << der.status();
  const std::string csr = adcsc::pki::Base64Encode(*der);

  auto r = Submit(csr);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.outcome, "policy_denied");
  EXPECT_EQ(
      r.body,
      R"({"request-status":{"status":"CR_DISP_DENIED","message":"Request denied by the connector's signing policy: )"
      R"(ca.allow[0].san_upn: UPN SAN \"administrator@corp.example\" is not allowed"},"request-id":0})");
  // Again: a denied CSR is not deduplicated into anything either.
  EXPECT_EQ(Submit(csr).outcome, "policy_denied");
  EXPECT_EQ(ca_.submits(), 0) << "the CA never saw it";
  EXPECT_EQ(ca_.retrieves(), 0);
  EXPECT_EQ(*store_->CountRecords(), 0) << "nothing recorded";
  EXPECT_TRUE(store_->OpenSubmitIntents(10)->empty()) << "no submit intent";
  EXPECT_EQ(observer.denied_rules, (std::vector<std::string>{"san_upn", "san_upn"}));
  EXPECT_EQ(observer.outcomes, (std::vector<std::string>{"policy_denied", "policy_denied"}));

  // The entry's policy decides: allowing UPNs under this CA (a reload) lets the same CSR through.
  config_.ca.allow[0].policy.san_upn = {"*@corp.example"};
  service_->ReplaceAllowlist(config_.ca.allow);
  auto allowed = Submit(csr);
  EXPECT_EQ(Status(allowed), "CR_DISP_ISSUED") << allowed.body;
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(ApiServiceTest, PolicyRulesNameTheEntryTheyBelongTo) {
  config_.ca.allow[1].policy.subject_patterns = {"CN=mac-*"};
  service_->ReplaceAllowlist(config_.ca.allow);
  auto denied = Submit(FreshCsr("device-1"), "", "ca2.example.com", "Standalone-CA");
  EXPECT_EQ(Status(denied), "CR_DISP_DENIED");
  EXPECT_NE(denied.body.find("ca.allow[1].subject_patterns: subject \\\"CN=device-1\\\" matches no pattern"),
            std::string::npos)
      << denied.body;
  EXPECT_EQ(Status(Submit(FreshCsr("mac-7"), "", "ca2.example.com", "Standalone-CA")), "CR_DISP_ISSUED");
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(ApiServiceTest, PendingThenIssuedAsksTheCaUntilSettled) {
  ca_.submit_disposition = Disposition::kUnderSubmission;
  auto r = Submit(FreshCsr());
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(
      r.body,
      R"({"request-status":{"status":"CR_DISP_UNDER_SUBMISSION","message":"Request taken under submission"},"request-id":1})");
  auto pending = Retrieve(1);
  EXPECT_EQ(
      pending.body,
      R"({"request-status":{"status":"CR_DISP_UNDER_SUBMISSION","message":"Request taken under submission"},"x509":null})");
  ca_.Issue(1);
  auto issued = Retrieve(1);
  EXPECT_EQ(Status(issued), "CR_DISP_ISSUED");
  EXPECT_EQ(ca_.retrieves(), 2);
  Retrieve(1);
  EXPECT_EQ(ca_.retrieves(), 2);
}

TEST_F(ApiServiceTest, DeniedIsAnAnswerNotAnError) {
  ca_.submit_disposition = Disposition::kDenied;
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Status(r), "CR_DISP_DENIED");
  auto got = Retrieve(1);
  EXPECT_EQ(got.body, R"({"request-status":{"status":"CR_DISP_DENIED","message":"Request denied"},"x509":null})");
}

// The original connector's answer to a CA error, byte for byte as its public test script
// documents it: HTTP 200, INTERNAL_ERROR, the COMException text with a plain hyphen, and
// request-id 0 (docs/api.md, "Errors").
TEST_F(ApiServiceTest, ACaErrorIsHttp200WithTheOriginalsInternalError) {
  ca_.fail_hresult = adcsc::ca::hr::kEnrollDenied;
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.outcome, "ca_error");
  EXPECT_EQ(r.body,
            R"json({"request-status":{"status":"INTERNAL_ERROR","message":"System.Runtime.InteropServices.)json"
            R"json(COMException - CCertRequest::Submit: The permissions on this certification authority do not )json"
            R"json(allow the current user to enroll for certificates. 0x80094011 (-2146877423 )json"
            R"json(CERTSRV_E_ENROLL_DENIED)"},"request-id":0})json");
}

// Each CA error kind, on both calls: the message is the original's, and the HRESULT keeps its
// hex, decimal (or WIN32/ASN code) and symbol.
TEST_F(ApiServiceTest, EveryCaErrorKindIsHttp200WithInternalErrorOnSubmitAndRetrieve) {
  struct Case {
    uint32_t hresult;
    std::string text;  // after "<call>: "
    std::string outcome;
  };
  const std::vector<Case> cases = {
      {adcsc::ca::hr::kRpcServerUnavailable,
       "The RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)", "ca_unavailable"},
      {adcsc::ca::hr::kTimeout,
       "This operation returned because the timeout period expired. 0x800705b4 (WIN32: 1460 ERROR_TIMEOUT)",
       "ca_unavailable"},
      {adcsc::ca::hr::kAccessDenied, "Access is denied. 0x80070005 (WIN32: 5 ERROR_ACCESS_DENIED)", "ca_error"},
      {adcsc::ca::hr::kTemplateDenied,
       "The permissions on the certificate template do not allow the current user to enroll for this type of "
       "certificate. 0x80094012 (-2146877422 CERTSRV_E_TEMPLATE_DENIED)",
       "ca_error"},
      {adcsc::ca::hr::kAsn1BadTag, "ASN1 bad tag value met. 0x8009310b (ASN: 267 CRYPT_E_ASN1_BADTAG)", "ca_error"},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    ca_.fail_hresult = c.hresult;
    auto sub = Submit(FreshCsr("kind-" + std::to_string(++n)));
    EXPECT_EQ(sub.status, 200);
    EXPECT_EQ(sub.outcome, c.outcome);
    EXPECT_EQ(sub.body,
              WithRequestIdJson("INTERNAL_ERROR",
                                "System.Runtime.InteropServices.COMException - CCertRequest::Submit: " + c.text, 0));
    auto ret = Retrieve(5);
    EXPECT_EQ(ret.status, 200);
    EXPECT_EQ(ret.outcome, c.outcome);
    EXPECT_EQ(
        ret.body,
        WithX509Json("INTERNAL_ERROR",
                     "System.Runtime.InteropServices.COMException - CCertRequest::RetrievePending: " + c.text, ""));
  }
  EXPECT_EQ(Retrieve(5).node, "node-a") << "the answer names the node (X-Adcsc-Node)";
}

// api.ca_unreachable_status = 503: a CA that cannot be reached is today's 503 (a load
// balancer's L7 retry); a CA that answered with an error is still the original's 200.
TEST_F(ApiServiceTest, WithCaUnreachableStatus503AnUnreachableCaIs503) {
  config_.api.ca_unreachable_status = 503;
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.outcome, "ca_unavailable");
  auto j = json::parse(r.body);
  EXPECT_EQ(j["request-status"]["status"], "SERVICE_UNAVAILABLE");
  EXPECT_EQ(j["request-id"], 0);
  EXPECT_NE(std::string(j["request-status"]["message"]).find("0x800706ba"), std::string::npos) << r.body;
  ca_.fail_hresult = adcsc::ca::hr::kTimeout;
  auto got = Retrieve(5);
  EXPECT_EQ(got.status, 503) << got.body;
  EXPECT_EQ(json::parse(got.body)["x509"], nullptr);
  ca_.fail_hresult = adcsc::ca::hr::kEnrollDenied;
  auto denied = Submit(FreshCsr("denied"));
  EXPECT_EQ(denied.status, 200) << denied.body;
  EXPECT_EQ(Status(denied), "INTERNAL_ERROR");
}

// A node that cannot authenticate to the CA (here: no Kerberos ticket, the KDC is down) says
// why in the answer, after the original's HRESULT text: "The RPC server is unavailable" alone
// would send the Jamf Pro administrator to the network (docs/api.md, "Errors").
TEST_F(ApiServiceTest, AnAuthenticationFailureNamesItsCauseInTheAnswer) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  ca_.fail_auth_detail = "Kerberos credentials for ca01: cannot reach the KDC for realm EXAMPLE.TEST: check krb5.conf";
  const std::string expected =
      "System.Runtime.InteropServices.COMException - CCertRequest::Submit: The RPC server is unavailable. 0x800706ba "
      "(WIN32: 1722 RPC_S_SERVER_UNAVAILABLE); Kerberos credentials for ca01: cannot reach the KDC for realm "
      "EXAMPLE.TEST: check krb5.conf";
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.outcome, "ca_unavailable");
  EXPECT_EQ(r.body, WithRequestIdJson("INTERNAL_ERROR", expected, 0));
  auto got = Retrieve(5);
  EXPECT_EQ(json::parse(got.body)["request-status"]["message"],
            "System.Runtime.InteropServices.COMException - CCertRequest::RetrievePending: The RPC server is "
            "unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE); Kerberos credentials for ca01: cannot "
            "reach the KDC for realm EXAMPLE.TEST: check krb5.conf")
      << got.body;
  config_.api.ca_unreachable_status = 503;
  auto unavailable = Submit(FreshCsr("503"));
  EXPECT_EQ(unavailable.status, 503) << unavailable.body;
  const std::string message = json::parse(unavailable.body)["request-status"]["message"];
  EXPECT_NE(message.find("0x800706ba"), std::string::npos) << message;
  EXPECT_NE(message.find("; Kerberos credentials for ca01: cannot reach the KDC"), std::string::npos) << message;
}

TEST_F(ApiServiceTest, RetrieveOfUnknownIdNamesTheHresult) {
  auto r = Retrieve(77);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Status(r), "INTERNAL_ERROR");
  std::string msg = json::parse(r.body)["request-status"]["message"];
  EXPECT_NE(msg.find("CCertRequest::RetrievePending: The requested property value is empty. 0x80094004 "
                     "(-2146877436 CERTSRV_E_PROPERTY_EMPTY)"),
            std::string::npos)
      << msg;
}

TEST_F(ApiServiceTest, ResubmittingTheSameCsrReturnsTheSameRequestId) {
  std::string csr = FreshCsr();
  auto first = Submit(csr);
  auto second = Submit(csr);
  EXPECT_EQ(first.body, second.body);
  EXPECT_EQ(ca_.submits(), 1);
  // A different template is a different request.
  auto other = Submit(csr, "Other");
  EXPECT_EQ(json::parse(other.body)["request-id"], 2);
  // Outside the window it is a new request again.
  clock_.AdvanceMillis(std::chrono::duration_cast<std::chrono::milliseconds>(config_.ca.dedupe_window).count() + 1);
  auto later = Submit(csr);
  EXPECT_EQ(json::parse(later.body)["request-id"], 3);
}

// A denial is not reused by dedupe: once the CA's reason for it is fixed (a permission, a
// template), the same CSR goes to the CA again (it used to hear "denied" for the whole window).
TEST_F(ApiServiceTest, ADenialIsNotReusedTheRetryGoesToTheCa) {
  std::string csr = FreshCsr();
  ca_.submit_disposition = Disposition::kDenied;
  auto denied = Submit(csr);
  ASSERT_EQ(Status(denied), "CR_DISP_DENIED") << denied.body;
  ca_.submit_disposition = Disposition::kIssued;
  auto retried = Submit(csr);
  EXPECT_EQ(Status(retried), "CR_DISP_ISSUED") << retried.body;
  EXPECT_EQ(json::parse(retried.body)["request-id"], 2);
  EXPECT_EQ(ca_.submits(), 2);
  // An issued answer is still reused.
  EXPECT_EQ(Submit(csr).body, retried.body);
  EXPECT_EQ(ca_.submits(), 2);
}

TEST_F(ApiServiceTest, APendingAnswerIsStillReused) {
  std::string csr = FreshCsr();
  ca_.submit_disposition = Disposition::kUnderSubmission;
  auto pending = Submit(csr);
  ASSERT_EQ(Status(pending), "CR_DISP_UNDER_SUBMISSION") << pending.body;
  EXPECT_EQ(Submit(csr).body, pending.body);
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(ApiServiceTest, RefusesCasAndTemplatesOutsideTheAllowlist) {
  auto r = Submit(FreshCsr(), "JamfDevice", "evil.example.net", "Example-CA");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Status(r), "BAD_REQUEST");
  EXPECT_NE(r.body.find("not allowed"), std::string::npos);
  EXPECT_EQ(Submit(FreshCsr(), "WebServer").status, 400);
  EXPECT_EQ(Retrieve(1, "evil.example.net").status, 400);
  EXPECT_EQ(ca_.submits(), 0);
  // DNS names compare case-insensitively; a list-less entry allows any template.
  EXPECT_EQ(Submit(FreshCsr(), "JamfDevice", "CA1.Example.COM").status, 200);
  EXPECT_EQ(Submit(FreshCsr(), "", "ca2.example.com", "Standalone-CA").status, 200);
}

TEST_F(ApiServiceTest, RejectsBadCsrs) {
  auto not_b64 = Submit("@@@@");
  EXPECT_EQ(not_b64.status, 400);
  EXPECT_NE(not_b64.body.find("pkcs10"), std::string::npos);
  auto not_csr = Submit(adcsc::pki::Base64Encode(adcsc::pki::AsBytes("hello world")));
  EXPECT_EQ(not_csr.status, 400);

  auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto der = adcsc::pki::MakeCsr(key->get(), "device-x", {});
  ASSERT_TRUE(der.ok());
  (*der)[der->size() - 3] ^= 0x55;  // inside the signature
  auto broken = Submit(adcsc::pki::Base64Encode(*der));
  EXPECT_EQ(broken.status, 400) << broken.body;
  EXPECT_NE(broken.body.find("signature"), std::string::npos) << broken.body;
  EXPECT_EQ(ca_.submits(), 0);
}

TEST_F(ApiServiceTest, PemArmourAndLineBreaksAreTolerated) {
  std::string b64 = FreshCsr();
  std::string wrapped = "-----BEGIN CERTIFICATE REQUEST-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) wrapped += b64.substr(i, 64) + "\r\n";
  wrapped += "-----END CERTIFICATE REQUEST-----\n";
  EXPECT_EQ(Submit(wrapped).status, 200);
}

// Jamf Pro's revoke call is not public (docs/api.md, "Calls adcsc does not serve"): an
// authorized call under /api/ that adcsc does not serve gets the answer it always got, and its
// shape (names, never values) is logged once and counted every time.
TEST_F(ApiServiceTest, AnUnservedApiCallIsAnsweredAsBeforeLoggedOnceByShapeAndCounted) {
  auto log = EventLog::Open(dir_.path() / "events.log", LogLevel::kInfo, "node-a");
  ASSERT_TRUE(log.ok()) << log.status();
  CountingObserver observer;
  service_ = std::make_unique<ApiService>(config_, &ca_, store_.get(), log->get(), &clock_,
                                          ApiServiceLinks{.observer = &observer});
  auto call = [&](std::string_view method, std::string_view target, const std::string& body) {
    ApiRequest r;
    r.method = method;
    r.target = target;
    r.body = body;
    r.auth = &auth_;
    r.header_names = {"Host", "Content-Type", "X-Jamf-Trace"};
    return service_->Handle(r);
  };
  const std::string body = R"({"serialNumber":"61000000A1B2C3","reason":"superseded","udid":"00008030-0011ABC"})";
  auto first = call("POST", "/api/v1/certificate/revoke?token=hunter2", body);
  EXPECT_EQ(first.status, 404);
  EXPECT_EQ(first.body,
            R"({"request-status":{"status":"NOT_FOUND","message":"no such endpoint: /api/v1/certificate/revoke"}})");
  EXPECT_EQ(call("POST", "/api/v1/certificate/revoke", body).status, 404);
  auto wrong_method = call("DELETE", "/api/v1/certificate/request", "");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(call("GET", "/not-api", "").status, 404);  // not under /api/: neither logged nor counted
  auth_.ok = false;
  EXPECT_EQ(call("POST", "/api/v1/certificate/revoke", body).status, 403);  // refused before routing
  auth_.ok = true;
  EXPECT_EQ(observer.unserved,
            (std::vector<std::string>{"POST /api/v1/certificate/revoke", "POST /api/v1/certificate/revoke",
                                      "DELETE /api/v1/certificate/request"}));
  (*log)->Flush();
  std::ifstream in(dir_.path() / "events.log");
  std::vector<json> lines;
  for (std::string line; std::getline(in, line);) {
    if (line.find("unserved_api_call") != std::string::npos) lines.push_back(json::parse(line));
    for (const char* value : {"61000000A1B2C3", "superseded", "00008030", "hunter2"}) {
      EXPECT_EQ(line.find(value), std::string::npos) << value << " reached the log: " << line;
    }
  }
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["method"], "POST");
  EXPECT_EQ(lines[0]["path"], "/api/v1/certificate/revoke");
  EXPECT_EQ(lines[0]["status"], 404);
  EXPECT_EQ(lines[0]["query_keys"], json::array({"token"}));
  EXPECT_EQ(lines[0]["header_names"], json::array({"content-type", "host", "x-jamf-trace"}));
  EXPECT_EQ(lines[0]["body_kind"], "json_object");
  EXPECT_EQ(lines[0]["body_keys"], json::array({"reason", "serialNumber", "udid"}));
  EXPECT_EQ(lines[0]["client_pin"], auth_.pin);
  EXPECT_EQ(lines[1]["method"], "DELETE");
  EXPECT_EQ(lines[1]["status"], 405);
}

TEST_F(ApiServiceTest, RoutingAndAuthorization) {
  EXPECT_EQ(Call("GET", "/api/v1/version", "").status, 200);
  EXPECT_EQ(json::parse(Call("GET", "/api/v1/version?x=1", "").body)["version"], ADCSC_VERSION);
  auto wrong_method = Call("GET", "/api/v1/certificate/request", "");
  EXPECT_EQ(wrong_method.status, 405);
  EXPECT_EQ(wrong_method.allow, "POST");
  EXPECT_EQ(Call("POST", "/api/v1/version", "").status, 405);
  EXPECT_EQ(Call("GET", "/nope", "").status, 404);
  EXPECT_EQ(Status(Call("GET", "/nope", "")), "NOT_FOUND");

  auth_.ok = false;
  auth_.reason = "client certificate sha256:aa is trusted but not mapped";
  auto denied = Call("GET", "/api/v1/version", "");
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(Status(denied), "FORBIDDEN");
  EXPECT_NE(denied.body.find("not mapped"), std::string::npos);
  EXPECT_EQ(Call("POST", "/api/v1/certificate/request", "{}").status, 403);
}

// The other nodes of a cluster, as the API sees them: records they hold, and the answer a
// forwarded retrieve gets. Counts what it is asked.
class FakePeers : public PeerLookup {
 public:
  std::vector<adcsc::store::RequestRecord> records;  // what the peers hold
  absl::StatusOr<ForwardedRetrieve> forward_answer = absl::UnavailableError("no peer runs as that identity");
  int lookups = 0, dedupe_lookups = 0, forwards = 0;
  std::string forwarded_identity;

  std::optional<adcsc::store::RequestRecord> Lookup(const std::string& ca_config, uint32_t request_id) override {
    ++lookups;
    for (const auto& r : records) {
      if (r.ca_config() == ca_config && r.request_id() == request_id) return r;
    }
    return std::nullopt;
  }
  std::optional<adcsc::store::RequestRecord> LookupByDedupeKey(const std::string& ca_config, const std::string& tmpl,
                                                               const std::string&, int64_t) override {
    ++dedupe_lookups;
    // Deliberately does not check the hash: the API must not trust a peer's answer blindly.
    for (const auto& r : records) {
      if (r.ca_config() == ca_config && r.template_name() == tmpl) return r;
    }
    return std::nullopt;
  }
  absl::StatusOr<ForwardedRetrieve> ForwardRetrieve(const std::string& identity, const adcsc::ca::CaTarget&,
                                                    uint32_t) override {
    ++forwards;
    forwarded_identity = identity;
    return forward_answer;
  }
  // A submit this node could not take to the CA: what the peer answers, and what it was sent.
  absl::StatusOr<ForwardedSubmit> forward_submit_answer = absl::UnavailableError("no peer took the submit to the CA");
  int forwarded_submits = 0;
  SubmitToForward forwarded_submit;
  size_t releases_when_forwarded = 0;  // lease releases sent before the forward
  absl::StatusOr<ForwardedSubmit> ForwardSubmit(const SubmitToForward& submit) override {
    ++forwarded_submits;
    forwarded_submit = submit;
    releases_when_forwarded = releases.size();
    return forward_submit_answer;
  }
  // Lease answers: each of `peer_ids` grants the claim, or, while `rival` is set, says the
  // rival holds the CSR.
  std::vector<LeaseAnswer> ClaimSubmit(const SubmitIntent& claim, size_t /*grants_enough*/) override {
    claims.push_back(claim);
    std::vector<LeaseAnswer> out;
    for (const std::string& id : peer_ids) {
      LeaseAnswer a;
      a.node_id = id;
      a.grant = rival.has_value() ? LeaseGrant::kHeld : LeaseGrant::kGranted;
      a.holder = rival;
      a.started_ms = started_ms;
      out.push_back(a);
    }
    return out;
  }
  void ReleaseSubmit(const SubmitIntent& claim, bool settled) override { releases.push_back({claim, settled}); }
  void LapseSubmit(const SubmitIntent& claim) override {
    lapsed.push_back(claim);
    if (rival.has_value() && rival->claim_id == claim.claim_id) rival.reset();  // the peers take the lapse
  }
  std::vector<SubmitIntent> lapsed;
  std::vector<std::string> peer_ids;
  std::optional<SubmitIntent> rival;
  int64_t started_ms = 0;  // what the peers say of their process start
  std::vector<SubmitIntent> claims;
  std::vector<std::pair<SubmitIntent, bool>> releases;
};

// A node of a three-node cluster whose peers (node-b, node-c) grant its leases.
class ClusteredApiServiceTest : public ApiServiceTest {
 protected:
  void SetUp() override {
    ApiServiceTest::SetUp();
    config_.cluster.enabled = true;
    config_.cluster.peers = {{"node-b", "127.0.0.1:1"}, {"node-c", "127.0.0.1:2"}};
    peers_.peer_ids = {"node-b", "node-c"};
    ApiServiceLinks links;
    links.peers = &peers_;
    service_ = std::make_unique<ApiService>(config_, &ca_, store_.get(), log_.get(), &clock_, links);
    // Past the grace a restarted node keeps before it grants leases.
    clock_.AdvanceMillis(config_.ca.submit_lease.count());
  }
  static adcsc::store::RequestRecord PeerRecord(uint32_t id, adcsc::store::RecordStatus status, std::string requester,
                                                std::string cert = "") {
    adcsc::store::RequestRecord r;
    r.set_ca_config("ca1.example.com\\Example-CA");
    r.set_request_id(id);
    r.set_status(status);
    r.set_disposition(status == adcsc::store::v1::RECORD_STATUS_ISSUED ? 3 : 5);
    r.set_certificate_der(cert);
    r.set_requester(requester);
    r.set_template_name("JamfDevice");
    r.set_csr_sha256(std::string(32, 'x'));
    r.set_created_ms(1);
    return r;
  }
  FakePeers peers_;
};

TEST_F(ClusteredApiServiceTest, RetrieveOfARecordOnlyAPeerHoldsIsAnsweredWithoutTheCa) {
  peers_.records.push_back(
      PeerRecord(42, adcsc::store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-adcsc", std::string("\x30\x00", 2)));
  auto got = Retrieve(42);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "CR_DISP_ISSUED");
  EXPECT_EQ(json::parse(got.body)["x509"], adcsc::pki::Base64EncodeLines(std::vector<uint8_t>{0x30, 0x00}));
  EXPECT_EQ(peers_.lookups, 1);
  EXPECT_EQ(ca_.retrieves(), 0);
}

TEST_F(ClusteredApiServiceTest, ASettledLocalRecordNeedsNoPeer) {
  ASSERT_EQ(Submit(FreshCsr()).status, 200);
  ASSERT_EQ(Retrieve(1).status, 200);
  EXPECT_EQ(peers_.lookups, 0);
}

TEST_F(ClusteredApiServiceTest, UnknownEverywhereGoesToTheCaAsThisNode) {
  ca_.Issue(7);
  auto got = Retrieve(7);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "CR_DISP_ISSUED");
  EXPECT_EQ(peers_.lookups, 1);
  EXPECT_EQ(peers_.forwards, 0) << "no known submitter: the shared identity asks the CA itself";
  EXPECT_EQ(ca_.retrieves(), 1);
  auto rec = store_->Get("ca1.example.com\\Example-CA", 7);
  ASSERT_TRUE(rec.ok() && rec->has_value()) << "the CA's answer is recorded";
  EXPECT_EQ((*rec)->requester(), "EXAMPLE\\svc-adcsc");
}

TEST_F(ClusteredApiServiceTest, APendingRequestOfAnotherIdentityIsForwardedToIt) {
  peers_.records.push_back(PeerRecord(9, adcsc::store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-b"));
  ForwardedRetrieve fwd{"node-b", PeerRecord(9, adcsc::store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-b", "\x30\x01")};
  peers_.forward_answer = fwd;
  auto got = Retrieve(9);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "CR_DISP_ISSUED");
  EXPECT_EQ(peers_.forwarded_identity, "EXAMPLE\\svc-b");
  EXPECT_EQ(ca_.retrieves(), 0) << "this node's identity may not retrieve another's request";
}

TEST_F(ClusteredApiServiceTest, TheSameIdentityInAnotherCaseIsNotForwarded) {
  peers_.records.push_back(PeerRecord(9, adcsc::store::v1::RECORD_STATUS_PENDING, "example\\SVC-ADCSC"));
  ca_.Issue(9);
  ASSERT_EQ(Retrieve(9).status, 200);
  EXPECT_EQ(peers_.forwards, 0);
  EXPECT_EQ(ca_.retrieves(), 1);
}

TEST_F(ClusteredApiServiceTest, WithNoNodeOfTheSubmittersIdentityThisNodeTriesAndSaysWhyItHadTo) {
  peers_.records.push_back(PeerRecord(9, adcsc::store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-b"));
  ca_.fail_hresult = 0x80070005;  // E_ACCESSDENIED: not the submitter
  auto got = Retrieve(9);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "INTERNAL_ERROR");
  const std::string message = json::parse(got.body)["request-status"]["message"];
  EXPECT_NE(message.find("submitted as EXAMPLE\\svc-b"), std::string::npos) << message;
  EXPECT_NE(message.find("no peer runs as that identity"), std::string::npos) << message;
  EXPECT_EQ(peers_.forwards, 1);
  EXPECT_EQ(ca_.retrieves(), 1);
}

TEST_F(ClusteredApiServiceTest, ACaErrorOnTheForwardedNodeIsTheAnswer) {
  peers_.records.push_back(PeerRecord(9, adcsc::store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-b"));
  peers_.forward_answer = adcsc::ca::CaError(0x800706BA, "forwarded to node-b");  // RPC server unavailable
  auto got = Retrieve(9);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_NE(std::string(json::parse(got.body)["request-status"]["message"])
                .find("CCertRequest::RetrievePending: The RPC server is unavailable. 0x800706ba"),
            std::string::npos)
      << got.body;
  EXPECT_EQ(ca_.retrieves(), 0);
}

TEST_F(ClusteredApiServiceTest, SubmitDedupeAsksThePeersAndChecksTheirAnswer) {
  const std::string csr = FreshCsr();
  auto der = adcsc::pki::Base64Decode(csr);
  ASSERT_TRUE(der.ok());
  const auto digest = adcsc::pki::Sha256(adcsc::pki::ByteView(*der));
  auto theirs = PeerRecord(77, adcsc::store::v1::RECORD_STATUS_PENDING, "EXAMPLE\\svc-adcsc");
  theirs.set_csr_sha256(std::string(digest.begin(), digest.end()));
  theirs.set_created_ms(clock_.NowUnixMillis());
  peers_.records.push_back(theirs);

  auto r = Submit(csr);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["request-id"], 77) << "the request a peer already made";
  EXPECT_EQ(ca_.submits(), 0);

  // A peer's record for another CSR is never reused, even if a peer claims it matches.
  peers_.records[0].set_csr_sha256(std::string(32, 'y'));
  auto other = Submit(csr);
  ASSERT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(json::parse(other.body)["request-id"], 1);
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(ClusteredApiServiceTest, APeersForwardedRetrieveRunsOnlyAsThisIdentityAndOnlyForAllowedCas) {
  ca_.Issue(5);
  auto wrong = service_->RetrieveForPeer("node-b", "EXAMPLE\\svc-b", {"ca1.example.com", "Example-CA"}, 5);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition) << wrong.status();
  auto steered = service_->RetrieveForPeer("node-b", "EXAMPLE\\svc-adcsc", {"evil.example.com", "Any-CA"}, 5);
  EXPECT_EQ(steered.status().code(), absl::StatusCode::kFailedPrecondition) << steered.status();
  EXPECT_EQ(ca_.retrieves(), 0);

  auto ok = service_->RetrieveForPeer("node-b", "example\\svc-adcsc", {"ca1.example.com", "Example-CA"}, 5);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status(), adcsc::store::v1::RECORD_STATUS_ISSUED);
  EXPECT_EQ(ca_.retrieves(), 1);
  auto rec = store_->Get("ca1.example.com\\Example-CA", 5);
  ASSERT_TRUE(rec.ok() && rec->has_value()) << "recorded, so it replicates";

  ca_.fail_hresult = 0x800706BA;
  auto failed = service_->RetrieveForPeer("node-b", "EXAMPLE\\svc-adcsc", {"ca1.example.com", "Example-CA"}, 6);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(adcsc::ca::HresultOf(failed.status()), 0x800706BAu) << "the CA's HRESULT goes back to the peer";
}

// A submit cut short: another node held the lease on the CSR, the CA took its request, and
// that node died before recording the answer. The client's retry reaches this node.
// A node that cannot reach the CA (nothing sent) hands the submit to a peer once its own lease
// is released and its intent dropped, so the peer's full submit path (dedupe, lease, intent,
// CA) runs as if the client had reached it; the client gets the peer's answer.
TEST_F(ClusteredApiServiceTest, AnUnreachableCaFailsTheSubmitOverToAPeer) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  const std::string theirs =
      R"({"request-status":{"status":"CR_DISP_ISSUED","message":"Certificate issued"},"request-id":7})";
  peers_.forward_submit_answer = ForwardedSubmit{"node-b", 200, theirs, "issued"};
  const std::string csr = FreshCsr();
  auto r = Submit(csr);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, theirs);
  EXPECT_EQ(r.outcome, "issued");
  EXPECT_EQ(r.node, "node-a");
  ASSERT_EQ(peers_.forwarded_submits, 1);
  EXPECT_EQ(peers_.forwarded_submit.ca_config, "ca1.example.com\\Example-CA");
  EXPECT_EQ(json::parse(peers_.forwarded_submit.body)["pkcs10"], csr) << "the client's body as received";
  EXPECT_EQ(peers_.forwarded_submit.client_pin, auth_.pin);
  EXPECT_EQ(peers_.releases_when_forwarded, 1u) << "this node's lease was released before the peer took it";
  EXPECT_TRUE(peers_.releases.back().second) << "released as settled: nothing reached the CA";
  EXPECT_EQ(service_->leases().held(), 0u);
  EXPECT_TRUE(store_->OpenSubmitIntents(10)->empty());
  EXPECT_EQ(ca_.submits(), 1) << "this node's one attempt, which never reached the CA";
}

// When no peer can take it either, the client gets this node's own error, as the original's.
TEST_F(ClusteredApiServiceTest, WhenNoNodeReachesTheCaTheAnswerIsTheOriginalsInternalError) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  auto r = Submit(FreshCsr());
  EXPECT_EQ(peers_.forwarded_submits, 1);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.outcome, "ca_unavailable");
  EXPECT_EQ(r.body, WithRequestIdJson("INTERNAL_ERROR",
                                      "System.Runtime.InteropServices.COMException - CCertRequest::Submit: The RPC "
                                      "server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)",
                                      0));
  config_.api.ca_unreachable_status = 503;
  auto old = Submit(FreshCsr("old"));
  EXPECT_EQ(peers_.forwarded_submits, 2) << "failed over first in either setting";
  EXPECT_EQ(old.status, 503);
  EXPECT_EQ(Status(old), "SERVICE_UNAVAILABLE");
}

// A peer that took the submit but did not answer in time may still reach the CA: the answer
// is an outcome-unknown one, and the client's retry is deduplicated.
TEST_F(ClusteredApiServiceTest, APeerThatRanOutOfTimeIsAnOutcomeUnknown) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  peers_.forward_submit_answer =
      adcsc::ca::MarkOutcomeUnknown(absl::DeadlineExceededError("the submit forwarded to node-b did not finish"));
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.outcome, "ca_outcome_unknown");
  EXPECT_NE(r.body.find("CCertRequest::Submit: This operation returned because the timeout period expired."),
            std::string::npos)
      << r.body;
}

// A CA that answered (with an error) is the answer: another node would hear the same.
TEST_F(ClusteredApiServiceTest, ACaErrorIsNotFailedOver) {
  ca_.fail_hresult = adcsc::ca::hr::kEnrollDenied;
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Status(r), "INTERNAL_ERROR");
  EXPECT_EQ(peers_.forwarded_submits, 0);
}

// One hop: a submit a peer forwarded here is answered here, whatever the CA does.
TEST_F(ClusteredApiServiceTest, AForwardedSubmitIsNeverForwardedAgain) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  json b = {{"pkcs10", FreshCsr()},
            {"template", "JamfDevice"},
            {"config", {{"dc", "ca1.example.com"}, {"ca", "Example-CA"}}}};
  auto r = service_->SubmitForPeer("node-b", b.dump(), auth_.pin, "192.0.2.1:1234");
  EXPECT_EQ(peers_.forwarded_submits, 0);
  EXPECT_EQ(r.outcome, "ca_unavailable") << "tells the sender this node could not reach the CA either";
  ca_.fail_hresult = 0;
  auto ok = service_->SubmitForPeer("node-b", b.dump(), auth_.pin, "192.0.2.1:1234");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(Status(ok), "CR_DISP_ISSUED");
  EXPECT_EQ(ok.node, "node-a");
}

// A retrieve this node cannot take to the CA goes to a peer with the same identity.
TEST_F(ClusteredApiServiceTest, AnUnreachableCaFailsTheRetrieveOverToAPeerOfTheSameIdentity) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  peers_.forward_answer = ForwardedRetrieve{
      "node-b", PeerRecord(7, adcsc::store::v1::RECORD_STATUS_ISSUED, "EXAMPLE\\svc-adcsc", "\x30\x01")};
  auto got = Retrieve(7);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(Status(got), "CR_DISP_ISSUED");
  EXPECT_EQ(peers_.forwards, 1);
  EXPECT_EQ(peers_.forwarded_identity, "EXAMPLE\\svc-adcsc");
  // No peer reaches it either: this node's error, as the original's.
  peers_.forward_answer = adcsc::ca::CaError(adcsc::ca::hr::kRpcServerUnavailable, "forwarded to node-b");
  auto down = Retrieve(8);
  EXPECT_EQ(down.status, 200);
  EXPECT_EQ(down.body, WithX509Json("INTERNAL_ERROR",
                                    "System.Runtime.InteropServices.COMException - CCertRequest::RetrievePending: The "
                                    "RPC server is unavailable. 0x800706ba (WIN32: 1722 RPC_S_SERVER_UNAVAILABLE)",
                                    ""));
}

// What the node reports to its peers: a CA it could not reach, until it reaches it again.
TEST_F(ClusteredApiServiceTest, TheNodeRemembersWhichCaItCouldNotReach) {
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  Submit(FreshCsr());
  EXPECT_EQ(service_->ca_reachability().Unreachable(), std::vector<std::string>{"ca1.example.com\\Example-CA"});
  ca_.fail_hresult = 0;
  ASSERT_EQ(Submit(FreshCsr("back")).status, 200);
  EXPECT_TRUE(service_->ca_reachability().Unreachable().empty());
}

class CutShortSubmitTest : public ClusteredApiServiceTest {
 protected:
  void SetUp() override {
    ClusteredApiServiceTest::SetUp();
    ca_.real_certs = true;
    auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
    ASSERT_TRUE(key.ok());
    auto der = adcsc::pki::MakeCsr(key->get(), "device-9", {});
    ASSERT_TRUE(der.ok());
    csr_der_ = *der;
    auto digest = adcsc::pki::Sha256(adcsc::pki::ByteView(csr_der_));
    csr_sha256_.assign(digest.begin(), digest.end());
  }
  SubmitIntent PeerIntent(uint32_t after) const {
    SubmitIntent c;
    c.ca_config = "ca1.example.com\\Example-CA";
    c.template_name = "JamfDevice";
    c.csr_sha256 = csr_sha256_;
    c.after_request_id = after;
    c.ca_identity = "EXAMPLE\\svc-adcsc";
    c.node_id = "node-b";
    c.claim_id = 77;
    c.ballot_ms = clock_.NowUnixMillis();
    return c;
  }
  // node-b holds the lease: in this node's table and at node-c.
  void RivalHolds(uint32_t after) {
    peers_.rival = PeerIntent(after);
    ASSERT_EQ(service_->leases().Claim(*peers_.rival, "node-a").grant, LeaseGrant::kGranted);
  }
  uint32_t CaTakes(const std::vector<uint8_t>& csr) {
    adcsc::ca::SubmitRequest r;
    r.target = {"ca1.example.com", "Example-CA"};
    r.caller = {"EXAMPLE\\svc-adcsc"};
    r.csr_der = csr;
    r.template_name = "JamfDevice";
    auto answer = ca_.Submit(r);
    EXPECT_TRUE(answer.ok());
    return answer.ok() ? answer->request_id : 0;
  }
  // Runs a submit that waits on the fake clock, moving the clock on by `step_ms` whenever it
  // waits, until it answers.
  ApiResponse SubmitMovingTime(int64_t step_ms) {
    auto submitted = std::async(std::launch::async, [&] { return Submit(adcsc::pki::Base64Encode(csr_der_)); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (submitted.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
      if (std::chrono::steady_clock::now() > deadline) {
        ADD_FAILURE() << "the submit never stopped waiting";
        break;
      }
      if (clock_.waiters() > 0) clock_.AdvanceMillis(step_ms);
    }
    return submitted.get();
  }
  std::vector<uint8_t> csr_der_;
  std::string csr_sha256_;
};

TEST_F(CutShortSubmitTest, TheRetryGetsTheRequestTheCaAlreadyHasNotASecondOne) {
  auto other_key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto other_csr = adcsc::pki::MakeCsr(other_key->get(), "device-1", {});
  CaTakes(*other_csr);
  CaTakes(*other_csr);
  RivalHolds(/*after=*/1);
  const uint32_t lost = CaTakes(csr_der_);  // node-b's call; its answer died with it
  CaTakes(*other_csr);
  ASSERT_EQ(ca_.submits(), 4);

  auto r = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["request-id"], lost);
  EXPECT_EQ(Status(r), "CR_DISP_ISSUED");
  EXPECT_EQ(ca_.submits(), 4) << "no second CA request for the same CSR";
  auto rec = store_->Get("ca1.example.com\\Example-CA", lost);
  ASSERT_TRUE(rec.ok() && rec->has_value()) << "the found answer is recorded";
  EXPECT_EQ((*rec)->csr_sha256(), csr_sha256_);
  EXPECT_EQ((*rec)->template_name(), "JamfDevice");
  EXPECT_EQ((*rec)->requester(), "EXAMPLE\\svc-adcsc");
  EXPECT_FALSE((*rec)->certificate_der().empty());

  // Now a plain dedupe hit: the store answers.
  const int retrieves = ca_.retrieves();
  auto again = Submit(adcsc::pki::Base64Encode(csr_der_));
  EXPECT_EQ(json::parse(again.body)["request-id"], lost);
  EXPECT_EQ(ca_.retrieves(), retrieves);
}

// While another node holds the lease this node never submits: it answers 503 once its wait
// runs out. Once the lease lapses, it takes the CSR over, searching the CA first.
TEST_F(CutShortSubmitTest, WhileARivalHoldsTheLeaseNothingIsSubmittedAfterItLapsesOneIs) {
  config_.ca.in_flight_wait = std::chrono::seconds(5);
  RivalHolds(/*after=*/0);
  auto refused = SubmitMovingTime(1000);
  ASSERT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(refused.outcome, "lease_busy");
  EXPECT_NE(refused.body.find("node-b is submitting this CSR"), std::string::npos) << refused.body;
  EXPECT_EQ(ca_.submits(), 0);

  clock_.AdvanceMillis(config_.ca.submit_lease.count());  // node-b died: its lease lapses
  peers_.rival.reset();
  auto taken = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(taken.status, 200) << taken.body;
  EXPECT_EQ(json::parse(taken.body)["request-id"], 1);
  EXPECT_EQ(ca_.submits(), 1);
  EXPECT_GT(ca_.retrieves(), 0) << "the lapsed claim's request was looked for first";
}

TEST_F(CutShortSubmitTest, WithNoWaitARivalsLeaseIsAnsweredAtOnce) {
  config_.ca.in_flight_wait = std::chrono::milliseconds(0);
  RivalHolds(/*after=*/0);
  auto r = Submit(adcsc::pki::Base64Encode(csr_der_));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(ca_.submits(), 0);
}

TEST_F(CutShortSubmitTest, ACaOutageDuringTheSearchIsAnErrorNotASubmit) {
  RivalHolds(/*after=*/0);
  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  auto r = Submit(adcsc::pki::Base64Encode(csr_der_));
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Status(r), "INTERNAL_ERROR");
  EXPECT_EQ(ca_.submits(), 0);
}

// The CA took the request but its answer was lost (a fault or a dropped connection after
// the call went out): the node finds the request at the CA instead of submitting again.
TEST_F(CutShortSubmitTest, ALostAnswerIsFoundAtTheCaNotSubmittedAgain) {
  ca_.lose_answers = 1;
  auto r = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["request-id"], 1);
  EXPECT_EQ(ca_.submits(), 1);
  auto open = store_->OpenSubmitIntents(10);
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE(open->empty()) << "the found answer settled the intent";
  ASSERT_FALSE(peers_.releases.empty());
  EXPECT_TRUE(peers_.releases.back().second);
}

// The request never reached the CA, but the node cannot know that: it answers as the original
// answered a CA call that failed (or 503 with api.ca_unreachable_status = 503), keeps the
// intent, and tells the peers the claim lapsed; the retry looks again, then submits once. It
// is not failed over: the request may be at the CA.
TEST_F(CutShortSubmitTest, ALostRequestIsAnInternalErrorAndTheRetrySubmitsItOnce) {
  ca_.lose_requests = 1;
  auto lost = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(lost.status, 200) << lost.body;
  EXPECT_EQ(lost.outcome, "ca_outcome_unknown");
  EXPECT_EQ(lost.body,
            WithRequestIdJson("INTERNAL_ERROR",
                              "System.Runtime.InteropServices.COMException - CCertRequest::Submit: The remote "
                              "procedure call failed. 0x800706be (WIN32: 1726 RPC_S_CALL_FAILED)",
                              0));
  EXPECT_EQ(peers_.forwarded_submits, 0) << "the request may be at the CA: not another node's to submit";
  ASSERT_FALSE(peers_.releases.empty());
  EXPECT_FALSE(peers_.releases.back().second) << "peers remember the claim for the next claimant's search";
  auto open = store_->OpenSubmitIntents(10);
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->size(), 1u);

  const int reads_before = ca_.retrieves();
  auto retried = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(ca_.submits(), 1);
  EXPECT_GT(ca_.retrieves(), reads_before) << "searched before submitting";
  EXPECT_TRUE(store_->OpenSubmitIntents(10)->empty());
}

TEST_F(CutShortSubmitTest, WithCaUnreachableStatus503ALostRequestIsA503ThatSaysToRetry) {
  config_.api.ca_unreachable_status = 503;
  ca_.lose_requests = 1;
  auto lost = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(lost.status, 503) << lost.body;
  EXPECT_EQ(lost.outcome, "ca_outcome_unknown");
  EXPECT_NE(lost.body.find("not among the CA's requests"), std::string::npos) << lost.body;
  auto retried = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(ca_.submits(), 1);
}

// A node killed after its intent was durable (before or after the CA call): the retry (here,
// or ResolveOpenIntents at start) finds the request at the CA.
TEST_F(CutShortSubmitTest, AnOpenIntentFromACrashIsSearchedBeforeSubmitting) {
  adcsc::store::SubmitIntentRow intent;
  intent.key = {"ca1.example.com\\Example-CA", "JamfDevice", csr_sha256_};
  intent.requester = "EXAMPLE\\svc-adcsc";
  intent.csr_der.assign(csr_der_.begin(), csr_der_.end());
  ASSERT_TRUE(store_->RecordSubmitIntent(intent).ok());
  const uint32_t taken = CaTakes(csr_der_);  // then the node died
  auto r = Submit(adcsc::pki::Base64Encode(csr_der_));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["request-id"], taken);
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(CutShortSubmitTest, ResolveOpenIntentsRecordsWhatTheCaHas) {
  adcsc::store::SubmitIntentRow intent;
  intent.key = {"ca1.example.com\\Example-CA", "JamfDevice", csr_sha256_};
  intent.requester = "EXAMPLE\\svc-adcsc";
  intent.csr_der.assign(csr_der_.begin(), csr_der_.end());
  ASSERT_TRUE(store_->RecordSubmitIntent(intent).ok());
  const uint32_t taken = CaTakes(csr_der_);
  // An intent for a request the CA never got stays open, for the retry to submit.
  auto other_key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
  auto other_csr = adcsc::pki::MakeCsr(other_key->get(), "device-2", {});
  const auto other_digest = adcsc::pki::Sha256(adcsc::pki::ByteView(*other_csr));
  adcsc::store::SubmitIntentRow never;
  never.key = {"ca1.example.com\\Example-CA", "JamfDevice", std::string(other_digest.begin(), other_digest.end())};
  never.requester = "EXAMPLE\\svc-adcsc";
  never.csr_der.assign(other_csr->begin(), other_csr->end());
  ASSERT_TRUE(store_->RecordSubmitIntent(never).ok());

  EXPECT_EQ(service_->ResolveOpenIntents(), 1);
  auto rec = store_->Get("ca1.example.com\\Example-CA", taken);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->csr_sha256(), csr_sha256_);
  auto open = store_->OpenSubmitIntents(10);
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ(open->front().key.csr_sha256, never.key.csr_sha256);
}

// The holder's node restarted after its claim began (kill -9 and a quick restart): the claim
// is lapsed everywhere at once and this node takes the CSR over, searching the CA first.
TEST_F(CutShortSubmitTest, ARivalWhoseNodeRestartedIsLapsedAndTakenOver) {
  RivalHolds(/*after=*/0);
  peers_.started_ms = peers_.rival->ballot_ms + 1;
  auto r = SubmitMovingTime(10);  // it pauses briefly for the peers to take the lapse
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(peers_.lapsed.size(), 1u);
  EXPECT_EQ(peers_.lapsed[0].claim_id, peers_.rival->claim_id);
  EXPECT_EQ(ca_.submits(), 1);
  EXPECT_GT(ca_.retrieves(), 0) << "searched the CA before submitting";
}

// The holder's node does not answer at all (killed): after 2 s of silence its claim lapses.
TEST_F(CutShortSubmitTest, ARivalWhoseNodeFellSilentIsTakenOverWithinTheWait) {
  config_.ca.in_flight_wait = std::chrono::seconds(5);
  RivalHolds(/*after=*/0);
  peers_.peer_ids = {"node-c"};  // node-c says node-b holds it; node-b is silent
  auto r = SubmitMovingTime(500);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(peers_.lapsed.size(), 1u);
  EXPECT_EQ(ca_.submits(), 1);
}

TEST_F(ClusteredApiServiceTest, ASubmitClaimsTheLeaseBeforeTheCaCallAndReleasesItAfter) {
  ASSERT_EQ(Submit(FreshCsr("one")).status, 200);
  ASSERT_EQ(peers_.claims.size(), 1u);
  ASSERT_EQ(peers_.releases.size(), 1u);
  const SubmitIntent& claim = peers_.claims[0];
  EXPECT_EQ(claim.after_request_id, 0u);
  EXPECT_EQ(claim.node_id, "node-a");
  EXPECT_EQ(claim.ca_identity, "EXAMPLE\\svc-adcsc");
  EXPECT_EQ(claim.csr_sha256.size(), 32u);
  EXPECT_NE(claim.claim_id, 0u);
  EXPECT_EQ(peers_.releases[0].first.claim_id, claim.claim_id);
  EXPECT_TRUE(peers_.releases[0].second);
  EXPECT_EQ(service_->leases().held(), 0u);

  ca_.fail_hresult = adcsc::ca::hr::kRpcServerUnavailable;
  auto two = Submit(FreshCsr("two"));
  ASSERT_EQ(two.status, 200);
  EXPECT_EQ(Status(two), "INTERNAL_ERROR");
  ASSERT_EQ(peers_.releases.size(), 2u);
  EXPECT_TRUE(peers_.releases[1].second) << "a submit the CA never took is released as settled";
  EXPECT_TRUE(store_->OpenSubmitIntents(10)->empty()) << "and leaves no intent";
  ca_.fail_hresult = 0;
  ASSERT_EQ(Submit(FreshCsr("three")).status, 200);
  EXPECT_EQ(peers_.claims[2].after_request_id, 1u) << "the highest request ID held when it started";
}

// Without a majority (a peer answers "held by node-b"; the other is silent), this node waits
// for the holder and never submits; with none answering under policy "refuse", it refuses.
TEST_F(ClusteredApiServiceTest, WithoutAMajorityNothingIsSubmitted) {
  config_.ca.in_flight_wait = std::chrono::milliseconds(0);
  SubmitIntent rival;
  rival.ca_config = "ca1.example.com\\Example-CA";
  rival.node_id = "node-b";
  rival.claim_id = 5;
  peers_.rival = rival;
  peers_.peer_ids = {"node-c"};
  auto r = Submit(FreshCsr());
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(ca_.submits(), 0);
  EXPECT_EQ(service_->leases().held(), 0u) << "its own claim released";

  peers_.rival.reset();
  peers_.peer_ids.clear();
  config_.cluster.on_quorum_loss = "refuse";
  auto alone = Submit(FreshCsr("alone"));
  EXPECT_EQ(alone.status, 503) << alone.body;
  EXPECT_NE(alone.body.find("majority"), std::string::npos) << alone.body;
  EXPECT_EQ(ca_.submits(), 0);
  config_.cluster.on_quorum_loss = "serve";
  EXPECT_EQ(Submit(FreshCsr("served")).status, 200) << "policy serve goes on, as writes do";
}

// Two requests for one CSR on one node at once (a client retrying on the same connection
// pool): one CA request, and both answer with its ID.
TEST_F(ApiServiceTest, TheSameCsrTwiceAtOnceOnOneNodeIsOneCaRequest) {
  const std::string csr = FreshCsr();
  std::promise<void> second_waiting;
  std::shared_future<void> go = second_waiting.get_future().share();
  ca_.on_submit_taken = [go] { go.wait(); };
  auto first = std::async(std::launch::async, [&] { return Submit(csr); });
  // The first holds the lease and sits in the CA call; start the second and let the first
  // answer once the second waits for it.
  while (service_->leases().held() == 0) std::this_thread::yield();
  auto second = std::async(std::launch::async, [&] { return Submit(csr); });
  while (clock_.waiters() == 0) std::this_thread::yield();
  second_waiting.set_value();
  const ApiResponse a = first.get();
  const ApiResponse b = second.get();
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.body, b.body);
  EXPECT_EQ(ca_.submits(), 1);
}

// A store that cannot take the submit intent refuses the submit before the CA call. The
// child process caps its file size, as a full disk does; exit codes name the failed step.
TEST_F(ApiServiceTest, AnIntentThatCannotBeMadeDurableStopsTheSubmitBeforeTheCa) {
  const std::string csr = FreshCsr();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit cap{};
    ::getrlimit(RLIMIT_FSIZE, &cap);
    cap.rlim_cur = 1;  // no file may grow: every append fails
    if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(10);
    const ApiResponse r = Submit(csr);
    if (r.status != 500) std::_Exit(11);
    if (r.body.find("nothing was sent to the CA") == std::string::npos) std::_Exit(12);
    if (r.body.find("store.db") == std::string::npos) std::_Exit(13);  // names the store
    if (ca_.submits() != 0) std::_Exit(14);
    if (store_->Check(/*write=*/false).ok()) std::_Exit(15);  // readiness fails
    std::_Exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "see the exit codes in the child above";
}

}  // namespace
}  // namespace adcsc::node
