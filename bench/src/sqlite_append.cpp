// telehub-bench-sqlite-append: SQLite's raw append rate for the rows the hub stores, the
// reference for the batched-messages figure. It loads the rows telehub-bench-seal wrote (one
// per observation), then inserts them into a plain rowid table with the columns of the hub's
// observations table but no key, constraint or index, in WAL mode, --batch rows a transaction,
// through one prepared statement. Only the inserts and commits are timed.
//
//   telehub-bench-sqlite-append --rows FILE --db FILE [--batch 1000] [--synchronous FULL|NORMAL|OFF]
//
// The database file must not exist. Prints one JSON line
// {"rows":N,"stored":N,"elapsed_s":S,"rate":R} where `stored` is count(*) read back afterwards.
// This uses the SQLite C API directly on purpose: it measures SQLite, not telehub's wrapper.
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Row {
  std::string subject, device, code, value, unit, components;
  long long sequence = 0, idx = 0, time_ms = 0;
};

int usage(const std::string& why) {
  std::cerr << "telehub-bench-sqlite-append: " << why
            << "\nusage: telehub-bench-sqlite-append --rows FILE --db FILE [--batch N] [--synchronous FULL|NORMAL|OFF]\n";
  return 2;
}

bool exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::cerr << "telehub-bench-sqlite-append: " << sql << ": " << (err ? err : "?") << "\n";
    sqlite3_free(err);
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> opt{{"batch", "1000"}, {"synchronous", "FULL"}};
  if (argc % 2 == 0) return usage("every option needs a value");
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) return usage("unexpected argument " + name);
    opt[name.substr(2)] = argv[i + 1];
  }
  if (!opt.count("rows") || !opt.count("db")) return usage("--rows and --db are required");
  const long batch = std::atol(opt["batch"].c_str());
  const std::string sync = opt["synchronous"];
  if (batch < 1 || (sync != "FULL" && sync != "NORMAL" && sync != "OFF")) return usage("bad --batch or --synchronous");
  if (std::filesystem::exists(opt["db"])) return usage(opt["db"] + " already exists");

  std::vector<Row> rows;
  std::ifstream in(opt["rows"]);
  if (!in) return usage("cannot open " + opt["rows"]);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string field; std::getline(ss, field, '\t');) f.push_back(field);
    if (!line.empty() && line.back() == '\t') f.emplace_back();
    if (f.size() != 9) return usage("malformed row in " + opt["rows"]);
    rows.push_back({f[0], f[1], f[4], f[5], f[6], f[8], std::atoll(f[2].c_str()), std::atoll(f[3].c_str()),
                    std::atoll(f[7].c_str())});
  }

  sqlite3* db = nullptr;
  if (sqlite3_open(opt["db"].c_str(), &db) != SQLITE_OK) return usage("cannot open " + opt["db"]);
  if (!exec(db, "PRAGMA journal_mode=WAL") || !exec(db, "PRAGMA synchronous=" + sync) ||
      !exec(db,
            "CREATE TABLE raw(message_id INTEGER, subject TEXT, device_id TEXT, sequence INTEGER, idx INTEGER, "
            "code TEXT, value REAL, unit TEXT, time_ms INTEGER, components TEXT, received_ms INTEGER)"))
    return 1;
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db, "INSERT INTO raw VALUES(?,?,?,?,?,?,?,?,?,?,?)", -1, &insert, nullptr) != SQLITE_OK)
    return usage(sqlite3_errmsg(db));

  const auto t0 = std::chrono::steady_clock::now();
  long long message_id = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (i % static_cast<std::size_t>(batch) == 0 && !exec(db, "BEGIN")) return 1;
    const Row& r = rows[i];
    if (r.idx == 0) ++message_id;
    const long long now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    sqlite3_bind_int64(insert, 1, message_id);
    sqlite3_bind_text(insert, 2, r.subject.data(), static_cast<int>(r.subject.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert, 3, r.device.data(), static_cast<int>(r.device.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 4, r.sequence);
    sqlite3_bind_int64(insert, 5, r.idx);
    sqlite3_bind_text(insert, 6, r.code.data(), static_cast<int>(r.code.size()), SQLITE_STATIC);
    if (r.value.empty()) sqlite3_bind_null(insert, 7);
    else sqlite3_bind_double(insert, 7, std::strtod(r.value.c_str(), nullptr));
    sqlite3_bind_text(insert, 8, r.unit.data(), static_cast<int>(r.unit.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 9, r.time_ms);
    if (r.components.empty()) sqlite3_bind_null(insert, 10);
    else sqlite3_bind_text(insert, 10, r.components.data(), static_cast<int>(r.components.size()), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 11, now_ms);
    if (sqlite3_step(insert) != SQLITE_DONE) return usage(sqlite3_errmsg(db));
    sqlite3_reset(insert);
    if ((i + 1) % static_cast<std::size_t>(batch) == 0 || i + 1 == rows.size())
      if (!exec(db, "COMMIT")) return 1;
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sqlite3_finalize(insert);

  long long stored = -1;
  sqlite3_stmt* count = nullptr;
  if (sqlite3_prepare_v2(db, "SELECT count(*) FROM raw", -1, &count, nullptr) == SQLITE_OK && sqlite3_step(count) == SQLITE_ROW)
    stored = sqlite3_column_int64(count, 0);
  sqlite3_finalize(count);
  sqlite3_close(db);
  std::printf("{\"rows\":%zu,\"stored\":%lld,\"elapsed_s\":%.6f,\"rate\":%.1f}\n", rows.size(), stored, elapsed,
              elapsed > 0 ? static_cast<double>(rows.size()) / elapsed : 0.0);
  return stored == static_cast<long long>(rows.size()) ? 0 : 1;
}
