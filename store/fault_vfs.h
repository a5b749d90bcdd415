// The slow-disk fault for failover drills: a SQLite VFS ("adcsc-fault") that wraps the
// default one and, on demand, waits before every write and every fsync of every file the
// store opens (database, WAL, journals). It stands in for a stalled disk or a slow SAN on one
// node, at runtime, so a drill can watch the cluster fail over. It delays I/O but never fails
// it: every call still reaches the real VFS, and data on disk is exactly what it would be.
//
// Thread-safety: every function here may be called from any thread at any time. The setting
// and the counters are process-wide atomics; with no delay set, the shim costs each write
// and fsync one relaxed atomic load.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace adcsc::store {

// The name the shim is registered under (sqlite3_vfs_find / sqlite3_open_v2's zVfs).
inline constexpr char kFaultVfsName[] = "adcsc-fault";

// Longest delay accepted per write or fsync; longer requests are clamped to it so a typo in
// a drill cannot hang a node for hours.
inline constexpr int64_t kMaxDiskFaultDelayMs = 60'000;

// How long each write / fsync waits before it is passed on. Zero means no delay.
struct DiskFault {
  int64_t write_delay_ms = 0;  // before each xWrite
  int64_t sync_delay_ms = 0;   // before each xSync (fsync)
};

// Calls that waited because of a DiskFault, since the process started.
struct DiskFaultStats {
  uint64_t delayed_writes = 0;
  uint64_t delayed_syncs = 0;
};

// Registers the shim with SQLite (not as the default VFS), once per process; later calls
// return the first call's result. Connection::Open calls it, so other code need not.
absl::Status RegisterFaultVfs();

// Sets the delays for every file opened through the shim, from the next write / fsync on.
// Values are clamped to [0, kMaxDiskFaultDelayMs]. Calls already waiting re-read the
// setting: clearing it (DiskFault{}) lets them through at once, as a recovered disk would.
// The two delays are stored separately, so a call racing SetDiskFault may see one old and
// one new value.
void SetDiskFault(const DiskFault& fault);
// The delays now in force (after clamping).
DiskFault CurrentDiskFault();
DiskFaultStats GetDiskFaultStats();

}  // namespace adcsc::store
