#include "node/ops/ops_server.h"

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "node/http/security_headers.h"
#include "node/http/tls_settings.h"
#include "node/ops/status_page.h"

namespace adcsc::ops {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// A health check sends a line and a few headers; anything bigger is not one.
constexpr uint32_t kMaxRequestBytes = 8 * 1024;
// An admin request's body is one small JSON object.
constexpr uint64_t kMaxBodyBytes = 2048;
// CA administration calls (POST /admin/ca) run on this many threads, off the ops thread.
constexpr int kCaAdminWorkers = 2;
// A load balancer's check gets its answer at once; a client that dawdles is dropped.
constexpr std::chrono::seconds kRequestTimeout{5};

struct Answer {
  http::status status = http::status::ok;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

Answer Json(http::status status, std::string body) { return {status, "application/json", std::move(body)}; }

// Every refusal reads the same, whatever the reason (no certificate, untrusted, not pinned,
// expired, the channel off): the reason goes to the node's log, not to the caller.
Answer Forbidden() { return Json(http::status::forbidden, R"({"error":"forbidden"})"); }

// Who is calling: an administrator (a client certificate the admin authorizer accepts) or
// anyone else, with the reason it is not an administrator.
struct Caller {
  bool admin = false;
  std::string pin;     // the administrator's certificate pin
  std::string reason;  // why not an administrator (for the log)
};

}  // namespace

class OpsServer::Impl {
 public:
  Impl(OpsServerOptions options, HealthMonitor* monitor) : options_(std::move(options)), monitor_(monitor) {}
  ~Impl() { Stop(); }

