#include "fault_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

namespace telehub::testing {
namespace {

std::atomic<int> g_fault{static_cast<int>(FaultVfs::Fault::kNone)};
std::atomic<std::uint64_t> g_failed{0};
std::mutex g_watch_mutex;
std::string g_watch;  // directory prefix, with a trailing '/'
sqlite3_vfs* g_real = nullptr;
sqlite3_vfs g_vfs;

// Our file object: the real VFS's file object lives right behind it.
struct FaultFile {
  sqlite3_file base;
  sqlite3_file* real;
  bool watched;
};

FaultFile* self(sqlite3_file* f) { return reinterpret_cast<FaultFile*>(f); }
sqlite3_file* real(sqlite3_file* f) { return self(f)->real; }
FaultVfs::Fault current(sqlite3_file* f) {
  return self(f)->watched ? static_cast<FaultVfs::Fault>(g_fault.load()) : FaultVfs::Fault::kNone;
}

int x_close(sqlite3_file* f) { return real(f)->pMethods->xClose(real(f)); }
int x_read(sqlite3_file* f, void* p, int n, sqlite3_int64 off) { return real(f)->pMethods->xRead(real(f), p, n, off); }
int x_write(sqlite3_file* f, const void* p, int n, sqlite3_int64 off) {
  switch (current(f)) {
    case FaultVfs::Fault::kNone: break;
    case FaultVfs::Fault::kDiskFull:
      ++g_failed;
      // A short write, then "full", as the unix VFS reports ENOSPC.
      if (n / 2 > 0) (void)real(f)->pMethods->xWrite(real(f), p, n / 2, off);
      return SQLITE_FULL;
    case FaultVfs::Fault::kIoError:
      ++g_failed;
      return SQLITE_IOERR_WRITE;
  }
  return real(f)->pMethods->xWrite(real(f), p, n, off);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) { return real(f)->pMethods->xTruncate(real(f), size); }
int x_sync(sqlite3_file* f, int flags) {
  if (current(f) == FaultVfs::Fault::kIoError) {
    ++g_failed;
    return SQLITE_IOERR_FSYNC;
  }
  return real(f)->pMethods->xSync(real(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) { return real(f)->pMethods->xFileSize(real(f), size); }
int x_lock(sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); }
int x_unlock(sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); }
int x_check_reserved(sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); }
int x_file_control(sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); }
int x_sector_size(sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); }
int x_device_characteristics(sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); }
int x_shm_map(sqlite3_file* f, int pg, int pgsz, int extend, void volatile** pp) {
  return real(f)->pMethods->xShmMap(real(f), pg, pgsz, extend, pp);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) { return real(f)->pMethods->xShmLock(real(f), offset, n, flags); }
void x_shm_barrier(sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); }
int x_shm_unmap(sqlite3_file* f, int del) { return real(f)->pMethods->xShmUnmap(real(f), del); }
int x_fetch(sqlite3_file* f, sqlite3_int64 off, int n, void** pp) { return real(f)->pMethods->xFetch(real(f), off, n, pp); }
int x_unfetch(sqlite3_file* f, sqlite3_int64 off, void* p) { return real(f)->pMethods->xUnfetch(real(f), off, p); }

// Version 3, as the unix VFS's own methods (install() checks).
const sqlite3_io_methods kMethods = {
    3,           x_close,     x_read,    x_write,       x_truncate,   x_sync,    x_file_size,
    x_lock,      x_unlock,    x_check_reserved, x_file_control, x_sector_size, x_device_characteristics,
    x_shm_map,   x_shm_lock,  x_shm_barrier, x_shm_unmap, x_fetch,    x_unfetch};

