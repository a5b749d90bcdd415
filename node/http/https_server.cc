#include "node/http/https_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node/api/api_codec.h"
#include "node/http/forwarded_caller.h"
#include "node/http/security_headers.h"
#include "node/http/tls_settings.h"
#include "node/log/log_throttle.h"
#include "node/pki/openssl_ptr.h"

namespace adcsc::node {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using Stream = beast::ssl_stream<beast::tcp_stream>;

// Request headers larger than this are refused with 431.
constexpr uint32_t kMaxHeaderBytes = 16 * 1024;
// How much to read at once while waiting for the next request on a connection.
constexpr size_t kReadChunk = 8 * 1024;
// Bound on the TLS close_notify exchange when a connection ends.
constexpr std::chrono::seconds kTlsShutdownTimeout{2};
// On shutdown, how long a connection waiting for its next request may still send one.
constexpr std::chrono::seconds kShutdownIdleGrace{1};
// Pause after accept() fails for lack of descriptors, so the loop does not spin.
constexpr std::chrono::milliseconds kAcceptBackoff{100};
constexpr unsigned char kSessionIdContext[] = "adcsc-api";

// The handshake asks for a client certificate but accepts whatever is presented, or none, so
// that a refused client gets a 403 saying why (as IIS answers 403.7, 403.16 or a mapping
// failure) instead of an opaque handshake failure. ClientAuthorizer decides after the
// handshake; a refused client gets that one answer and the connection is closed.
int AcceptAnyPresentedCertificate(int /*preverify_ok*/, X509_STORE_CTX* /*ctx*/) { return 1; }
// And the handshake does not build or check the chain at all: ClientAuthorizer does, once,
// afterwards. Besides the work saved, OpenSSL 3.0 fills lazily cached encodings of shared
// certificate names while it verifies, which races between handshakes verifying at once on
// the I/O threads (ThreadSanitizer reported it in ASN1_STRING_cmp); ClientAuthorizer
// serializes its own verification for the same reason.
int SkipHandshakeChainCheck(X509_STORE_CTX* /*ctx*/, void* /*arg*/) { return 1; }

struct Endpoints {
  std::string remote_ip, local_ip;
  uint16_t local_port = 0;
  std::string source;  // the admission source key (text::SourceKey)
  uint64_t id = 0;     // the session
};

text::Address16 ToAddress16(const net::ip::address& a) {
  text::Address16 out{};
  if (a.is_v4()) {
    const auto v4 = a.to_v4().to_bytes();
    out[10] = out[11] = 0xff;
    std::copy(v4.begin(), v4.end(), out.begin() + 12);
  } else {
    const auto v6 = a.to_v6().to_bytes();
    std::copy(v6.begin(), v6.end(), out.begin());
  }
  return out;
}

AdmissionLimits LimitsFrom(const ApiConfig& c) {
  AdmissionLimits l;
  l.max_connections = c.max_connections;
  // A configuration built in code may leave the default reserve above a small cap: keep one
  // slot for connections that are not yet mapped.
  l.reserved_for_mapped = std::min(c.reserved_connections, c.max_connections - 1);
  l.max_per_source = c.max_connections_per_source;
  l.refusals_per_s = c.refusals_per_source_per_s;
  l.refusal_burst = c.refusal_burst;
  for (const std::string& e : c.source_limit_exempt) {
    if (auto p = text::ParseAddressPrefix(e); p.ok()) l.exempt.push_back(*p);
  }
  return l;
}

// What an access-log line says about the request beyond the connection's endpoints.
struct AccessFacts {
  std::string_view method = "-", target = "-", user_agent, referer;
  const ClientAuthResult* auth = nullptr;  // the caller's decision (null: not known)
  std::string_view client_ip;              // empty: the connection's remote address
  int status = 0;
  int substatus = 0;
  uint32_t win32_status = 0;
};

}  // namespace

class HttpsServer::Impl {
 public:
  Impl(const ApiConfig& config, ApiService* service, const ClientAuthorizer* authorizer, EventLog* log,
       AccessLog* access_log)
      : admission_(LimitsFrom(config)),
        config_(config),
        service_(service),
        authorizer_(authorizer),
        log_(log),
        access_log_(access_log),
        io_threads_count_(config.io_threads ? config.io_threads : std::max(1u, std::thread::hardware_concurrency())),
        ioc_(static_cast<int>(io_threads_count_)),
        ssl_ctx_(std::make_shared<ssl::context>(ssl::context::tls_server)),
        trusted_proxy_pins_(config.trusted_proxy_pins.begin(), config.trusted_proxy_pins.end()),
        refusal_log_(config.refusal_log_interval) {}