  absl::Status Start() {
    if (options_.tls) {
      auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
      if (absl::Status s = ConfigureTls(*context, options_.cert_file, options_.key_file); !s.ok()) return s;
      ssl_ctx_ = std::move(context);
    }
    beast::error_code ec;
    const auto address = net::ip::make_address(options_.listen_address, ec);
    if (ec)
      return absl::InvalidArgumentError(
          absl::StrCat("ops.listen: \"", options_.listen_address, "\" is not an IP address"));
    acceptor_.emplace(ioc_);
    const tcp::endpoint endpoint(address, options_.listen_port);
    acceptor_->open(endpoint.protocol(), ec);
    if (!ec) acceptor_->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_->bind(endpoint, ec);
    if (!ec) acceptor_->listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("ops.listen: cannot listen on ", options_.listen_address, ":",
                                                 options_.listen_port, ": ", ec.message()));
    }
    port_ = acceptor_->local_endpoint().port();
    net::co_spawn(ioc_, AcceptLoop(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  void Stop() {
    if (!thread_.joinable()) return;
    net::post(ioc_, [this] {
      beast::error_code ignored;
      if (acceptor_) acceptor_->close(ignored);
    });
    ioc_.stop();
    thread_.join();
    workers_.stop();
    workers_.join();
  }

  // New connections get the identity in `cert_file`/`key_file` and are judged by `admin`
  // (null: the admin channel is off); connections already open keep what they had.
  absl::Status Reload(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                      std::unique_ptr<const node::ClientAuthorizer> admin) {
    std::shared_ptr<ssl::context> context;
    if (options_.tls) {
      context = std::make_shared<ssl::context>(ssl::context::tls_server);
      if (absl::Status s = ConfigureTls(*context, cert_file, key_file); !s.ok()) return s;  // the running one stays
    }
    std::lock_guard lock(reload_mu_);
    if (context != nullptr) retired_contexts_.push_back(std::exchange(ssl_ctx_, std::move(context)));
    admin_.store(admin.get());
    if (admin != nullptr) reloaded_admins_.push_back(std::move(admin));
    return absl::OkStatus();
  }

  uint16_t port_ = 0;
  std::atomic<size_t> open_{0};
  std::atomic<uint64_t> refused_{0};

 private:
  // The protocol policy, the identity and client-certificate requests for the ops port. A
  // client certificate is asked for without being required (load-balancer checks send none)
  // and never judged in the handshake: the admin authorizer judges it afterwards, so a reload
  // can turn the admin channel on without a new listener.
  static absl::Status ConfigureTls(ssl::context& context, const std::filesystem::path& cert_file,
                                   const std::filesystem::path& key_file) {
    SSL_CTX* ctx = context.native_handle();
    if (absl::Status policy = node::ApplyServerTlsPolicy(ctx); !policy.ok()) return policy;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, [](int, X509_STORE_CTX*) { return 1; });
    // No chain building in the handshake (the authorizer checks it, serialized): see
    // https_server.cc on OpenSSL 3.0's racing name caches.
    SSL_CTX_set_cert_verify_callback(
        ctx, [](X509_STORE_CTX*, void*) { return 1; }, nullptr);
    // Resumed sessions stay with this listener (and its client-certificate decision).
    static constexpr unsigned char kContext[] = "adcsc-ops";
    SSL_CTX_set_session_id_context(ctx, kContext, sizeof kContext - 1);
    return node::LoadServerIdentity(ctx, cert_file, "ops.cert_file", key_file, "ops.key_file");
  }

  std::shared_ptr<ssl::context> CurrentContext() {
    std::lock_guard lock(reload_mu_);
    return ssl_ctx_;
  }

  // Holds one of max_connections while a connection is served.
  class Slot {
   public:
    explicit Slot(std::atomic<size_t>* open) : open_(open) {}
    ~Slot() { open_->fetch_sub(1); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    std::atomic<size_t>* open_;
  };

  net::awaitable<void> AcceptLoop() {
    while (acceptor_->is_open()) {
      beast::error_code ec;
      tcp::socket socket = co_await acceptor_->async_accept(net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        if (!acceptor_->is_open()) co_return;
        continue;
      }
      // Over the cap the connection is closed before its handshake: a flood of connections
      // cannot take the node's descriptors or memory, and checks still get through once it ends.
      if (open_.load() >= options_.max_connections) {
        refused_++;
        socket.close(ec);
        continue;
      }
      open_++;
      auto slot = std::make_shared<Slot>(&open_);
      if (options_.tls) {
        auto stream = std::make_shared<beast::ssl_stream<beast::tcp_stream>>(std::move(socket), *CurrentContext());
        net::co_spawn(ioc_, ServeTls(stream, slot), net::detached);
      } else {
        auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
        net::co_spawn(ioc_, Serve(stream, *stream, nullptr, slot), net::detached);
      }
    }
  }

  net::awaitable<void> ServeTls(std::shared_ptr<beast::ssl_stream<beast::tcp_stream>> stream,
                                std::shared_ptr<Slot> slot) {
    beast::error_code ec;
    beast::get_lowest_layer(*stream).expires_after(kRequestTimeout);
    co_await stream->async_handshake(ssl::stream_base::server, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    co_await Serve(stream, *stream, stream->native_handle(), std::move(slot));
  }

  // One request, one answer, then the connection closes. `keep` holds the stream alive and
  // `slot` its place under max_connections. The caller is judged once the headers are in: a
  // refused admin request is answered without an invitation to send its body (Expect:
  // 100-continue; RFC 9110 10.1.1), an accepted one gets the invitation, then its body is read.
  template <typename Stream>
  net::awaitable<void> Serve(std::shared_ptr<Stream> keep, Stream& stream, SSL* ssl, std::shared_ptr<Slot> slot) {
    beast::error_code ec;
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    parser.header_limit(kMaxRequestBytes);
    parser.body_limit(kMaxBodyBytes);
    co_await http::async_read_header(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
    Answer a;
    if (ec) {
      a = Json(http::status::bad_request, R"({"error":"malformed or oversized request"})");
    } else {
      const std::string path = PathOf(parser.get());
      const bool admin_path = path == "/admin/mode" || path == "/admin/ca" || (path == "/" && options_.status_page);
      // Only these two answer differently for an administrator; a health check is not judged.
      const Caller caller = admin_path || path == "/status" ? Identify(ssl) : Caller{};
      const bool refused = admin_path && !caller.admin;
      const bool expects_continue = http::token_list{parser.get()[http::field::expect]}.exists("100-continue");
      if (refused && options_.on_refused) options_.on_refused(RemoteOf(stream), path, caller.reason);
      if (expects_continue && !refused) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        co_await http::async_write(stream, cont, net::redirect_error(net::use_awaitable, ec));
      }
      // A body announced with Expect: 100-continue is not sent to a refused caller; any other
      // (at most kMaxBodyBytes) is read, so the answer is not lost to a reset on close.
      if (!ec && !parser.is_done() && !(refused && expects_continue)) {
        co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
      }
      if (refused) {
        a = Forbidden();  // whatever its body was
      } else if (ec) {
        a = Json(http::status::bad_request, R"({"error":"malformed or oversized request"})");
      } else if (path == "/" && options_.status_page &&
                 (parser.get().method() == http::verb::get || parser.get().method() == http::verb::head)) {
        // The peers are asked for their state: on a worker, as a CA administration call.
        std::string html;
        html = co_await net::co_spawn(workers_.get_executor(), RenderJob(options_.status_page), net::use_awaitable);
        a = {http::status::ok, "text/html; charset=utf-8", std::move(html)};
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
      } else if (path == "/admin/ca" && options_.on_ca_admin && parser.get().method() == http::verb::post) {
        // Seconds of CA calls: on a worker, while this thread keeps answering health checks.
        // (Plain variables and a coroutine function with by-value parameters: GCC 12
        // destroys a structured binding or a lambda's captures initialised by co_await twice.)
        std::pair<int, std::string> result;
        result = co_await net::co_spawn(workers_.get_executor(),
                                        RunCaAdminJob(options_.on_ca_admin, parser.get().body(), caller.pin),
                                        net::use_awaitable);
        a = Json(static_cast<http::status>(result.first), std::move(result.second));
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);  // the answer's own time
      } else {
        a = Route(parser.get(), path, caller);
      }
    }
    http::response<http::string_body> res{a.status, 11};
    res.set(http::field::content_type, a.content_type);
    // HSTS only where the port is TLS: a plain-HTTP ops port is not upgraded by a header.
    if (ssl != nullptr) {
      node::SetSecurityHeaders(res);
      // The status page's own stylesheet, allowed by its hash; nothing else loads.
      if (absl::StartsWith(a.content_type, "text/html")) res.set("Content-Security-Policy", StatusPageCsp());
    } else {
      res.set(http::field::cache_control, "no-store");
      res.set("X-Content-Type-Options", "nosniff");
    }
    res.keep_alive(false);
    res.body() = std::move(a.body);
    res.prepare_payload();
    co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
    if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
      co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
    } else {
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    (void)keep;
    (void)slot;
  }

  // The status page on a worker thread.
  static net::awaitable<std::string> RenderJob(std::function<std::string()> render) { co_return render(); }

  // One POST /admin/ca on a worker thread; everything it needs is copied into its frame.
  static net::awaitable<std::pair<int, std::string>> RunCaAdminJob(
      std::function<std::pair<int, std::string>(const std::string&, const std::string&)> run, std::string body,
      std::string pin) {
    co_return run(body, pin);
  }

  static std::string PathOf(const http::request<http::string_body>& req) {
    std::string path(req.target());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    return path;
  }

  template <typename Stream>
  static std::string RemoteOf(Stream& stream) {
    beast::error_code ec;
    const auto remote = beast::get_lowest_layer(stream).socket().remote_endpoint(ec);
    return ec ? std::string("-") : remote.address().to_string();
  }

  // An administrator is a TLS caller whose certificate the admin authorizer accepts.
  Caller Identify(SSL* ssl) const {
    Caller c;
    const node::ClientAuthorizer* admin = admin_.load();
    if (admin == nullptr) {
      c.reason = "the admin channel is off on this node (ops.admin_ca_file and ops.admin_pins are not set)";
    } else if (ssl == nullptr) {
      c.reason = "the admin channel needs TLS (ops.tls = true)";
    } else {
      const node::ClientAuthResult auth = admin->AuthorizeSsl(ssl);
      c.admin = auth.ok;
      c.pin = auth.pin;
      c.reason = auth.reason;
    }
    return c;
  }

  Answer Route(const http::request<http::string_body>& req, const std::string& path, const Caller& caller) {
    if (path == "/admin/mode") return Admin(req, caller);
    const bool known = path == "/health/live" || path == "/health/ready" || path == "/health/lb" || path == "/status" ||
                       (path == "/metrics" && options_.metrics);
    if (!known) {
      return Json(
          http::status::not_found,
          nlohmann::json{{"error", "no such endpoint on the ops port: " + path +
                                       " (it serves /health/live, /health/ready, /health/lb, /status, /metrics "
                                       "and, for administrators, the status page at /; the API is on the API port)"}}
              .dump());
    }
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return Json(http::status::method_not_allowed, R"({"error":"only GET"})");
    }
    if (path == "/health/live") return {http::status::ok, "text/plain; charset=utf-8", "LIVE\n"};
    if (path == "/metrics") return {http::status::ok, "text/plain; version=0.0.4; charset=utf-8", options_.metrics()};
    const HealthReport report = monitor_->Report();
    if (path == "/health/ready") {
      return Json(report.ready ? http::status::ok : http::status::service_unavailable, report.ToJson());
    }
    if (path == "/health/lb") {
      return {report.lb == LbState::kUp ? http::status::ok : http::status::service_unavailable,
              "text/plain; charset=utf-8", std::string(LbWord(report.lb)) + "\n"};
    }
    return Json(http::status::ok, StatusJson(report, caller.admin));
  }

  // /status: health for anyone; who this node is, what it talks to and its peers only for an
  // administrator.
  std::string StatusJson(const HealthReport& report, bool admin) const {
    nlohmann::ordered_json status;
    status["status"] = std::string(LbWord(report.lb));
    status["ready"] = report.ready;
    status["live"] = true;
    status["mode"] = std::string(ModeName(monitor_->mode().mode()));
    status["ca_ping_ms"] = report.ca_ping_ms;
    if (!admin) return status.dump();
    status["node"] = options_.node_id;
    status["version"] = options_.version;
    status["health"] = nlohmann::ordered_json::parse(report.ToJson());
    if (options_.status_extra) {
      const auto extra = nlohmann::ordered_json::parse(options_.status_extra(), nullptr, /*allow_exceptions=*/false);
      if (extra.is_object()) {
        for (const auto& [key, value] : extra.items()) status[key] = value;
      }
    }
    return status.dump();
  }

  // POST /admin/mode {"mode": "..."}: the service mode, set by an authorized administrator.
  Answer Admin(const http::request<http::string_body>& req, const Caller& caller) {
    if (req.method() != http::verb::post) return Json(http::status::method_not_allowed, R"({"error":"only POST"})");
    const auto body = nlohmann::json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("mode") || !body["mode"].is_string()) {
      return Json(http::status::bad_request,
                  nlohmann::json{{"error", "expected {\"mode\": \"active\" | \"drain\" | \"maint\"}"}}.dump());
    }
    auto mode = ParseMode(body["mode"].get<std::string>());
    if (!mode.ok())
      return Json(http::status::bad_request, nlohmann::json{{"error", std::string(mode.status().message())}}.dump());
    if (absl::Status s = monitor_->mode().Set(*mode); !s.ok()) {
      return Json(http::status::internal_server_error, nlohmann::json{{"error", std::string(s.message())}}.dump());
    }
    if (options_.on_mode_change) options_.on_mode_change(*mode, caller.pin);
    const HealthReport report = monitor_->Report();
    return Json(http::status::ok, nlohmann::json{{"node", options_.node_id},
                                                 {"mode", std::string(ModeName(*mode))},
                                                 {"lb", std::string(LbWord(report.lb))}}
                                      .dump());
  }

