// adcsc-lb-agent: runs beside a node and answers HAProxy's agent-check from the node's ops
// listener (lb-agent/agent.h). Usage: adcsc-lb-agent --help.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <iostream>

#include "lb-agent/agent.h"

int main(int argc, char** argv) {
  adcsc::lbagent::AgentOptions o;
  std::string listen = "127.0.0.1:9101";
  int64_t interval_ms = 1000, timeout_ms = 800, stale_ms = 3000;
  CLI::App app{
      "adcsc-lb-agent: answers HAProxy's agent-check for one adcsc node (\"up ready 100%\", \"up drain\",\n"
      "\"maint\", \"down#<reason>\"), from the node's ops listener, polled every interval. It answers at once\n"
      "from the newest poll, so a hanging node gets \"down#node not answering\" once its answer is stale.\n\n"
      "Example:\n  adcsc-lb-agent --node-url https://adcsc1.example.com:9100 --ca-file adcs-proxy-ca.pem \\\n"
      "      --listen 10.0.0.1:9101\n"
      "HAProxy: server adcsc1 10.0.0.1:8443 check agent-check agent-addr 10.0.0.1 agent-port 9101 agent-inter 2s\n\n"
      "Exit codes: 0 stopped by SIGTERM/SIGINT, 2 bad arguments or cannot listen."};
  app.add_option("--node-url", o.node_url, "http(s)://HOST:PORT of the node's [ops] listener")->required();
  app.add_option("--ca-file", o.ca_file, "CA of the node's ops certificate (https)");
  app.add_option("--listen", listen,
                 "IPv4 address:port HAProxy's agent-check connects to (default 127.0.0.1:9101: this host only; for a "
                 "balancer elsewhere, the address it reaches this node by, behind a firewall rule)");
  app.add_option("--interval-ms", interval_ms, "How often to poll the node (default 1000)")
      ->check(CLI::Range(100, 60'000));
  app.add_option("--timeout-ms", timeout_ms, "Bound on one poll (default 800)")->check(CLI::Range(50, 60'000));
  app.add_option("--stale-ms", stale_ms, "Answer older than this: the node is not answering (default 3000)")
      ->check(CLI::Range(100, 600'000));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "adcsc-lb-agent: --listen: expected ADDRESS:PORT\n";
    return 2;
  }
  o.listen_address = listen.substr(0, colon);
  try {
    o.listen_port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  } catch (...) {
    std::cerr << "adcsc-lb-agent: --listen: bad port in \"" << listen << "\"\n";
    return 2;
  }
  o.interval = std::chrono::milliseconds(interval_ms);
  o.timeout = std::chrono::milliseconds(timeout_ms);
  o.stale = std::chrono::milliseconds(stale_ms);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // threads started below inherit the mask
  adcsc::lbagent::Agent agent(o);
  if (auto s = agent.Start(); !s.ok()) {
    std::cerr << "adcsc-lb-agent: " << s.message() << "\n";
    return 2;
  }
  std::cerr << "adcsc-lb-agent: answering on " << o.listen_address << ":" << agent.port() << " for " << o.node_url
            << "\n";
  int sig = 0;
  sigwait(&stop, &sig);
  agent.Stop();
  return 0;
}
