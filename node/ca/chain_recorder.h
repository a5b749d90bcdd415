// A CA backend wrapper that learns each CA's own certificates from its answers: an issued
// certificate comes with its chain (ADCS: pctbCertChain), and the node reports when those
// certificates expire (docs/operations.md, "Certificate expiry") although it keeps no file of
// them. Everything else goes straight through to the wrapped backend.
// Thread-safety: as the wrapped backend; what was learned is guarded by a mutex.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "node/ca/ca_backend.h"

namespace adcsc::ca {

class ChainRecorder final : public CaBackend {
 public:
  explicit ChainRecorder(CaBackend* inner) : inner_(inner) {}  // borrowed
  ChainRecorder(const ChainRecorder&) = delete;
  ChainRecorder& operator=(const ChainRecorder&) = delete;

  absl::StatusOr<CaResponse> Submit(const SubmitRequest& r) override;
  absl::StatusOr<CaResponse> Retrieve(const RetrieveRequest& r) override;
  absl::Status Ping(const CaTarget& target, const CallerIdentity& caller) override {
    return inner_->Ping(target, caller);
  }
  std::string Kind() const override { return inner_->Kind(); }
  std::string CallName() const override { return inner_->CallName(); }
  std::optional<CaConnectionStats> ConnectionStats() override { return inner_->ConnectionStats(); }

  // One certificate of a CA's chain, from its latest answer with a chain.
  struct Known {
    std::string ca_config;  // "dc\ca" as the request named it
    std::string subject;    // RFC 2253
    int64_t not_after_unix = 0;
    int64_t learned_unix_ms = 0;  // when the answer came
  };
  // Every CA's chain as last seen, by CA config, each chain in the order the CA sent it.
  std::vector<Known> Certificates() const;

  // Notes the chain of `response` for `target` (what Submit and Retrieve do with answers).
  void Note(const CaTarget& target, const CaResponse& response);

 private:
  struct Chain {
    std::vector<std::vector<uint8_t>> der;  // as last seen, to skip parsing the same chain again
    std::vector<Known> certificates;
  };
  CaBackend* inner_;
  mutable std::mutex mu_;
  std::map<std::string, Chain> chains_;  // by CA config; guarded by mu_
};

}  // namespace adcsc::ca