  ~Impl() { Stop(); }

  absl::Status Start();
  void BeginShutdown();
  bool WaitIdle(std::chrono::milliseconds grace);
  void Stop();
  absl::Status Reload(const ApiConfig& fresh, std::unique_ptr<const ClientAuthorizer> authorizer);
  std::vector<ClientAuthorizer::Seen> SeenClients() const { return authorizer_.load()->SeenCertificates(); }

  uint16_t port_ = 0;
  ServerCounters counters_;
  std::atomic<size_t> active_{0};
  ConnectionAdmission admission_;

 private:
  // Sets up `ctx` for the API port from `identity`: protocol policy, the server identity, the
  // client CAs, resumption. The rest of the configuration is config_.
  absl::Status ConfigureTls(ssl::context& ctx, const ApiConfig& identity);
  std::shared_ptr<ssl::context> CurrentContext() {
    std::lock_guard lock(tls_mu_);
    return ssl_ctx_;
  }
  net::awaitable<void> AcceptLoop();
  net::awaitable<void> RunSession(std::shared_ptr<Stream> stream, uint64_t id);
  net::awaitable<void> Session(std::shared_ptr<Stream> stream_ptr, uint64_t id, const Endpoints& ep);
  // The session's steps. The TLS handshake and the client-certificate decision (nullopt: the
  // handshake failed).
  net::awaitable<std::optional<ClientAuthResult>> Handshake(Stream& stream, uint64_t id, const Endpoints& ep);
  // Waits for the first byte of the next request (header or idle timeout, shutdown rules);
  // false when the connection should end.
  net::awaitable<bool> AwaitRequest(const std::shared_ptr<Stream>& stream, beast::flat_buffer& buffer,
                                    const Endpoints& ep, bool first_request);
  // Reads a request within the limits, answering what breaks them (431, 413, 400) itself.
  enum class ReadOutcome { kRequest, kClose, kDrop };  // kDrop: the socket is gone, no TLS close
  net::awaitable<ReadOutcome> ReadRequest(Stream& stream, beast::flat_buffer& buffer,
                                          http::request_parser<http::string_body>& parser, const ClientAuthResult& auth,
                                          const Endpoints& ep, std::chrono::steady_clock::time_point started);
  // Hands the request to the API on the worker pool, writes the answer and the access-log
  // line; false when the connection should close.
  net::awaitable<bool> Respond(Stream& stream, const http::request<http::string_body>& req,
                               const ClientAuthResult& auth, const Endpoints& ep,
                               std::chrono::steady_clock::time_point started);
  net::awaitable<bool> WriteError(Stream& stream, int status, std::string_view code, std::string_view message,
                                  const Endpoints& ep, std::string_view method, std::string_view path,
                                  const ClientAuthResult* auth, std::chrono::steady_clock::time_point started);
  // The request's real caller: the TLS peer, or the client behind a trusted proxy.
  absl::StatusOr<Caller> ResolveRequestCaller(const http::request<http::string_body>& req,
                                              const ClientAuthResult& tls_peer, const Endpoints& ep);
  net::awaitable<bool> WriteTooLarge(Stream& stream, const http::request<http::string_body>& partial,
                                     const Endpoints& ep, const ClientAuthResult* auth,
                                     std::chrono::steady_clock::time_point started);
  void WriteAccess(const Endpoints& ep, const AccessFacts& facts, std::chrono::steady_clock::time_point started);
  void RegisterIdle(uint64_t id, const std::shared_ptr<Stream>& stream);
  void UnregisterIdle(uint64_t id);
  void ConnectionClosed(uint64_t id);
  // Closes connection `id` on its own strand (admission made room by evicting it).
  void Evict(uint64_t id);
  // Counts a refusal of the connection against its source and logs `event`, at most once per
  // source and event in api.refusal_log_interval_s.
  void Refuse(Refusal kind, const Endpoints& ep, std::string_view event, nlohmann::json fields);
  // Logs a client-caused event at most once per source and event per interval.
  void LogThrottled(LogLevel level, std::string_view event, const std::string& source, nlohmann::json fields);

