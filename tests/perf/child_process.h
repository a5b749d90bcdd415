// A child process for benchmarks: started with fork+exec, optionally driven over its stdin and
// stdout one line at a time, and killed (SIGKILL, then reaped) when the object is destroyed.
// The child also gets PR_SET_PDEATHSIG=SIGKILL, so it dies with the benchmark even if the
// benchmark itself is killed; KillAll() is for a signal handler thread. Thread-safety: one
// owner thread per object; KillAll from any thread.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace adcsc::bench {

class ChildProcess {
 public:
  // Starts argv[0] (a path, not searched) with argv. With `pipes`, its stdin and stdout are
  // pipes to us (SendLine / ReadLine); otherwise stdin is /dev/null and stdout goes where
  // stderr goes. stderr is appended to `stderr_path` (empty: inherited).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(const std::vector<std::string>& argv, bool pipes,
                                                             const std::filesystem::path& stderr_path) {
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
    if (pipes && (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0)) {
      return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
    }
    int err_fd = -1;
    if (!stderr_path.empty()) {
      err_fd = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (err_fd < 0)
        return absl::InternalError(absl::StrCat("open ", stderr_path.string(), ": ", std::strerror(errno)));
    }
    // Everything the child needs is prepared before fork: after it, only async-signal-safe
    // calls (the benchmark has other threads).
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    if (pid == 0) {
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);  // the benchmark blocks some for its handler thread
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      int devnull = open("/dev/null", O_RDWR);
      dup2(pipes ? to_child[0] : devnull, 0);
      if (err_fd >= 0) dup2(err_fd, 2);
      dup2(pipes ? from_child[1] : 2, 1);
      execv(args[0], args.data());
      _exit(127);
    }
    std::unique_ptr<ChildProcess> child(new ChildProcess());
    child->pid_ = pid;
    Register(pid, true);
    if (err_fd >= 0) close(err_fd);
    if (pipes) {
      close(to_child[0]);
      close(from_child[1]);
      child->in_ = to_child[1];
      child->out_ = from_child[0];
    }
    return child;
  }

  ~ChildProcess() { Kill(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }

  absl::Status SendLine(const std::string& line) {
    const std::string text = line + "\n";
    size_t off = 0;
    while (off < text.size()) {
      const ssize_t n = write(in_, text.data() + off, text.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(absl::StrCat("child ", pid_, ": write to its stdin failed (exited?)"));
      off += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }

  // The next line from its stdout (without the newline); DEADLINE_EXCEEDED after `timeout`,
  // UNAVAILABLE when it closed stdout (exited).
  absl::StatusOr<std::string> ReadLine(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return absl::DeadlineExceededError(absl::StrCat("child ", pid_, ": no answer in time"));
      pollfd p{.fd = out_, .events = POLLIN, .revents = 0};
      const int r = poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      char chunk[4096];
      const ssize_t n = read(out_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return absl::UnavailableError(absl::StrCat("child ", pid_, ": exited (stdout closed)"));
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Sends `line` and returns the answer line; an answer not starting with "ok" is an error
  // carrying the child's words.
  absl::StatusOr<std::string> Call(const std::string& line, std::chrono::milliseconds timeout) {
    if (absl::Status s = SendLine(line); !s.ok()) return s;
    absl::StatusOr<std::string> answer = ReadLine(timeout);
    if (!answer.ok())
      return absl::Status(answer.status().code(), absl::StrCat(answer.status().message(), " (to: ", line, ")"));
    if (answer->rfind("ok", 0) != 0)
      return absl::InternalError(absl::StrCat("child ", pid_, " answered '", *answer, "' to '", line, "'"));
    return answer->size() > 3 ? answer->substr(3) : std::string();
  }

  // Closes its stdin (members exit on EOF) and waits up to `grace`; then SIGKILL.
  void Stop(std::chrono::milliseconds grace) {
    if (pid_ <= 0) return;
    CloseFd(in_);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        Register(pid_, false);
        pid_ = -1;
        CloseFd(out_);
        return;
      }
      usleep(20'000);
    }
    Kill();
  }

  // SIGKILL to every child still running (from a signal-handling thread, before exiting).
  static void KillAll() {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    for (pid_t pid : Registry()) kill(pid, SIGKILL);
  }

  // Bytes it has caused to be written to storage so far (/proc/PID/io write_bytes); -1 if
  // unreadable.
  double WriteBytes() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/io");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("write_bytes:", 0) == 0) return std::stod(line.substr(12));
    }
    return -1;
  }

  // A line of /proc/PID/status, e.g. "VmRSS", in MiB; -1 if unreadable.
  double StatusMiB(const std::string& key) const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;  // kB
    }
    return -1;
  }

 private:
  ChildProcess() = default;

  static std::mutex& RegistryMutex() {
    static std::mutex mu;
    return mu;
  }
  static std::set<pid_t>& Registry() {
    static std::set<pid_t> pids;
    return pids;
  }
  static void Register(pid_t pid, bool running) {
    std::lock_guard<std::mutex> lock(RegistryMutex());
    if (running) {
      Registry().insert(pid);
    } else {
      Registry().erase(pid);
    }
  }

  static void CloseFd(int& fd) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  void Kill() {
    CloseFd(in_);
    CloseFd(out_);
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      Register(pid_, false);
      pid_ = -1;
    }
  }

  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buffer_;
};

}  // namespace adcsc::bench