int x_open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  FaultFile* f = self(file);
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  {
    std::lock_guard lock(g_watch_mutex);
    f->watched = name && !g_watch.empty() && std::string(name).starts_with(g_watch);
  }
  int rc = g_real->xOpen(g_real, name, f->real, flags, out_flags);
  // SQLite calls xClose when pMethods is set, even after a failed open: mirror the real file.
  if (f->real->pMethods && f->real->pMethods->iVersion < 3) std::abort();  // not the unix VFS
  f->base.pMethods = f->real->pMethods ? &kMethods : nullptr;
  return rc;
}
int x_delete(sqlite3_vfs*, const char* name, int sync_dir) { return g_real->xDelete(g_real, name, sync_dir); }
int x_access(sqlite3_vfs*, const char* name, int flags, int* out) { return g_real->xAccess(g_real, name, flags, out); }
int x_full_pathname(sqlite3_vfs*, const char* name, int n, char* out) {
  return g_real->xFullPathname(g_real, name, n, out);
}
void* x_dl_open(sqlite3_vfs*, const char* name) { return g_real->xDlOpen(g_real, name); }
void x_dl_error(sqlite3_vfs*, int n, char* msg) { g_real->xDlError(g_real, n, msg); }
void (*x_dl_sym(sqlite3_vfs*, void* h, const char* sym))(void) { return g_real->xDlSym(g_real, h, sym); }
void x_dl_close(sqlite3_vfs*, void* h) { g_real->xDlClose(g_real, h); }
int x_randomness(sqlite3_vfs*, int n, char* out) { return g_real->xRandomness(g_real, n, out); }
int x_sleep(sqlite3_vfs*, int us) { return g_real->xSleep(g_real, us); }
int x_current_time(sqlite3_vfs*, double* t) { return g_real->xCurrentTime(g_real, t); }
int x_get_last_error(sqlite3_vfs*, int n, char* msg) { return g_real->xGetLastError(g_real, n, msg); }
int x_current_time_int64(sqlite3_vfs*, sqlite3_int64* t) { return g_real->xCurrentTimeInt64(g_real, t); }
int x_set_system_call(sqlite3_vfs*, const char* name, sqlite3_syscall_ptr p) {
  return g_real->xSetSystemCall(g_real, name, p);
}
sqlite3_syscall_ptr x_get_system_call(sqlite3_vfs*, const char* name) { return g_real->xGetSystemCall(g_real, name); }
const char* x_next_system_call(sqlite3_vfs*, const char* name) { return g_real->xNextSystemCall(g_real, name); }

}  // namespace

FaultVfs& FaultVfs::install() {
  static FaultVfs* instance = [] {
    g_real = sqlite3_vfs_find(nullptr);
    if (!g_real || g_real->iVersion < 3) std::abort();
    g_vfs = *g_real;
    g_vfs.szOsFile = static_cast<int>(sizeof(FaultFile)) + g_real->szOsFile;
    g_vfs.pNext = nullptr;
    g_vfs.zName = "telehub-fault";
    g_vfs.pAppData = nullptr;
    g_vfs.xOpen = x_open;
    g_vfs.xDelete = x_delete;
    g_vfs.xAccess = x_access;
    g_vfs.xFullPathname = x_full_pathname;
    g_vfs.xDlOpen = x_dl_open;
    g_vfs.xDlError = x_dl_error;
    g_vfs.xDlSym = x_dl_sym;
    g_vfs.xDlClose = x_dl_close;
    g_vfs.xRandomness = x_randomness;
    g_vfs.xSleep = x_sleep;
    g_vfs.xCurrentTime = x_current_time;
    g_vfs.xGetLastError = x_get_last_error;
    g_vfs.xCurrentTimeInt64 = x_current_time_int64;
    g_vfs.xSetSystemCall = x_set_system_call;
    g_vfs.xGetSystemCall = x_get_system_call;
    g_vfs.xNextSystemCall = x_next_system_call;
    if (sqlite3_vfs_register(&g_vfs, 1) != SQLITE_OK) std::abort();
    return new FaultVfs();
  }();
  return *instance;
}

void FaultVfs::watch(const std::filesystem::path& dir) {
  // SQLite opens files by their full path with symbolic links resolved.
  std::string prefix = std::filesystem::weakly_canonical(std::filesystem::absolute(dir)).string();
  if (!prefix.ends_with('/')) prefix += '/';
  std::lock_guard lock(g_watch_mutex);
  g_watch = std::move(prefix);
}

void FaultVfs::set(Fault fault) { g_fault = static_cast<int>(fault); }

FaultVfs::Fault FaultVfs::fault() const { return static_cast<Fault>(g_fault.load()); }

std::uint64_t FaultVfs::failed_operations() const { return g_failed; }

}  // namespace telehub::testing