  const ApiConfig& config_;
  ApiService* service_;
  std::atomic<const ClientAuthorizer*> authorizer_;
  EventLog* log_;
  AccessLog* access_log_;
  unsigned io_threads_count_;
  net::io_context ioc_;
  std::mutex tls_mu_;  // guards ssl_ctx_ and retired_
  std::shared_ptr<ssl::context> ssl_ctx_;
  // What a reload replaced, and the authorizers it made: kept until the server stops, so a
  // handshake in progress never sees them go (reloads are rare; each is a few KiB).
  std::vector<std::shared_ptr<ssl::context>> retired_contexts_;
  std::vector<std::unique_ptr<const ClientAuthorizer>> reloaded_authorizers_;
  const std::set<std::string> trusted_proxy_pins_;
  std::optional<tcp::acceptor> acceptor_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::unique_ptr<net::thread_pool> workers_;
  std::vector<std::thread> threads_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> next_session_id_{1};

  LogThrottle refusal_log_;

  std::mutex mu_;  // guards idle_ and open_, and signals idle_cv_
  std::condition_variable idle_cv_;
  std::map<uint64_t, std::weak_ptr<Stream>> idle_;  // sessions waiting for their next request
  std::map<uint64_t, std::weak_ptr<Stream>> open_;  // every session, for eviction
};

absl::Status HttpsServer::Impl::ConfigureTls(ssl::context& context, const ApiConfig& identity) {
  SSL_CTX* ctx = context.native_handle();
  if (auto s = ApplyServerTlsPolicy(ctx); !s.ok()) return s;
  if (auto s = LoadServerIdentity(ctx, identity.cert_file, "api.cert_file", identity.key_file, "api.key_file"); !s.ok())
    return s;
  if (SSL_CTX_load_verify_locations(ctx, identity.client_ca_file.c_str(), nullptr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("api.client_ca_file: cannot load ", identity.client_ca_file.string(),
                                                   ": ", adcsc::pki::LastOpenSslError()));
  }
  // Tell clients which issuers we accept, so Java's key manager picks the right identity.
  STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(identity.client_ca_file.c_str());
  if (names == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("api.client_ca_file: no certificates in ", identity.client_ca_file.string()));
  }
  SSL_CTX_set_client_CA_list(ctx, names);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, AcceptAnyPresentedCertificate);
  SSL_CTX_set_cert_verify_callback(ctx, SkipHandshakeChainCheck, nullptr);
  // Resumption matters: Jamf Pro opens a new connection per request. Sessions are kept in
  // the server's cache (TLS 1.2 session IDs, TLS 1.3 stateful tickets) rather than in
  // stateless tickets, because resuming from a stateless ticket re-decodes the client
  // certificate from the ticket, and OpenSSL 3.0's decoder made that the most expensive
  // step of a resumed handshake (measured: ~30% of the node's CPU).
  SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof kSessionIdContext - 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, config_.session_cache_size);
  SSL_CTX_set_timeout(ctx, static_cast<long>(config_.session_timeout.count()));
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 1);
  return absl::OkStatus();
}

absl::Status HttpsServer::Impl::Reload(const ApiConfig& fresh, std::unique_ptr<const ClientAuthorizer> authorizer) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  if (auto s = ConfigureTls(*context, fresh); !s.ok()) return s;  // the running one stays
  std::lock_guard lock(tls_mu_);
  retired_contexts_.push_back(std::exchange(ssl_ctx_, std::move(context)));
  authorizer_.store(authorizer.get());
  reloaded_authorizers_.push_back(std::move(authorizer));
  return absl::OkStatus();
}

