// Named points in the submit path where a test may have the node killed (SIGKILL, as kill -9
// would) to prove what a crash there leaves behind: "before-intent" (the lease is held, nothing
// is durable), "after-intent", "after-ca" (the CA took it, nothing recorded), "after-record";
// and "mid-join" (a bulk join at start with half its records written, node/cluster/bulk_join.h). Armed only by the
// environment variable ADCSC_CRASH_POINT, read once at the first call; an operator never sets it (docs/reliability.md).
// Thread-safe.
#pragma once

#include <string_view>

namespace adcsc::node {

// Kills the process at once if ADCSC_CRASH_POINT names `point`.
void CrashPoint(std::string_view point);

}  // namespace adcsc::node
