#include "store/fault_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace adcsc::store {
namespace {

// The io_methods and vfs layouts this file knows; a newer SQLite with more methods is
// presented to SQLite as this version.
constexpr int kMaxIoMethodsVersion = 3;
constexpr int kMaxVfsVersion = 3;

std::atomic<int64_t> g_write_delay_ms{0};
std::atomic<int64_t> g_sync_delay_ms{0};
std::atomic<uint64_t> g_delayed_writes{0};
std::atomic<uint64_t> g_delayed_syncs{0};

// Wakes delayed calls when the setting changes, so a cleared fault releases them at once.
std::mutex g_wake_mu;
std::condition_variable g_wake;

// Waits until `delay_ms` (re-read on every wake) has passed since the call began. The fast
// path, no delay set, is one relaxed load.
void DelayFor(const std::atomic<int64_t>& delay_ms, std::atomic<uint64_t>& delayed_calls) {
  if (delay_ms.load(std::memory_order_relaxed) <= 0) return;
  delayed_calls.fetch_add(1, std::memory_order_relaxed);
  const auto start = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(g_wake_mu);
  for (;;) {
    // Read under the mutex: SetDiskFault stores, then takes it to notify, so a change
    // made before this read is seen here and one made after it wakes the wait below.
    const auto deadline = start + std::chrono::milliseconds(delay_ms.load(std::memory_order_relaxed));
    if (std::chrono::steady_clock::now() >= deadline) return;
    g_wake.wait_until(lock, deadline);
  }
}

// One open file of the shim. SQLite allocates szOsFile bytes for it: this struct, then the
// real VFS's file. `base` must come first (SQLite only sees a sqlite3_file*).
struct FaultFile {
  sqlite3_file base;
  // What base.pMethods points to: built in xOpen to mirror the real file's methods, so SQLite
  // sees the same version and the same missing methods (e.g. no xShmMap) as without the shim.
  sqlite3_io_methods methods;
  sqlite3_file* real;  // in the same allocation, right after this struct
};
// SQLite's allocations are 8-byte aligned; the real file that follows must stay so.
static_assert(sizeof(FaultFile) % 8 == 0);

sqlite3_file* Real(sqlite3_file* file) { return reinterpret_cast<FaultFile*>(file)->real; }
sqlite3_vfs* RealVfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }

// ours when the real VFS or file has the method, else null (SQLite checks for null).
template <typename Fn>
Fn IfReal(Fn real_method, Fn ours) {
  return real_method != nullptr ? ours : nullptr;
}

// --- sqlite3_io_methods: each forwards to the real file ---

int Close(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xClose(real);
}
int Read(sqlite3_file* file, void* buffer, int amount, sqlite3_int64 offset) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xRead(real, buffer, amount, offset);
}
int Write(sqlite3_file* file, const void* buffer, int amount, sqlite3_int64 offset) {
  DelayFor(g_write_delay_ms, g_delayed_writes);
  sqlite3_file* real = Real(file);
  return real->pMethods->xWrite(real, buffer, amount, offset);
}
int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xTruncate(real, size);
}
int Sync(sqlite3_file* file, int flags) {
  DelayFor(g_sync_delay_ms, g_delayed_syncs);
  sqlite3_file* real = Real(file);
  return real->pMethods->xSync(real, flags);
}
int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xFileSize(real, size);
}
int Lock(sqlite3_file* file, int level) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xLock(real, level);
}
int Unlock(sqlite3_file* file, int level) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xUnlock(real, level);
}
int CheckReservedLock(sqlite3_file* file, int* reserved) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xCheckReservedLock(real, reserved);
}
int FileControl(sqlite3_file* file, int op, void* arg) {
  sqlite3_file* real = Real(file);
  const int rc = real->pMethods->xFileControl(real, op, arg);
  if (op == SQLITE_FCNTL_VFSNAME) {
    // Name the stack, outermost first, as SQLite's own shims do ("adcsc-fault/unix").
    char** name = static_cast<char**>(arg);
    if (rc == SQLITE_OK) {
      *name = sqlite3_mprintf("%s/%z", kFaultVfsName, *name);
      return SQLITE_OK;
    }
    if (rc == SQLITE_NOTFOUND) {
      *name = sqlite3_mprintf("%s", kFaultVfsName);
      return SQLITE_OK;
    }
  }
  return rc;
}
int SectorSize(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xSectorSize(real);
}
int DeviceCharacteristics(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xDeviceCharacteristics(real);
}
// Version 2: the WAL index in shared memory.
int ShmMap(sqlite3_file* file, int region, int region_size, int extend, void volatile** mapped) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmMap(real, region, region_size, extend, mapped);
}
int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmLock(real, offset, n, flags);
}
void ShmBarrier(sqlite3_file* file) {
  sqlite3_file* real = Real(file);
  real->pMethods->xShmBarrier(real);
}
int ShmUnmap(sqlite3_file* file, int delete_flag) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xShmUnmap(real, delete_flag);
}
// Version 3: memory-mapped reads.
int Fetch(sqlite3_file* file, sqlite3_int64 offset, int amount, void** page) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xFetch(real, offset, amount, page);
}
int Unfetch(sqlite3_file* file, sqlite3_int64 offset, void* page) {
  sqlite3_file* real = Real(file);
  return real->pMethods->xUnfetch(real, offset, page);
}

