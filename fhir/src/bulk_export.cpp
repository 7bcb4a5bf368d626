// FHIR Bulk Data export jobs: see bulk_export.h.
#include "bulk_export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "json.h"
#include "patient.h"
#include "resources.h"
#include "telehub/core/bytes.h"

namespace telehub::fhir {
namespace {

namespace fs = std::filesystem;

// Resources read from a store per call while streaming (bounded memory).
constexpr int kPage = 500;

bool valid_type_name(std::string_view t) {
  if (t.empty() || t.size() > 64 || t[0] < 'A' || t[0] > 'Z') return false;
  return std::all_of(t.begin(), t.end(), [](char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); });
}

tl::unexpected<core::Error> io_error(std::string message) {
  return core::fail(core::Code::kUnavailable, "export_io", std::move(message));
}

// The NDJSON files of one job: opened on the first resource of a type, 0600, never reopened.
class NdjsonFiles {
 public:
  explicit NdjsonFiles(fs::path dir) : dir_(std::move(dir)) {}
  NdjsonFiles(const NdjsonFiles&) = delete;
  NdjsonFiles& operator=(const NdjsonFiles&) = delete;
  ~NdjsonFiles() {
    for (auto& [type, f] : files_)
      if (f.file) std::fclose(f.file);
  }

  // Appends one resource as one line. `json` is a complete JSON object; a raw line break in it
  // can only be insignificant whitespace (JSON strings escape them) and becomes a space.
  Status write(const std::string& type, std::string_view json) {
    if (!valid_type_name(type)) return core::fail(core::Code::kInternal, "bad_resource", "resource type is not a type name");
    auto it = files_.find(type);
    if (it == files_.end()) {
      const fs::path path = dir_ / (type + ".ndjson");
      const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) return io_error("cannot create an export file");
      std::FILE* f = ::fdopen(fd, "w");
      if (!f) {
        ::close(fd);
        return io_error("cannot open an export file");
      }
      it = files_.emplace(type, File{f, 0}).first;
    }
    std::string line(json);
    std::replace(line.begin(), line.end(), '\n', ' ');
    std::replace(line.begin(), line.end(), '\r', ' ');
    line.push_back('\n');
    if (std::fwrite(line.data(), 1, line.size(), it->second.file) != line.size()) return io_error("cannot write an export file");
    ++it->second.count;
    return {};
  }

  // Flushes, fsyncs and closes every file; returns (type, count) by type.
  Result<std::map<std::string, std::int64_t>> close() {
    std::map<std::string, std::int64_t> counts;
    bool ok = true;
    for (auto& [type, f] : files_) {
      if (std::fflush(f.file) != 0 || ::fsync(::fileno(f.file)) != 0) ok = false;
      if (std::fclose(f.file) != 0) ok = false;
      f.file = nullptr;
      counts[type] = f.count;
    }
    if (!ok) return io_error("cannot close an export file");
    return counts;
  }

 private:
  struct File {
    std::FILE* file = nullptr;
    std::int64_t count = 0;
  };
  fs::path dir_;
  std::map<std::string, File> files_;
};

struct Job {
  std::string id;
  ExportRequest request;
  core::TimePoint transaction_time;
  fs::path dir;
  std::atomic<bool> cancel{false};
  std::thread worker;
  // Guarded by BulkExportsImpl::mu_.
  ExportStatus::State state = ExportStatus::State::kInProgress;
  std::size_t done = 0;
  std::string body;                          // manifest or OperationOutcome when finished
  std::map<std::string, std::int64_t> files;  // type -> count, when complete
  core::TimePoint finished{};
};

class BulkExportsImpl final : public BulkExports {
 public:
  explicit BulkExportsImpl(BulkExportOptions options) : options_(std::move(options)) {}
  ~BulkExportsImpl() override { stop(); }

