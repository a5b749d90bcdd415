// A small blocking HTTPS client with a client certificate, used by `adcsc client`, the
// benchmarks and tests. It can keep one connection alive, or open a new TLS connection for
// every request (as Jamf Pro's Java client does) with or without session resumption.
// Thread-safety: one HttpsClient per thread; instances share nothing.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace adcsc::node {

struct HttpsClientOptions {
  std::string url;                 // https://host:port (path ignored)
  std::filesystem::path pfx_file;  // client identity as PKCS#12 ...
  std::string pfx_password;
  std::filesystem::path cert_file;  // ... or as PEM certificate + key
  std::filesystem::path key_file;
  std::filesystem::path server_ca_file;  // trust for the server certificate (e.g. adcs-proxy-ca.pem)
  bool verify_hostname = true;           // check the URL host against the server certificate
  bool keep_alive = true;                // false: a new TLS connection per request
  bool resume_sessions = true;           // reuse TLS sessions across new connections
  std::string user_agent = "adcsc-client";
  std::chrono::milliseconds timeout{30'000};
};

struct HttpsResult {
  int status = 0;
  std::string body;
  bool resumed = false;  // the TLS session of this request's connection was resumed
  std::string node;      // the X-Adcsc-Node header: which node answered (empty: not said)
};

class HttpsClient {
 public:
  static absl::StatusOr<std::unique_ptr<HttpsClient>> Create(const HttpsClientOptions& options);
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  absl::StatusOr<HttpsResult> Get(const std::string& path);
  absl::StatusOr<HttpsResult> Post(const std::string& path, const std::string& json_body);

 private:
  class Impl;
  explicit HttpsClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::node