absl::Status HttpsServer::Impl::Start() {
  if (auto s = ConfigureTls(*ssl_ctx_, config_); !s.ok()) return s;
  beast::error_code ec;
  auto address = net::ip::make_address(config_.listen_address, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("api.listen: bad address \"", config_.listen_address, "\""));
  tcp::endpoint endpoint(address, config_.listen_port);
  acceptor_.emplace(ioc_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("api.listen: cannot listen on ", config_.listen_address, ":",
                                               config_.listen_port, ": ", ec.message(),
                                               " (is another process using the port?)"));
  }
  port_ = acceptor_->local_endpoint().port();
  unsigned workers =
      config_.worker_threads ? config_.worker_threads : 4 * std::max(1u, std::thread::hardware_concurrency());
  workers_ = std::make_unique<net::thread_pool>(workers);
  work_.emplace(ioc_.get_executor());
  net::co_spawn(acceptor_->get_executor(), AcceptLoop(), net::detached);
  for (unsigned i = 0; i < io_threads_count_; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        try {
          ioc_.run();
          return;
        } catch (const std::exception& e) {
          log_->Error("io_thread_exception", {{"error", e.what()}});
        }
      }
    });
  }
  return absl::OkStatus();
}

net::awaitable<void> HttpsServer::Impl::AcceptLoop() {
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await acceptor_->async_accept(net::make_strand(ioc_), net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (shutting_down_ || ec == net::error::operation_aborted) co_return;
      log_->Warn("accept_failed", {{"error", ec.message()}});
      net::steady_timer pause(acceptor_->get_executor(), kAcceptBackoff);
      co_await pause.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    const auto remote = socket.remote_endpoint(ec);
    if (ec) continue;  // already gone
    const uint64_t id = next_session_id_++;
    const ConnectionAdmission::Decision admit =
        admission_.Admit(id, ToAddress16(remote.address()), std::chrono::steady_clock::now());
    if (!admit.admitted) {
      // Closed before any TLS work: a refused source costs an accept and a close.
      counters_.connections_refused++;
      LogThrottled(LogLevel::kWarn, "connection_refused", admit.source,
                   {{"remote", remote.address().to_string()},
                    {"refusal", RefusalName(admit.refusal)},
                    {"reason", RefusalReason(admit.refusal)}});
      socket.close(ec);
      continue;
    }
    if (admit.evict != 0) Evict(admit.evict);
    socket.set_option(tcp::no_delay(true), ec);
    active_++;
    counters_.connections_accepted++;
    auto stream = std::make_shared<Stream>(std::move(socket), *CurrentContext());
    {
      std::lock_guard lock(mu_);
      open_[id] = stream;
    }
    net::co_spawn(stream->get_executor(), RunSession(stream, id), net::detached);
  }
}

void HttpsServer::Impl::ConnectionClosed(uint64_t id) {
  admission_.Closed(id);
  std::lock_guard lock(mu_);
  open_.erase(id);
  active_--;
  idle_cv_.notify_all();
}

void HttpsServer::Impl::Evict(uint64_t id) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(mu_);
    auto it = open_.find(id);
    if (it != open_.end()) stream = it->second.lock();
  }
  if (!stream) return;
  net::post(stream->get_executor(), [stream] { beast::get_lowest_layer(*stream).close(); });
}

void HttpsServer::Impl::LogThrottled(LogLevel level, std::string_view event, const std::string& source,
                                     nlohmann::json fields) {
  uint64_t suppressed = 0;
  if (!refusal_log_.ShouldLog(absl::StrCat(std::string(event), " ", source), &suppressed)) return;
  fields["suppressed"] = suppressed;
  log_->Log(level, event, std::move(fields));
}

void HttpsServer::Impl::Refuse(Refusal kind, const Endpoints& ep, std::string_view event, nlohmann::json fields) {
  admission_.Refused(ep.id, kind, std::chrono::steady_clock::now());
  fields["remote"] = ep.remote_ip;
  fields["refusal"] = RefusalName(kind);
  LogThrottled(LogLevel::kWarn, event, ep.source, std::move(fields));
}

net::awaitable<void> HttpsServer::Impl::RunSession(std::shared_ptr<Stream> stream, uint64_t id) {
  Endpoints ep;
  ep.id = id;
  {
    beast::error_code ec;
    auto& sock = beast::get_lowest_layer(*stream).socket();
    auto remote = sock.remote_endpoint(ec);
    if (!ec) {
      ep.remote_ip = remote.address().to_string();
      ep.source = text::SourceKey(ToAddress16(remote.address()));
    }
    auto local = sock.local_endpoint(ec);
    if (!ec) {
      ep.local_ip = local.address().to_string();
      ep.local_port = local.port();
    }
  }
  try {
    RegisterIdle(id, stream);  // a connection still in its handshake counts as idle for shutdown
    co_await Session(stream, id, ep);
  } catch (const std::exception& e) {
    log_->Error("session_exception", {{"remote", ep.remote_ip}, {"error", e.what()}});
  }
  UnregisterIdle(id);
  beast::error_code ec;
  beast::get_lowest_layer(*stream).socket().close(ec);
  ConnectionClosed(id);
}