  Result<std::string> kick_off(ExportRequest request) override {
    if (request.requester.empty()) return core::fail(core::Code::kInvalidArgument, "bad_export", "no requester");
    for (const auto& s : request.subjects)
      if (!valid_fhir_id(s)) return core::fail(core::Code::kInvalidArgument, "bad_export", "a subject is not a FHIR id");
    for (const auto& t : request.types)
      if (!valid_type_name(t)) return core::fail(core::Code::kInvalidArgument, "bad_export", "_type holds a name that is not a resource type");
    if (request.identified && !options_.vault)
      return core::fail(core::Code::kFailedPrecondition, "no_vault", "identified export without an identity vault");
    std::sort(request.subjects.begin(), request.subjects.end());
    request.subjects.erase(std::unique(request.subjects.begin(), request.subjects.end()), request.subjects.end());
    std::sort(request.types.begin(), request.types.end());
    request.types.erase(std::unique(request.types.begin(), request.types.end()), request.types.end());

    auto random = core::random_bytes(16);
    if (!random) return tl::unexpected(random.error());
    auto job = std::make_shared<Job>();
    job->id = core::to_hex(*random);
    job->request = std::move(request);
    job->transaction_time = options_.clock->now();
    job->dir = options_.dir / job->id;

    sweep();
    std::lock_guard lock(mu_);
    if (stopped_) return core::fail(core::Code::kUnavailable, "stopped", "bulk export is shutting down");
    const auto running = std::count_if(jobs_.begin(), jobs_.end(), [](const auto& j) {
      return j.second->state == ExportStatus::State::kInProgress;
    });
    if (static_cast<std::size_t>(running) >= options_.max_concurrent_jobs)
      return core::fail(core::Code::kResourceExhausted, "too_many_exports", "too many exports in progress");
    if (::mkdir(job->dir.c_str(), 0700) != 0) return io_error("cannot create the job directory");
    jobs_.emplace(job->id, job);
    job->worker = std::thread([this, job] { work(*job); });
    return job->id;
  }

  Result<ExportStatus> status(std::string_view job_id, std::string_view requester) override {
    sweep();
    std::lock_guard lock(mu_);
    auto job = find(job_id, requester);
    if (!job) return no_export();
    ExportStatus out;
    out.state = job->state;
    if (job->state == ExportStatus::State::kInProgress)
      out.progress = std::to_string(job->done) + " of " + std::to_string(job->request.subjects.size()) + " patients";
    else
      out.body = job->body;
    return out;
  }

  Result<fs::path> file(std::string_view job_id, std::string_view file_name, std::string_view requester) override {
    sweep();
    std::lock_guard lock(mu_);
    auto job = find(job_id, requester);
    if (!job) return no_export();
    if (job->state != ExportStatus::State::kComplete)
      return core::fail(core::Code::kFailedPrecondition, "not_complete", "the export is not complete");
    constexpr std::string_view kSuffix = ".ndjson";
    if (!file_name.ends_with(kSuffix) ||
        !job->files.contains(std::string(file_name.substr(0, file_name.size() - kSuffix.size()))))
      return core::fail(core::Code::kNotFound, "no_file", "no such export file");
    return job->dir / std::string(file_name);
  }

  Status cancel(std::string_view job_id, std::string_view requester) override {
    sweep();
    std::shared_ptr<Job> job;
    {
      std::lock_guard lock(mu_);
      job = find(job_id, requester);
      if (!job) return no_export();
      jobs_.erase(job->id);
    }
    discard(*job);
    return {};
  }

