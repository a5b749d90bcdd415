// A TCP port on 127.0.0.1 for a listener a test or benchmark starts later. Drawn at random from
// 10000-19999: below the kernel's ephemeral range, so no client connection takes it meanwhile
// and no other process's bind to port 0 hands it out again, and below the drills' quickstart
// blocks (20000-32000). Reserved until this process exits by an flock on
// $TMPDIR/adcsc-test-ports/<port>.lock, which the Python harness's free_port() takes too, so
// tests running side by side never pick the same port (a listener that finds its port taken
// fails: nodes do not share ports, node/cluster/runtime.cc). Checked free by binding it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>

namespace adcsc::testing {

inline int FreePort() {
  const char* tmp = std::getenv("TMPDIR");
  const std::string dir = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/adcsc-test-ports";
  ::mkdir(dir.c_str(), 01777);
  std::random_device seed;
  std::mt19937 rng(seed());
  std::uniform_int_distribution<int> pick(10000, 19999);
  for (int attempt = 0; attempt < 500; ++attempt) {
    const int port = pick(rng);
    const std::string lock = dir + "/" + std::to_string(port) + ".lock";
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      continue;
    }
    const int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    const bool bound = ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(s);
    if (!bound) {
      ::close(fd);
      continue;
    }
    return port;  // `fd` stays open, and locked, until the process exits
  }
  std::abort();  // 500 ports in use or reserved: the machine is not fit for these tests
}

}  // namespace adcsc::testing
