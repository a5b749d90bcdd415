#include "node/ca/chain_recorder.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "node/pki/x509.h"

namespace adcsc::ca {

absl::StatusOr<CaResponse> ChainRecorder::Submit(const SubmitRequest& r) {
  absl::StatusOr<CaResponse> answer = inner_->Submit(r);
  if (answer.ok()) Note(r.target, *answer);
  return answer;
}

absl::StatusOr<CaResponse> ChainRecorder::Retrieve(const RetrieveRequest& r) {
  absl::StatusOr<CaResponse> answer = inner_->Retrieve(r);
  if (answer.ok()) Note(r.target, *answer);
  return answer;
}

void ChainRecorder::Note(const CaTarget& target, const CaResponse& response) {
  if (response.chain_der.empty()) return;
  const std::string ca_config = absl::StrCat(target.dc, "\\", target.ca);
  {
    std::lock_guard lock(mu_);
    auto it = chains_.find(ca_config);
    if (it != chains_.end() && it->second.der == response.chain_der) return;
  }
  Chain chain;
  chain.der = response.chain_der;
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (const std::vector<uint8_t>& der : response.chain_der) {
    auto cert = pki::CertFromDer(der);
    if (!cert.ok()) continue;  // informational: a certificate that does not parse is left out
    chain.certificates.push_back(
        {ca_config, pki::NameToString(X509_get_subject_name(cert->get())), pki::NotAfterUnix(cert->get()), now_ms});
  }
  std::lock_guard lock(mu_);
  chains_[ca_config] = std::move(chain);
}

std::vector<ChainRecorder::Known> ChainRecorder::Certificates() const {
  std::lock_guard lock(mu_);
  std::vector<Known> out;
  for (const auto& [ca_config, chain] : chains_)
    out.insert(out.end(), chain.certificates.begin(), chain.certificates.end());
  return out;
}

}  // namespace adcsc::ca