  void stop() override {
    std::map<std::string, std::shared_ptr<Job>> all;
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      all.swap(jobs_);
    }
    for (auto& [id, job] : all) discard(*job);
  }

 private:
  static tl::unexpected<core::Error> no_export() {
    return core::fail(core::Code::kNotFound, "no_export", "no such export");
  }

  // REQUIRES: mu_ held.
  std::shared_ptr<Job> find(std::string_view job_id, std::string_view requester) {
    auto it = jobs_.find(std::string(job_id));
    if (it == jobs_.end() || it->second->request.requester != requester) return nullptr;
    return it->second;
  }

  // Stops a job no longer in jobs_, joins its worker and deletes its files.
  static void discard(Job& job) {
    job.cancel = true;
    if (job.worker.joinable()) job.worker.join();
    std::error_code ec;
    fs::remove_all(job.dir, ec);
  }

  // Forgets finished jobs older than the time-to-live and deletes their files.
  void sweep() {
    std::vector<std::shared_ptr<Job>> expired;
    {
      std::lock_guard lock(mu_);
      const auto now = options_.clock->now();
      for (auto it = jobs_.begin(); it != jobs_.end();) {
        if (it->second->state != ExportStatus::State::kInProgress && now >= it->second->finished + options_.time_to_live) {
          expired.push_back(it->second);
          it = jobs_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& job : expired) discard(*job);
  }

  // The worker thread's body: nothing may throw out of it (std::terminate), so an exception
  // (std::bad_alloc, a std::system_error of the file system) fails the job like an error.
  void work(Job& job) {
    Result<std::map<std::string, std::int64_t>> counts;
    try {
      NdjsonFiles out(job.dir);
      auto ran = run(job, out);
      counts = ran ? out.close() : tl::unexpected(ran.error());
    } catch (const std::exception&) {
      counts = core::fail(core::Code::kInternal, "exception", "the export thread caught an exception");
    }
    if (!counts && counts.error().code == core::Code::kCancelled) return;  // the canceller cleans up
    std::lock_guard lock(mu_);
    job.finished = options_.clock->now();
    if (counts) {
      job.files = std::move(*counts);
      job.body = manifest(job);
      job.state = ExportStatus::State::kComplete;
      return;
    }
    job.state = ExportStatus::State::kFailed;
    job.body = operation_outcome_json({{"error", "exception",
                                        "the export could not finish (" + std::string(core::code_name(counts.error().code)) +
                                            "/" + counts.error().reason + ")"}});
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(job.dir, ec)) fs::remove(entry.path(), ec);
  }

  std::string manifest(const Job& job) const {
    JsonBuffer buffer;
    JsonWriter w(buffer);
    w.StartObject();
    write_member(w, "transactionTime", core::format_rfc3339(job.transaction_time));
    write_member(w, "request", job.request.request_url);
    write_key(w, "requiresAccessToken");
    w.Bool(true);
    write_key(w, "output");
    w.StartArray();
    for (const auto& [type, count] : job.files) {
      w.StartObject();
      write_member(w, "type", type);
      write_member(w, "url", options_.base_url + "/$export-files/" + job.id + "/" + type + ".ndjson");
      write_key(w, "count");
      w.Int64(count);
      w.EndObject();
    }
    w.EndArray();
    write_key(w, "error");
    w.StartArray();
    w.EndArray();
    w.EndObject();
    return to_string(buffer);
  }

  Status check_cancel(const Job& job) const {
    if (job.cancel) return core::fail(core::Code::kCancelled, "cancelled", "export cancelled");
    return {};
  }

  Status run(Job& job, NdjsonFiles& out) {
    const ExportRequest& req = job.request;
    if (req.producer) {
      return req.producer([&](std::string_view type, std::string_view json) -> Status {
        if (auto c = check_cancel(job); !c) return c;
        return out.write(std::string(type), json);
      });
    }
    const bool all_types = req.types.empty();
    auto wants = [&](std::string_view type) {
      return all_types || std::binary_search(req.types.begin(), req.types.end(), type);
    };
    // The types asked of the clinical store (it holds no Patient); empty = all.
    std::vector<std::string> clinical_types;
    for (const auto& t : req.types)
      if (t != "Patient") clinical_types.push_back(t);
    const bool clinical = options_.clinical && (all_types || !clinical_types.empty());

    for (const auto& subject : req.subjects) {
      if (auto c = check_cancel(job); !c) return c;
      auto known = options_.store->registry().subject_exists(subject);
      if (!known) return tl::unexpected(known.error());
      if (*known) {
        if (wants("Patient")) {
          if (auto s = write_patient(req, subject, out); !s) return s;
        }
        if (wants("Device")) {
          auto devices = options_.store->registry().devices_of(subject);
          if (!devices) return tl::unexpected(devices.error());
          for (const auto& d : *devices)
            if (auto s = out.write("Device", device_json(d)); !s) return s;
        }
        if (wants("Observation")) {
          if (auto s = write_readings(job, subject, out); !s) return s;
        }
        if (clinical) {
          std::string cursor;
          do {
            if (auto c = check_cancel(job); !c) return c;
            auto page = options_.clinical->of_subject(subject, clinical_types, req.since, cursor, kPage);
            if (!page) return tl::unexpected(page.error());
            for (const auto& r : page->resources)
              if (r.type != "Patient")
                if (auto s = out.write(r.type, r.json); !s) return s;
            cursor = std::move(page->next_cursor);
          } while (!cursor.empty());
        }
      }
      std::lock_guard lock(mu_);
      ++job.done;
    }
    if (req.include_shared && options_.clinical) {
      if (auto s = write_shared(job, out); !s) return s;
    }
    return check_cancel(job);
  }

  Status write_patient(const ExportRequest& req, const std::string& subject, NdjsonFiles& out) {
    if (req.identified) {
      auto id = options_.vault->find_by_pseudonym(subject);
      if (!id) return tl::unexpected(id.error());
      if (*id) {
        auto person = options_.vault->get(**id);
        if (!person) return tl::unexpected(person.error());
        if (*person) return out.write("Patient", identified_patient_json(subject, **person));
      }
    }
    return out.write("Patient", patient_json(subject));
  }

  Status write_readings(const Job& job, const std::string& subject, NdjsonFiles& out) {
    storage::ObservationQuery q;
    q.subject = subject;
    q.limit = kPage;
    for (;;) {
      if (auto c = check_cancel(job); !c) return c;
      auto page = options_.store->observations().search(q);
      if (!page) return tl::unexpected(page.error());
      for (const auto& o : page->items) {
        if (job.request.since && o.received_at < *job.request.since) continue;
        if (auto s = out.write("Observation", observation_json(o, options_.rules)); !s) return s;
      }
      if (!page->next) return {};
      q.after = page->next;
    }
  }

  // Clinical resources without a subject, of the requested types (all types present when none
  // were requested). The store has no "without subject" index, so each type is scanned.
  Status write_shared(const Job& job, NdjsonFiles& out) {
    std::vector<std::string> types = job.request.types;
    if (types.empty()) {
      auto present = options_.clinical->count_by_type();
      if (!present) return tl::unexpected(present.error());
      for (const auto& [type, n] : *present) types.push_back(type);
    }
    for (const auto& type : types) {
      if (type == "Patient") continue;
      clinical::Query q;
      q.type = type;
      q.last_updated_from = job.request.since;
      q.limit = kPage;
      do {
        if (auto c = check_cancel(job); !c) return c;
        auto page = options_.clinical->search(q);
        if (!page) return tl::unexpected(page.error());
        for (const auto& r : page->resources)
          if (r.subject.empty())
            if (auto s = out.write(r.type, r.json); !s) return s;
        q.cursor = std::move(page->next_cursor);
      } while (!q.cursor.empty());
    }
    return {};
  }

  const BulkExportOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // guarded by mu_
  bool stopped_ = false;                              // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<BulkExports>> BulkExports::start(BulkExportOptions options) {
  if (options.dir.empty() || !options.store || !options.clock || options.max_concurrent_jobs == 0)
    return core::fail(core::Code::kInvalidArgument, "bad_options", "bulk export needs a dir, a store, a clock and max_concurrent_jobs >= 1");
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return io_error("cannot create the export directory");
  fs::permissions(options.dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return io_error("cannot restrict the export directory");
  for (const auto& entry : fs::directory_iterator(options.dir, ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec) return io_error("cannot clear the export directory");
  }
  if (ec) return io_error("cannot list the export directory");
  return std::unique_ptr<BulkExports>(std::make_unique<BulkExportsImpl>(std::move(options)));
}

}  // namespace telehub::fhir