void HttpsServer::Impl::RegisterIdle(uint64_t id, const std::shared_ptr<Stream>& stream) {
  std::lock_guard lock(mu_);
  idle_[id] = stream;
}

void HttpsServer::Impl::UnregisterIdle(uint64_t id) {
  std::lock_guard lock(mu_);
  idle_.erase(id);
}

void HttpsServer::Impl::WriteAccess(const Endpoints& ep, const AccessFacts& facts,
                                    std::chrono::steady_clock::time_point started) {
  if (access_log_ == nullptr) return;
  AccessEntry e;
  e.when = std::chrono::system_clock::now();
  e.server_ip = ep.local_ip;
  e.server_port = ep.local_port;
  e.client_ip = std::string(facts.client_ip.empty() ? std::string_view(ep.remote_ip) : facts.client_ip);
  e.method = std::string(facts.method);
  const size_t q = facts.target.find('?');
  e.uri_stem = std::string(facts.target.substr(0, q));
  if (q != std::string_view::npos) e.uri_query = std::string(facts.target.substr(q + 1));
  // A refused certificate names nobody: IIS logs "-" for it too.
  e.username = (facts.auth && facts.auth->ok && !facts.auth->subject.empty()) ? facts.auth->subject : "-";
  e.user_agent = std::string(facts.user_agent);
  e.referer = std::string(facts.referer);
  e.status = facts.status;
  e.substatus = facts.substatus;
  e.win32_status = facts.win32_status;
  e.time_taken_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  access_log_->Write(e);
}

absl::StatusOr<Caller> HttpsServer::Impl::ResolveRequestCaller(const http::request<http::string_body>& req,
                                                               const ClientAuthResult& tls_peer, const Endpoints& ep) {
  auto header = [&req](std::string_view name) -> std::string_view {
    auto it = req.find(beast::string_view(name.data(), name.size()));
    return it == req.end() ? std::string_view() : std::string_view(it->value().data(), it->value().size());
  };
  ForwardedHeaders forwarded{header(kForwardedAddrHeader), header(kForwardedPinHeader),
                             header(kForwardedSubjectHeader)};
  auto caller = ResolveCaller(tls_peer, ep.remote_ip, forwarded, trusted_proxy_pins_);
  if (caller.ok() && caller->forwarded_ignored) {
    // A balancer left out of api.trusted_proxy_pins sends these on every request: say so once
    // per interval per certificate, with the count of what was not said.
    LogThrottled(
        LogLevel::kWarn, "forwarded_identity_ignored", tls_peer.pin,
        {{"remote", ep.remote_ip},
         {"client_pin", tls_peer.pin},
         {"reason", "X-Adcsc-Client-* headers are believed only from a certificate in api.trusted_proxy_pins"}});
  }
  return caller;
}

net::awaitable<bool> HttpsServer::Impl::WriteError(Stream& stream, int status, std::string_view code,
                                                   std::string_view message, const Endpoints& ep,
                                                   std::string_view method, std::string_view path,
                                                   const ClientAuthResult* auth,
                                                   std::chrono::steady_clock::time_point started) {
  http::response<http::string_body> res{static_cast<http::status>(status), 11};
  res.set(http::field::server, "adcsc");
  SetSecurityHeaders(res);
  res.set(http::field::content_type, "application/json; charset=utf-8");
  res.keep_alive(false);
  res.body() = StatusOnlyJson(code, message);
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(config_.request_timeout);
  beast::error_code ec;
  co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
  AccessFacts facts;
  facts.method = method;
  facts.target = path;
  facts.auth = auth;
  facts.status = status;
  WriteAccess(ep, facts, started);
  co_return !ec;
}