// The shim's methods for a file whose real methods are `real`: same version, and null
// wherever the real file has null.
sqlite3_io_methods MirrorMethods(const sqlite3_io_methods& real) {
  sqlite3_io_methods m{};
  m.iVersion = std::min(real.iVersion, kMaxIoMethodsVersion);
  m.xClose = Close;
  m.xRead = Read;
  m.xWrite = Write;
  m.xTruncate = Truncate;
  m.xSync = Sync;
  m.xFileSize = FileSize;
  m.xLock = Lock;
  m.xUnlock = Unlock;
  m.xCheckReservedLock = CheckReservedLock;
  m.xFileControl = FileControl;
  m.xSectorSize = IfReal(real.xSectorSize, SectorSize);
  m.xDeviceCharacteristics = IfReal(real.xDeviceCharacteristics, DeviceCharacteristics);
  if (m.iVersion >= 2) {
    m.xShmMap = IfReal(real.xShmMap, ShmMap);
    m.xShmLock = IfReal(real.xShmLock, ShmLock);
    m.xShmBarrier = IfReal(real.xShmBarrier, ShmBarrier);
    m.xShmUnmap = IfReal(real.xShmUnmap, ShmUnmap);
  }
  if (m.iVersion >= 3) {
    m.xFetch = IfReal(real.xFetch, Fetch);
    m.xUnfetch = IfReal(real.xUnfetch, Unfetch);
  }
  return m;
}

// --- sqlite3_vfs: each forwards to the real VFS ---

int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
  FaultFile* f = reinterpret_cast<FaultFile*>(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->real->pMethods = nullptr;
  sqlite3_vfs* real_vfs = RealVfs(vfs);
  const int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
  // SQLite calls xClose whenever pMethods is set, even after a failed open; mirror the real
  // file so the real one is closed exactly when it would be without the shim.
  if (f->real->pMethods != nullptr) {
    f->methods = MirrorMethods(*f->real->pMethods);
    f->base.pMethods = &f->methods;
  }
  return rc;
}
int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return RealVfs(vfs)->xDelete(RealVfs(vfs), name, sync_dir);
}
int Access(sqlite3_vfs* vfs, const char* name, int flags, int* result) {
  return RealVfs(vfs)->xAccess(RealVfs(vfs), name, flags, result);
}
int FullPathname(sqlite3_vfs* vfs, const char* name, int size, char* out) {
  return RealVfs(vfs)->xFullPathname(RealVfs(vfs), name, size, out);
}
void* DlOpen(sqlite3_vfs* vfs, const char* filename) { return RealVfs(vfs)->xDlOpen(RealVfs(vfs), filename); }
void DlError(sqlite3_vfs* vfs, int size, char* message) { RealVfs(vfs)->xDlError(RealVfs(vfs), size, message); }
using DlSymbol = void (*)();
DlSymbol DlSym(sqlite3_vfs* vfs, void* handle, const char* symbol) {
  return RealVfs(vfs)->xDlSym(RealVfs(vfs), handle, symbol);
}
void DlClose(sqlite3_vfs* vfs, void* handle) { RealVfs(vfs)->xDlClose(RealVfs(vfs), handle); }
int Randomness(sqlite3_vfs* vfs, int size, char* out) { return RealVfs(vfs)->xRandomness(RealVfs(vfs), size, out); }
int Sleep(sqlite3_vfs* vfs, int microseconds) { return RealVfs(vfs)->xSleep(RealVfs(vfs), microseconds); }
int CurrentTime(sqlite3_vfs* vfs, double* julian_day) { return RealVfs(vfs)->xCurrentTime(RealVfs(vfs), julian_day); }
int GetLastError(sqlite3_vfs* vfs, int size, char* out) { return RealVfs(vfs)->xGetLastError(RealVfs(vfs), size, out); }
int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* julian_ms) {
  return RealVfs(vfs)->xCurrentTimeInt64(RealVfs(vfs), julian_ms);
}
int SetSystemCall(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr call) {
  return RealVfs(vfs)->xSetSystemCall(RealVfs(vfs), name, call);
}
sqlite3_syscall_ptr GetSystemCall(sqlite3_vfs* vfs, const char* name) {
  return RealVfs(vfs)->xGetSystemCall(RealVfs(vfs), name);
}
const char* NextSystemCall(sqlite3_vfs* vfs, const char* name) {
  return RealVfs(vfs)->xNextSystemCall(RealVfs(vfs), name);
}

