// Shared set-up of the in-process cluster tests: a cluster PKI made by `adcsc pki cluster`'s
// code, free loopback ports, and each node's [cluster] section pointing at the others.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "node/config/config.h"
#include "node/pki/cluster.h"
#include "tests/testing/free_port.h"

namespace adcsc::testing {

struct TestCluster {
  std::filesystem::path pki_dir;
  std::vector<std::string> ids;
  std::map<std::string, int> ports;

  // Makes the PKI under `dir` and picks a port per node.
  static TestCluster Make(const std::filesystem::path& dir, std::vector<std::string> ids,
                          const std::string& cluster_id = "prod") {
    TestCluster c{dir / "pki", std::move(ids), {}};
    EXPECT_TRUE(adcsc::pki::InitClusterPki({cluster_id, c.ids, c.pki_dir}).ok());
    for (const auto& id : c.ids) c.ports[id] = FreePort();
    return c;
  }

  // Node `id`'s [cluster] section: listens on its port, every other node a peer.
  adcsc::node::ClusterConfig ConfigFor(const std::string& id, const std::string& cluster_id = "prod") const {
    adcsc::node::ClusterConfig c;
    c.enabled = true;
    c.id = cluster_id;
    c.listen_address = "127.0.0.1";
    c.listen_port = static_cast<uint16_t>(ports.at(id));
    c.ca_file = pki_dir / adcsc::pki::kClusterCaCertFile;
    c.cert_file = pki_dir / id / adcsc::pki::kNodeCertFile;
    c.key_file = pki_dir / id / adcsc::pki::kNodeKeyFile;
    for (const auto& other : ids) {
      if (other != id) c.peers.push_back({other, "127.0.0.1:" + std::to_string(ports.at(other))});
    }
    return c;
  }
};

}  // namespace adcsc::testing
