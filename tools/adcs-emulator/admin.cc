#include "tools/adcs-emulator/admin.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "node/ca/hresult.h"
#include "node/dcom/csra_stub.h"

namespace adcsc::emulator {
namespace {

using Json = nlohmann::ordered_json;

std::string DispositionName(adcsc::ca::Disposition d) {
  switch (d) {
    case adcsc::ca::Disposition::kIssued:
      return "issued";
    case adcsc::ca::Disposition::kUnderSubmission:
      return "pending";
    case adcsc::ca::Disposition::kDenied:
      return "denied";
    case adcsc::ca::Disposition::kRevoked:
      return "revoked";
    default:
      return "error";
  }
}

std::string Error(absl::string_view what) { return Json{{"ok", false}, {"error", std::string(what)}}.dump(); }

absl::StatusOr<sockaddr_un> Address(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": socket path too long (max ", sizeof addr.sun_path - 1, " bytes)"));
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

}  // namespace

std::string RunAdminCommand(Emulator& emulator, const std::string& command) {
  std::vector<std::string> words = absl::StrSplit(command, ' ', absl::SkipEmpty());
  if (words.empty()) return Error("empty command");
  const std::string& verb = words[0];
  if ((verb == "approve" || verb == "deny") && words.size() == 2) {
    uint32_t id = 0;
    if (!absl::SimpleAtoi(words[1], &id) || id == 0) return Error("request ID must be a positive integer");
    auto r = verb == "approve" ? emulator.ca().Approve(id) : emulator.ca().Deny(id);
    if (!r.ok()) return Error(r.status().message());
    return Json{{"ok", true}, {"request_id", id}, {"disposition", DispositionName(r->disposition)}}.dump();
  }
  if (verb == "list" && words.size() == 1) {
    // Every request, in pages (the CA engine lists at most 10,000 at a time): a drill counts
    // duplicates on this list, and a truncated one would hide them.
    std::vector<adcsc::ca::LocalCaRequest> all;
    for (uint32_t after = 0;;) {
      auto page = emulator.ca().List(after);
      if (!page.ok()) return Error(page.status().message());
      if (page->empty()) break;
      after = page->back().request_id;
      all.insert(all.end(), std::make_move_iterator(page->begin()), std::make_move_iterator(page->end()));
    }
    Json list = Json::array();
    for (const auto& row : all) {
      list.push_back({{"request_id", row.request_id},
                      {"requester", row.requester},
                      {"template", row.template_name},
                      {"subject", row.subject},
                      {"disposition", DispositionName(row.disposition)},
                      {"hresult", row.hresult == 0 ? "" : adcsc::ca::FormatHresult(row.hresult)},
                      {"serial", row.serial_hex}});
      if (row.revocation_reason) {
        list.back()["revocation_reason"] = std::string(dcom::CrlReasonName(*row.revocation_reason));
        list.back()["revoked_unix_millis"] = row.revoked_unix_millis;
      }
    }
    return Json{{"ok", true}, {"requests", list}}.dump();
  }
  if (verb == "stats" && words.size() == 1) {
    const EmulatorStats s = emulator.stats();
    const Faults f = emulator.faults();
    auto count = emulator.ca().RequestCount();
    return Json{{"ok", true},
                {"connections", s.connections},
                {"calls", s.calls},
                {"submits", s.submits},
                {"retrieves", s.retrieves},
                {"refused_calls", s.refused_calls},
                {"dropped_calls", s.dropped_calls},
                {"lost_answers", s.lost_answers},
                {"failed_logons", s.failed_logons},
                {"ntlm_calls", s.ntlm_calls},
                {"kerberos_calls", s.kerberos_calls},
                {"admin_calls", s.admin_calls},
                {"admin_refused", s.admin_refused},
                {"ca_requests", count.ok() ? *count : 0},
                {"latency_ms", f.latency.count()},
                {"logon_latency_ms", f.logon_latency.count()},
                {"failure_rate", f.failure_rate},
                {"refuse_connections", f.refuse_connections},
                {"fault_after_accept", f.fault_after_accept},
                {"drop_after_accept", f.drop_after_accept},
                {"drop_admin_after_apply", f.drop_admin_after_apply}}
        .dump();
  }
  if (verb == "set" && words.size() == 3) {
    Faults f = emulator.faults();
    const std::string& key = words[1];
    const std::string& value = words[2];
    if (key == "latency_ms" || key == "logon_latency_ms" || key == "submit_reply_latency_ms") {
      int64_t ms = 0;
      if (!absl::SimpleAtoi(value, &ms) || ms < 0 || ms > 600'000) return Error(key + ": 0 to 600000");
      (key == "latency_ms"         ? f.latency
       : key == "logon_latency_ms" ? f.logon_latency
                                   : f.submit_reply_latency) = std::chrono::milliseconds(ms);
    } else if (key == "failure_rate") {
      double rate = 0;
      if (!absl::SimpleAtod(value, &rate) || rate < 0 || rate > 1) return Error("failure_rate: a number from 0 to 1");
      f.failure_rate = rate;
    } else if (key == "fault_after_accept" || key == "drop_after_accept" || key == "drop_admin_after_apply") {
      int n = 0;
      if (!absl::SimpleAtoi(value, &n) || n < 0 || n > 1'000'000) return Error(key + ": a count from 0 to 1000000");
      (key == "fault_after_accept"  ? f.fault_after_accept
       : key == "drop_after_accept" ? f.drop_after_accept
                                    : f.drop_admin_after_apply) = n;
    } else if (key == "refuse_connections") {
      if (value != "true" && value != "false") return Error("refuse_connections: true or false");
      f.refuse_connections = value == "true";
    } else {
      return Error(
          absl::StrCat("unknown setting \"", key,
                       "\" (latency_ms, logon_latency_ms, submit_reply_latency_ms, failure_rate, refuse_connections, "
                       "fault_after_accept, drop_after_accept, drop_admin_after_apply)"));
    }
    emulator.set_faults(f);
    return Json{{"ok", true}}.dump();
  }
  return Error(absl::StrCat("unknown command \"", command,
                            "\" (approve N, deny N, list, stats, set "
                            "latency_ms|logon_latency_ms|submit_reply_latency_ms|failure_rate|refuse_connections|"
                            "fault_after_accept|drop_after_accept|drop_admin_after_apply VALUE)"));
}

absl::StatusOr<std::unique_ptr<AdminServer>> AdminServer::Start(Emulator& emulator, const std::filesystem::path& path) {
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  ::unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  const mode_t old_mask = umask(0177);  // the socket is created 0600
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  umask(old_mask);
  if (bound != 0 || listen(fd, 16) != 0) {
    const int e = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", path.string(), ": ", std::strerror(e)));
  }
  int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  return std::unique_ptr<AdminServer>(new AdminServer(emulator, fd, wake, path));
}

AdminServer::AdminServer(Emulator& emulator, int fd, int wake_fd, std::filesystem::path path)
    : emulator_(emulator), fd_(fd), wake_fd_(wake_fd), path_(std::move(path)) {
  thread_ = std::thread([this] { Loop(); });
}

AdminServer::~AdminServer() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof one);
  thread_.join();
  close(fd_);
  close(wake_fd_);
  ::unlink(path_.c_str());
}

void AdminServer::Loop() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    // One short command line; a client that sends nothing for a second is dropped.
    std::string command;
    char buf[512];
    pollfd in{c, POLLIN, 0};
    while (command.find('\n') == std::string::npos && command.size() < 4096 && poll(&in, 1, 1000) > 0) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      command.append(buf, static_cast<size_t>(n));
    }
    std::string line(absl::StripAsciiWhitespace(command.substr(0, command.find('\n'))));
    std::string reply = RunAdminCommand(emulator_, line) + "\n";
    [[maybe_unused]] ssize_t w = write(c, reply.data(), reply.size());
    close(c);
  }
}

absl::StatusOr<std::string> SendAdminCommand(const std::filesystem::path& path, const std::string& command) {
  auto addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    const int e = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", path.string(), ": ", std::strerror(e), " (is the emulator running?)"));
  }
  const std::string line = command + "\n";
  [[maybe_unused]] ssize_t w = write(fd, line.data(), line.size());
  std::string reply;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return std::string(absl::StripAsciiWhitespace(reply));
}

}  // namespace adcsc::emulator
