#include "node/client/https_client.h"

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "node/pki/absl_view.h"
#include "node/pki/keys.h"
#include "node/pki/openssl_ptr.h"
#include "node/pki/pkcs12.h"

namespace adcsc::node {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

struct ParsedUrl {
  std::string host;
  std::string port;
};

absl::StatusOr<ParsedUrl> ParseUrl(const std::string& url) {
  constexpr std::string_view kScheme = "https://";
  if (url.rfind(kScheme, 0) != 0)
    return absl::InvalidArgumentError(absl::StrCat("--url must start with https://: ", url));
  std::string rest = url.substr(kScheme.size());
  rest = rest.substr(0, rest.find('/'));
  ParsedUrl p;
  if (!rest.empty() && rest[0] == '[') {  // [::1]:8443
    auto close = rest.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("bad IPv6 address in --url: " + url);
    p.host = rest.substr(1, close - 1);
    p.port = close + 2 <= rest.size() ? rest.substr(close + 2) : "";
  } else {
    auto colon = rest.rfind(':');
    p.host = rest.substr(0, colon);
    p.port = colon == std::string::npos ? "" : rest.substr(colon + 1);
  }
  if (p.port.empty()) p.port = "443";
  if (p.host.empty()) return absl::InvalidArgumentError("no host in --url: " + url);
  return p;
}

}  // namespace

class HttpsClient::Impl {
 public:
  explicit Impl(HttpsClientOptions options) : options_(std::move(options)), ctx_(ssl::context::tls_client) {}
  ~Impl() {
    Close();
    if (session_ != nullptr) SSL_SESSION_free(session_);
  }

  absl::Status Init();
  absl::StatusOr<HttpsResult> Do(http::verb verb, const std::string& path, const std::string* body);

 private:
  absl::Status Connect();
  void Close();

  HttpsClientOptions options_;
  ParsedUrl url_;
  net::io_context ioc_;
  ssl::context ctx_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
  SSL_SESSION* session_ = nullptr;  // owned; the last session to resume
  bool last_resumed_ = false;
  std::optional<tcp::resolver::results_type> endpoints_;  // resolved once, on first connect
};

absl::Status HttpsClient::Impl::Init() {
  auto url = ParseUrl(options_.url);
  if (!url.ok()) return url.status();
  url_ = *url;
  SSL_CTX* ctx = ctx_.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  if (!options_.pfx_file.empty()) {
    auto bytes = adcsc::pki::ReadFileToString(options_.pfx_file);
    if (!bytes.ok()) return bytes.status();
    auto id = adcsc::pki::LoadPkcs12(adcsc::pki::AsBytes(*bytes), options_.pfx_password);
    if (!id.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.pfx_file.string(), ": ", id.status().message(), " (is the password right?)"));
    }
    if (SSL_CTX_use_certificate(ctx, id->cert.get()) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key.get()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(options_.pfx_file.string(), ": unusable identity: ", adcsc::pki::LastOpenSslError()));
    }
  } else if (!options_.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, options_.cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, options_.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("cannot load client certificate ", options_.cert_file.string(),
                                                     " / key ", options_.key_file.string(), ": ",
                                                     adcsc::pki::LastOpenSslError()));
    }
  }
  if (!options_.server_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, options_.server_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("cannot load server CA file ", options_.server_ca_file.string(),
                                                     ": ", adcsc::pki::LastOpenSslError()));
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_default_verify_paths(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  return absl::OkStatus();
}

absl::Status HttpsClient::Impl::Connect() {
  stream_.emplace(ioc_, ctx_);
  SSL* ssl = stream_->native_handle();
  beast::error_code ec;
  net::ip::make_address(url_.host, ec);
  const bool is_ip = !ec;
  if (!is_ip) SSL_set_tlsext_host_name(ssl, url_.host.c_str());
  if (options_.verify_hostname) {
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), url_.host.c_str());
    } else {
      SSL_set1_host(ssl, url_.host.c_str());
    }
  }
  if (options_.resume_sessions && session_ != nullptr) SSL_set_session(ssl, session_);
  if (!endpoints_) {
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(url_.host, url_.port, ec);
    if (ec) return absl::UnavailableError(absl::StrCat("cannot resolve ", url_.host, ": ", ec.message()));
    endpoints_ = std::move(results);
  }
  auto& tcp_layer = beast::get_lowest_layer(*stream_);
  tcp_layer.expires_after(options_.timeout);
  tcp_layer.connect(*endpoints_, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot connect to ", url_.host, ":", url_.port, ": ", ec.message()));
  tcp_layer.socket().set_option(tcp::no_delay(true), ec);
  stream_->handshake(ssl::stream_base::client, ec);
  if (ec) {
    std::string detail = ec.message();
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      absl::StrAppend(&detail, " (server certificate: ", X509_verify_cert_error_string(verify), ")");
    stream_.reset();
    return absl::UnavailableError(absl::StrCat("TLS handshake with ", url_.host, ":", url_.port, " failed: ", detail));
  }
  last_resumed_ = SSL_session_reused(ssl) == 1;
  buffer_.clear();
  return absl::OkStatus();
}