net::awaitable<bool> HttpsServer::Impl::WriteTooLarge(Stream& stream, const http::request<http::string_body>& partial,
                                                      const Endpoints& ep, const ClientAuthResult* auth,
                                                      std::chrono::steady_clock::time_point started) {
  co_return co_await WriteError(stream, 413, "PAYLOAD_TOO_LARGE",
                                absl::StrCat("request body exceeds ", config_.max_body_bytes, " bytes"), ep,
                                std::string(partial.method_string()), std::string(partial.target()), auth, started);
}

// Starts a handler on the worker pool; the caller's coroutine resumes on its own strand.
static net::awaitable<ApiResponse> HandleOnWorker(ApiService* service, const ApiRequest* request) {
  co_return service->Handle(*request);
}

net::awaitable<std::optional<ClientAuthResult>> HttpsServer::Impl::Handshake(Stream& stream, uint64_t id,
                                                                             const Endpoints& ep) {
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(config_.handshake_timeout);
  co_await stream.async_handshake(ssl::stream_base::server, net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    counters_.handshake_failures++;
    admission_.Refused(id, Refusal::kHandshakeFailed, std::chrono::steady_clock::now());
    log_->Debug("tls_handshake_failed", {{"remote", ep.remote_ip}, {"error", ec.message()}});
    co_return std::nullopt;
  }
  if (SSL_session_reused(stream.native_handle())) counters_.handshakes_resumed++;
  ClientAuthResult auth = authorizer_.load()->AuthorizeSsl(stream.native_handle());
  if (auth.ok) {
    // Out of the shared pool; a connection evicted during its handshake ends here.
    if (!admission_.Mapped(id)) co_return std::nullopt;
  } else {
    // Charged now; the API logs the refusal (once per source per interval) and answers 403.
    admission_.Refused(id, Refusal::kUnmappedCertificate, std::chrono::steady_clock::now());
  }
  co_return auth;
}

net::awaitable<bool> HttpsServer::Impl::AwaitRequest(const std::shared_ptr<Stream>& stream, beast::flat_buffer& buffer,
                                                     const Endpoints& ep, bool first_request) {
  const uint64_t id = ep.id;
  // While stopping, a connection still gets to send its first request (Jamf Pro opens a
  // connection per request, so one that was just accepted carries a request in flight);
  // a kept-alive connection is closed instead of waiting for another.
  if (shutting_down_ && !first_request) co_return false;
  if (buffer.size() == 0) {
    // The header timeout applies to a new connection, the idle timeout between keep-alive
    // requests.
    auto& tcp_layer = beast::get_lowest_layer(*stream);
    auto wait = first_request ? config_.header_timeout : config_.idle_timeout;
    if (shutting_down_) wait = std::min<std::chrono::milliseconds>(wait, kShutdownIdleGrace);
    tcp_layer.expires_after(wait);
    RegisterIdle(id, stream);
    if (shutting_down_) {
      // Shutdown began between the check above and the registration, so it may have
      // missed this connection: apply its rule here.
      if (!first_request) co_return false;
      tcp_layer.expires_after(std::min<std::chrono::milliseconds>(wait, kShutdownIdleGrace));
    }
    beast::error_code ec;
    auto got =
        co_await stream->async_read_some(buffer.prepare(kReadChunk), net::redirect_error(net::use_awaitable, ec));
    if (ec == beast::error::timeout && first_request && !shutting_down_) {
      // Connected, shook hands and sent nothing: the way to hold a connection open for free.
      counters_.header_timeouts++;
      Refuse(Refusal::kSlowClient, ep, "slow_client", {{"reason", "no request within api.header_timeout_ms"}});
    }
    if (ec) co_return false;  // closed, idle timeout, or shutdown cancelled the wait
    buffer.commit(got);
  }
  UnregisterIdle(id);
  co_return true;
}

