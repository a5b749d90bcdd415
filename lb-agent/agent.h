// adcsc-lb-agent's two halves: a poller that reads the node's /status from its ops listener
// every interval (bounded by a timeout, so a hanging node cannot stall it), and a TCP
// listener that answers each HAProxy agent-check connection at once from the newest answer
// (agent_reply.h). Thread-safety: Start/Stop from one thread; the rest runs on its own threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace adcsc::lbagent {

struct AgentOptions {
  std::string node_url;           // http(s)://host:port of the node's ops listener
  std::filesystem::path ca_file;  // trust for an https node (its server CA)
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 9101;  // 0: any free port (tests)
  std::chrono::milliseconds interval{1'000};
  std::chrono::milliseconds timeout{800};
  std::chrono::milliseconds stale{3'000};  // older than this, the node counts as not answering
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  absl::Status Start();  // errors name the option at fault
  uint16_t port() const;
  void Stop();
  // The line an agent-check would get now.
  std::string Reply() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace adcsc::lbagent