void HttpsClient::Impl::Close() {
  if (!stream_) return;
  beast::error_code ec;
  if (session_ == nullptr || options_.resume_sessions) {
    // Keep the newest session (TLS 1.3 tickets arrive after the handshake).
    SSL_SESSION* s = SSL_get1_session(stream_->native_handle());
    if (s != nullptr) {
      if (SSL_SESSION_is_resumable(s)) {
        if (session_ != nullptr) SSL_SESSION_free(session_);
        session_ = s;
      } else {
        SSL_SESSION_free(s);
      }
    }
  }
  // Send close_notify and close, without waiting for the server's close_notify (as browsers
  // and Java's SSLSocket do): the answer has been read in full already.
  // Shutting down the socket's receive side first makes the TLS shutdown stop after sending
  // close_notify: its read for the server's close_notify sees end-of-stream at once.
  auto& socket = beast::get_lowest_layer(*stream_).socket();
  socket.shutdown(tcp::socket::shutdown_receive, ec);
  stream_->shutdown(ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  beast::get_lowest_layer(*stream_).close();
  stream_.reset();
}

absl::StatusOr<HttpsResult> HttpsClient::Impl::Do(http::verb verb, const std::string& path, const std::string* body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool reused_connection = stream_.has_value();
    if (!stream_) {
      if (auto s = Connect(); !s.ok()) return s;
    }
    http::request<http::string_body> req{verb, path, 11};
    req.set(http::field::host, url_.host);
    req.set(http::field::user_agent, options_.user_agent);
    req.keep_alive(options_.keep_alive);
    if (body != nullptr) {
      req.set(http::field::content_type, "application/json");
      req.body() = *body;
    }
    req.prepare_payload();
    auto& tcp_layer = beast::get_lowest_layer(*stream_);
    tcp_layer.expires_after(options_.timeout);
    beast::error_code ec;
    http::write(*stream_, req, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(16 * 1024 * 1024);
    if (!ec) http::read(*stream_, buffer_, parser, ec);
    if (ec) {
      stream_.reset();
      // A kept-alive connection the server closed meanwhile: retry once on a new one.
      if (reused_connection && attempt == 0 &&
          (ec == http::error::end_of_stream || ec == net::error::eof || ec == net::error::connection_reset ||
           ec == ssl::error::stream_truncated || ec == net::error::broken_pipe)) {
        continue;
      }
      return absl::UnavailableError(
          absl::StrCat(pki::AbslView(http::to_string(verb)), " ", path, " failed: ", ec.message()));
    }
    auto res = parser.release();
    HttpsResult out;
    out.status = res.result_int();
    out.body = std::move(res.body());
    out.resumed = last_resumed_;
    if (auto node = res.find("X-Adcsc-Node"); node != res.end()) out.node = std::string(node->value());
    if (!options_.keep_alive || !res.keep_alive()) Close();
    return out;
  }
  return absl::UnavailableError("unreachable");
}

HttpsClient::HttpsClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsClient::~HttpsClient() = default;

absl::StatusOr<std::unique_ptr<HttpsClient>> HttpsClient::Create(const HttpsClientOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (auto s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<HttpsClient>(new HttpsClient(std::move(impl)));
}

absl::StatusOr<HttpsResult> HttpsClient::Get(const std::string& path) {
  return impl_->Do(http::verb::get, path, nullptr);
}
absl::StatusOr<HttpsResult> HttpsClient::Post(const std::string& path, const std::string& json_body) {
  return impl_->Do(http::verb::post, path, &json_body);
}

}  // namespace adcsc::node