net::awaitable<HttpsServer::Impl::ReadOutcome> HttpsServer::Impl::ReadRequest(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::string_body>& parser,
    const ClientAuthResult& auth, const Endpoints& ep, std::chrono::steady_clock::time_point started) {
  auto& tcp_layer = beast::get_lowest_layer(stream);
  beast::error_code ec;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(config_.max_body_bytes);
  tcp_layer.expires_after(config_.header_timeout);
  co_await http::async_read_header(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
  if (ec == beast::error::timeout) {
    counters_.header_timeouts++;
    Refuse(Refusal::kSlowClient, ep, "slow_client",
           {{"reason", "request headers not complete within api.header_timeout_ms"}});
    co_return ReadOutcome::kDrop;
  }
  if (ec == http::error::header_limit) {
    co_await WriteError(stream, 431, "HEADERS_TOO_LARGE", "request headers exceed 16 KiB", ep, "-", "-", &auth,
                        started);
    co_return ReadOutcome::kClose;
  }
  if (ec == http::error::body_limit) {
    co_await WriteTooLarge(stream, parser.get(), ep, &auth, started);
    co_return ReadOutcome::kClose;
  }
  if (ec) {
    if (ec != http::error::end_of_stream && ec != net::error::eof && ec != ssl::error::stream_truncated &&
        ec != net::error::operation_aborted) {
      co_await WriteError(stream, 400, "BAD_REQUEST", absl::StrCat("malformed HTTP request: ", ec.message()), ep, "-",
                          "-", &auth, started);
    }
    co_return ReadOutcome::kClose;
  }
  // A refused client gets its 403 and nothing more: no invitation to send a body it
  // announced with Expect: 100-continue (it must not send it then; RFC 9110 10.1.1), and the
  // connection closes after the answer.
  const bool refused = !auth.ok;
  const bool expects_continue = http::token_list{parser.get()[http::field::expect]}.exists("100-continue");
  if (expects_continue && !refused) {
    http::response<http::empty_body> cont{http::status::continue_, 11};
    co_await http::async_write(stream, cont, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return ReadOutcome::kClose;
  }
  tcp_layer.expires_after(config_.request_timeout);
  if (!parser.is_done() && !(refused && expects_continue)) {
    co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
  }
  if (ec == http::error::body_limit) {
    co_await WriteTooLarge(stream, parser.get(), ep, &auth, started);
    co_return ReadOutcome::kClose;
  }
  if (ec) {
    if (ec == beast::error::timeout) {
      Refuse(Refusal::kSlowClient, ep, "slow_client",
             {{"reason", "request body not complete within api.request_timeout_ms"}});
    }
    co_return ReadOutcome::kClose;
  }
  counters_.requests++;
  co_return ReadOutcome::kRequest;
}

net::awaitable<bool> HttpsServer::Impl::Respond(Stream& stream, const http::request<http::string_body>& req,
                                                const ClientAuthResult& auth, const Endpoints& ep,
                                                std::chrono::steady_clock::time_point started) {
  const std::string user_agent(req[http::field::user_agent]);
  auto caller = ResolveRequestCaller(req, auth, ep);
  if (!caller.ok()) {
    log_->Warn("bad_forwarded_identity", {{"remote", ep.remote_ip}, {"error", std::string(caller.status().message())}});
    co_await WriteError(stream, 400, "BAD_REQUEST", std::string(caller.status().message()), ep, req.method_string(),
                        req.target(), &auth, started);
    co_return false;
  }
  ApiRequest api;
  api.method = req.method_string();
  api.target = req.target();
  api.body = req.body();
  api.user_agent = user_agent;
  api.remote = caller->remote;
  api.auth = &caller->auth;
  api.proxy_pin = caller->proxy_pin;
  for (const auto& field : req) api.header_names.push_back(field.name_string());
  ApiResponse answer =
      co_await net::co_spawn(workers_->get_executor(), HandleOnWorker(service_, &api), net::use_awaitable);

  http::response<http::string_body> res{static_cast<http::status>(answer.status), req.version()};
  res.set(http::field::server, "adcsc");
  SetSecurityHeaders(res);
  res.set(http::field::content_type, "application/json; charset=utf-8");
  if (!answer.allow.empty()) res.set(http::field::allow, answer.allow);
  if (!answer.node.empty()) res.set("X-Adcsc-Node", answer.node);
  res.keep_alive(req.keep_alive() && !shutting_down_ && !answer.close_connection);
  res.body() = std::move(answer.body);
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(config_.request_timeout);
  beast::error_code ec;
  co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
  AccessFacts facts;
  facts.method = req.method_string();
  facts.target = req.target();
  facts.user_agent = user_agent;
  facts.referer = req[http::field::referer];
  facts.auth = &caller->auth;
  facts.client_ip = caller->remote;
  facts.status = answer.status;
  facts.substatus = answer.iis_substatus;
  facts.win32_status = answer.win32_status;
  WriteAccess(ep, facts, started);
  co_return !ec && res.keep_alive();
}

// One connection: the handshake and its client-certificate decision, then requests until the
// client or a limit ends it, then the TLS close.
net::awaitable<void> HttpsServer::Impl::Session(std::shared_ptr<Stream> stream_ptr, uint64_t id, const Endpoints& ep) {
  Stream& stream = *stream_ptr;
  const std::optional<ClientAuthResult> auth = co_await Handshake(stream, id, ep);
  if (!auth.has_value()) co_return;
  beast::flat_buffer buffer;
  for (bool first_request = true;; first_request = false) {
    if (!co_await AwaitRequest(stream_ptr, buffer, ep, first_request)) break;
    const auto started = std::chrono::steady_clock::now();
    http::request_parser<http::string_body> parser;
    const ReadOutcome read = co_await ReadRequest(stream, buffer, parser, *auth, ep, started);
    if (read == ReadOutcome::kDrop) co_return;  // the timer closed the socket already
    if (read == ReadOutcome::kClose) break;
    const http::request<http::string_body> req = parser.release();
    if (!co_await Respond(stream, req, *auth, ep, started)) break;
  }
  // A refused client has had its answer: no waiting for its close_notify.
  if (!auth->ok) co_return;
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(kTlsShutdownTimeout);
  co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
}

void HttpsServer::Impl::BeginShutdown() {
  if (shutting_down_.exchange(true)) return;
  net::post(acceptor_->get_executor(), [this] {
    beast::error_code ec;
    acceptor_->close(ec);
  });
  // Connections mid-request finish it and close. Connections waiting for a request get
  // kShutdownIdleGrace to send one (a client that connected just before the signal is
  // usually about to: Jamf Pro opens a connection per request), then they are closed.
  std::map<uint64_t, std::weak_ptr<Stream>> idle;
  {
    std::lock_guard lock(mu_);
    idle = idle_;
  }
  for (auto& [id, weak] : idle) {
    auto stream = weak.lock();
    if (!stream) continue;
    auto timer = std::make_shared<net::steady_timer>(stream->get_executor(), kShutdownIdleGrace);
    timer->async_wait([this, id, timer, weak = std::weak_ptr<Stream>(stream)](beast::error_code) {
      auto s = weak.lock();
      if (!s) return;
      bool still_idle;
      {
        std::lock_guard lock(mu_);
        still_idle = idle_.count(id) != 0;
      }
      if (still_idle) beast::get_lowest_layer(*s).cancel();
    });
  }
}

bool HttpsServer::Impl::WaitIdle(std::chrono::milliseconds grace) {
  std::unique_lock lock(mu_);
  return idle_cv_.wait_for(lock, grace, [this] { return active_.load() == 0; });
}

void HttpsServer::Impl::Stop() {
  shutting_down_ = true;
  work_.reset();
  ioc_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  if (workers_) {
    workers_->join();
    workers_.reset();
  }
}

HttpsServer::HttpsServer(const ApiConfig& config, ApiService* service, const ClientAuthorizer* authorizer,
                         EventLog* log, AccessLog* access_log)
    : impl_(std::make_unique<Impl>(config, service, authorizer, log, access_log)) {}
HttpsServer::~HttpsServer() = default;
absl::Status HttpsServer::Start() { return impl_->Start(); }
std::vector<ClientAuthorizer::Seen> HttpsServer::SeenClientCertificates() const { return impl_->SeenClients(); }
absl::Status HttpsServer::ReloadIdentity(const ApiConfig& fresh, std::unique_ptr<const ClientAuthorizer> authorizer) {
  return impl_->Reload(fresh, std::move(authorizer));
}
uint16_t HttpsServer::port() const { return impl_->port_; }
void HttpsServer::BeginShutdown() { impl_->BeginShutdown(); }
bool HttpsServer::WaitIdle(std::chrono::milliseconds grace) { return impl_->WaitIdle(grace); }
void HttpsServer::Stop() { impl_->Stop(); }
size_t HttpsServer::active_connections() const { return impl_->active_.load(); }
const ServerCounters& HttpsServer::counters() const { return impl_->counters_; }
uint64_t HttpsServer::refusals(Refusal kind) const { return impl_->admission_.refusals(kind); }

}  // namespace adcsc::node
