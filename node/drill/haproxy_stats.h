// Reads HAProxy's view of a backend from its stats socket ("show stat"), so a drill can time
// when the load balancer stopped and started using a node by the load balancer's own word.
// Free functions with no shared state: safe from any thread.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace adcsc::drill {

// server name -> status ("UP", "DOWN", "DRAIN", "MAINT", "UP 1/2", ...) for `backend`, from
// the CSV that "show stat" prints.
absl::StatusOr<std::map<std::string, std::string>> ParseHaproxyStat(std::string_view csv, const std::string& backend);

// Asks the stats socket (a Unix socket) for "show stat" and parses it. Bounded by 2 s.
absl::StatusOr<std::map<std::string, std::string>> ReadHaproxyStatus(const std::filesystem::path& socket,
                                                                     const std::string& backend);

}  // namespace adcsc::drill
