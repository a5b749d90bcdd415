// An in-memory CaBackend for unit tests: answers from a script the test sets, counts
// calls, and can be told to fail. Thread-safe (one mutex).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include "node/ca/ca_backend.h"
#include "node/ca/hresult.h"
#include "node/pki/csr.h"
#include "node/pki/keys.h"
#include "node/pki/x509.h"

namespace adcsc::testing {

class FakeCaBackend : public adcsc::ca::CaBackend {
 public:
  // What the next submits answer (default: issued with a dummy certificate).
  adcsc::ca::Disposition submit_disposition = adcsc::ca::Disposition::kIssued;
  std::vector<uint8_t> cert_der = {0x30, 0x03, 0x02, 0x01, 0x01};
  // When non-zero, Submit/Retrieve fail with this HRESULT.
  uint32_t fail_hresult = 0;
  // With fail_hresult: the failure is this host's authentication to the CA, with this detail
  // (ca_backend.h, MarkAuthFailure).
  std::string fail_auth_detail;
  // When true, an issued submit gets a real certificate for the CSR's key, signed by a CA
  // key made on first use (what a search by public key needs); otherwise `cert_der`.
  bool real_certs = false;
  // The next N submits are taken (recorded as usual) and then answered as if the answer was
  // lost on the way back: an outcome-unknown failure (ca_backend.h).
  int lose_answers = 0;
  // The next N submits fail as outcome-unknown without reaching the CA (lost on the way in).
  int lose_requests = 0;
  // Called (without the backend's lock) once a submit is taken, before it answers: a test
  // holds a submit in flight with it.
  std::function<void()> on_submit_taken;

  absl::StatusOr<adcsc::ca::CaResponse> Submit(const adcsc::ca::SubmitRequest& r) override {
    absl::StatusOr<adcsc::ca::CaResponse> answer = SubmitLocked(r);
    if (answer.ok() && on_submit_taken) on_submit_taken();
    std::lock_guard lock(mu_);
    if (answer.ok() && lose_answers > 0) {
      --lose_answers;
      return adcsc::ca::MarkOutcomeUnknown(adcsc::ca::CaError(adcsc::ca::hr::kRpcCallFailed, "fake: answer lost"));
    }
    return answer;
  }

 private:
  absl::Status Failure(const std::string& context) const {
    absl::Status failure = adcsc::ca::CaError(fail_hresult, fail_auth_detail.empty() ? context : fail_auth_detail);
    return fail_auth_detail.empty() ? failure : adcsc::ca::MarkAuthFailure(failure, fail_auth_detail);
  }

  absl::StatusOr<adcsc::ca::CaResponse> SubmitLocked(const adcsc::ca::SubmitRequest& r) {
    std::lock_guard lock(mu_);
    if (lose_requests > 0) {  // it never got there: not counted, not taken
      --lose_requests;
      return adcsc::ca::MarkOutcomeUnknown(adcsc::ca::CaError(adcsc::ca::hr::kRpcCallFailed, "fake: request lost"));
    }
    submits_++;
    last_submit_ = r;
    if (fail_hresult != 0) return Failure("fake submit");
    adcsc::ca::CaResponse resp;
    resp.request_id = next_id_++;
    resp.disposition = submit_disposition;
    if (submit_disposition == adcsc::ca::Disposition::kIssued) {
      if (!real_certs) {
        resp.cert_der = cert_der;
      } else if (auto issued = IssueLocked(r.csr_der); issued.ok()) {
        resp.cert_der = std::move(*issued);
      } else {
        return adcsc::ca::CaError(adcsc::ca::hr::kFail, std::string(issued.status().message()));
      }
    }
    if (submit_disposition == adcsc::ca::Disposition::kDenied) resp.hresult = adcsc::ca::hr::kAdminDeniedRequest;
    states_[resp.request_id] = resp;
    return resp;
  }

 public:
  absl::StatusOr<adcsc::ca::CaResponse> Retrieve(const adcsc::ca::RetrieveRequest& r) override {
    std::lock_guard lock(mu_);
    retrieves_++;
    if (fail_hresult != 0) return Failure("fake retrieve");
    auto it = states_.find(r.request_id);
    if (it == states_.end()) return adcsc::ca::CaError(adcsc::ca::hr::kPropertyEmpty, "fake retrieve");
    if (foreign_.count(r.request_id) != 0) return adcsc::ca::CaError(adcsc::ca::hr::kAccessDenied, "fake retrieve");
    return it->second;
  }

  absl::Status Ping(const adcsc::ca::CaTarget&, const adcsc::ca::CallerIdentity&) override {
    return fail_hresult ? Failure("fake ping") : absl::OkStatus();
  }
  std::string Kind() const override { return "fake"; }

  // Test controls.
  void Issue(uint32_t id) {
    std::lock_guard lock(mu_);
    auto& s = states_[id];
    s.request_id = id;
    s.disposition = adcsc::ca::Disposition::kIssued;
    s.cert_der = cert_der;
  }
  // Requests submitted by another identity: their retrieve is refused with E_ACCESSDENIED.
  void MarkForeign(uint32_t id) {
    std::lock_guard lock(mu_);
    foreign_.insert(id);
  }
  int submits() const {
    std::lock_guard lock(mu_);
    return submits_;
  }
  int retrieves() const {
    std::lock_guard lock(mu_);
    return retrieves_;
  }
  adcsc::ca::SubmitRequest last_submit() const {
    std::lock_guard lock(mu_);
    return last_submit_;
  }

 private:
  mutable std::mutex mu_;
  uint32_t next_id_ = 1;
  int submits_ = 0, retrieves_ = 0;
  adcsc::ca::SubmitRequest last_submit_;
  std::map<uint32_t, adcsc::ca::CaResponse> states_;
  std::set<uint32_t> foreign_;
  adcsc::pki::EvpPkeyPtr ca_key_;
  adcsc::pki::X509Ptr ca_cert_;

  absl::StatusOr<std::vector<uint8_t>> IssueLocked(const std::vector<uint8_t>& csr_der) {
    if (ca_key_ == nullptr) {
      auto key = adcsc::pki::GenerateKey(adcsc::pki::KeyType::kEcP256);
      if (!key.ok()) return key.status();
      auto cert = adcsc::pki::MakeSelfSignedCa(key->get(), "Fake CA", {}, 1, {});
      if (!cert.ok()) return cert.status();
      ca_key_ = std::move(*key);
      ca_cert_ = std::move(*cert);
    }
    auto csr = adcsc::pki::ParseCsr(csr_der);
    if (!csr.ok()) return csr.status();
    auto leaf = adcsc::pki::IssueCertificate(ca_cert_.get(), ca_key_.get(), csr->request.get(), {});
    if (!leaf.ok()) return leaf.status();
    return adcsc::pki::CertToDer(leaf->get());
  }
};

}  // namespace adcsc::testing