  const OpsServerOptions options_;
  HealthMonitor* monitor_;
  net::io_context ioc_{1};
  std::atomic<const node::ClientAuthorizer*> admin_{options_.admin};
  std::mutex reload_mu_;  // guards ssl_ctx_ and what reloads retired
  std::shared_ptr<ssl::context> ssl_ctx_;
  // What reloads replaced, kept for the node's life: connections accepted before a reload
  // still use them (a reload is an operator's action: a handful per year).
  std::vector<std::shared_ptr<ssl::context>> retired_contexts_;
  std::vector<std::unique_ptr<const node::ClientAuthorizer>> reloaded_admins_;
  std::optional<tcp::acceptor> acceptor_;
  std::thread thread_;
  net::thread_pool workers_{kCaAdminWorkers};
};

OpsServer::OpsServer(OpsServerOptions options, HealthMonitor* monitor)
    : impl_(std::make_unique<Impl>(std::move(options), monitor)) {}
OpsServer::~OpsServer() = default;
absl::Status OpsServer::Start() { return impl_->Start(); }
uint16_t OpsServer::port() const { return impl_->port_; }
void OpsServer::Stop() { impl_->Stop(); }
absl::Status OpsServer::Reload(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                               std::unique_ptr<const node::ClientAuthorizer> admin) {
  return impl_->Reload(cert_file, key_file, std::move(admin));
}
size_t OpsServer::open_connections() const { return impl_->open_.load(); }
uint64_t OpsServer::refused_connections() const { return impl_->refused_.load(); }

}  // namespace adcsc::ops
