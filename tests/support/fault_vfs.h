// FaultVfs: a SQLite VFS for tests that wraps the platform's default VFS and makes writes to
// chosen files fail, the way a full disk or a failing disk does. It plays the part of
// google/leveldb's FaultInjectionTestEnv (db/fault_injection_test.cc): the storage code under
// test stays the real one, and SQLite itself reports SQLITE_FULL or SQLITE_IOERR, so every
// layer above (the writer's transaction handling, the error mapping, ingest) runs its real path.
//
// install() registers it once per process as SQLite's default VFS, so every connection opened
// afterwards without an explicit VFS (the store's writer and readers) goes through it. It only
// interferes with files whose path starts with the watched directory; everything else
// passes straight through, so other tests in the same executable are unaffected.
// The directory is watch()ed; only one directory is watched at a time.
//
// Faults:
//   kDiskFull  each write writes the first half of its bytes, then reports SQLITE_FULL: what
//              SQLite's unix VFS reports for a short write on a full file system (ENOSPC).
//   kIoError   writes write nothing and report SQLITE_IOERR_WRITE; fsync reports
//              SQLITE_IOERR_FSYNC.
// Reads, locks and the WAL index (-shm, memory-mapped) always work.
//
// Thread-safety: all methods may be called from any thread; the fault applies to writes that
// start after the call returns. A file's path is checked against the watched directory when
// SQLite opens it, so call watch() before the store opens its files.
#pragma once

#include <cstdint>
#include <filesystem>

namespace telehub::testing {

class FaultVfs {
 public:
  enum class Fault { kNone, kDiskFull, kIoError };

  // Registers the VFS as SQLite's default (once per process) and returns it.
  static FaultVfs& install();

  // Files opened from now on whose path lies under `dir` are subject to faults.
  void watch(const std::filesystem::path& dir);
  // Sets the fault for watched files (kNone: everything works again).
  void set(Fault fault);
  Fault fault() const;
  // Writes and syncs that failed because of a fault, since install().
  std::uint64_t failed_operations() const;

 private:
  FaultVfs() = default;
};

// Sets a fault for its lifetime and clears it on destruction, also when a failed REQUIRE
// unwinds the stack (a hub left stalled would otherwise never let its callback return).
class ScopedFault {
 public:
  ScopedFault(FaultVfs& vfs, FaultVfs::Fault fault) : vfs_(vfs) { vfs_.set(fault); }
  ~ScopedFault() { clear(); }
  ScopedFault(const ScopedFault&) = delete;
  ScopedFault& operator=(const ScopedFault&) = delete;
  void clear() { vfs_.set(FaultVfs::Fault::kNone); }

 private:
  FaultVfs& vfs_;
};

}  // namespace telehub::testing