// The shim over `real`: same version, path limit and missing methods.
sqlite3_vfs MirrorVfs(sqlite3_vfs* real) {
  sqlite3_vfs v{};
  v.iVersion = std::min(real->iVersion, kMaxVfsVersion);
  v.szOsFile = static_cast<int>(sizeof(FaultFile)) + real->szOsFile;
  v.mxPathname = real->mxPathname;
  v.zName = kFaultVfsName;
  v.pAppData = real;
  v.xOpen = Open;
  v.xDelete = IfReal(real->xDelete, Delete);
  v.xAccess = IfReal(real->xAccess, Access);
  v.xFullPathname = IfReal(real->xFullPathname, FullPathname);
  v.xDlOpen = IfReal(real->xDlOpen, DlOpen);
  v.xDlError = IfReal(real->xDlError, DlError);
  v.xDlSym = IfReal(real->xDlSym, DlSym);
  v.xDlClose = IfReal(real->xDlClose, DlClose);
  v.xRandomness = IfReal(real->xRandomness, Randomness);
  v.xSleep = IfReal(real->xSleep, Sleep);
  v.xCurrentTime = IfReal(real->xCurrentTime, CurrentTime);
  v.xGetLastError = IfReal(real->xGetLastError, GetLastError);
  if (v.iVersion >= 2) v.xCurrentTimeInt64 = IfReal(real->xCurrentTimeInt64, CurrentTimeInt64);
  if (v.iVersion >= 3) {
    v.xSetSystemCall = IfReal(real->xSetSystemCall, SetSystemCall);
    v.xGetSystemCall = IfReal(real->xGetSystemCall, GetSystemCall);
    v.xNextSystemCall = IfReal(real->xNextSystemCall, NextSystemCall);
  }
  return v;
}

int64_t ClampDelay(int64_t ms) { return std::clamp<int64_t>(ms, 0, kMaxDiskFaultDelayMs); }

}  // namespace

absl::Status RegisterFaultVfs() {
  // SQLite keeps a pointer to the registered struct for the life of the process.
  static sqlite3_vfs vfs;
  static absl::Status status;
  static std::once_flag once;
  std::call_once(once, [] {
    sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
    if (real == nullptr) {
      status = absl::InternalError("sqlite: no default VFS to wrap with the adcsc-fault VFS");
      return;
    }
    vfs = MirrorVfs(real);
    if (const int rc = sqlite3_vfs_register(&vfs, /*makeDflt=*/0); rc != SQLITE_OK) {
      status = absl::InternalError(absl::StrCat("sqlite: registering the adcsc-fault VFS over \"", real->zName,
                                                "\" failed: ", sqlite3_errstr(rc)));
    }
  });
  return status;
}

void SetDiskFault(const DiskFault& fault) {
  g_write_delay_ms.store(ClampDelay(fault.write_delay_ms), std::memory_order_relaxed);
  g_sync_delay_ms.store(ClampDelay(fault.sync_delay_ms), std::memory_order_relaxed);
  // Taking the mutex orders the stores before any waiter's next read (see DelayFor).
  { std::lock_guard<std::mutex> lock(g_wake_mu); }
  g_wake.notify_all();
}

DiskFault CurrentDiskFault() {
  return DiskFault{.write_delay_ms = g_write_delay_ms.load(std::memory_order_relaxed),
                   .sync_delay_ms = g_sync_delay_ms.load(std::memory_order_relaxed)};
}

DiskFaultStats GetDiskFaultStats() {
  return DiskFaultStats{.delayed_writes = g_delayed_writes.load(std::memory_order_relaxed),
                        .delayed_syncs = g_delayed_syncs.load(std::memory_order_relaxed)};
}

}  // namespace adcsc::store
