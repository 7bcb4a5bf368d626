#include "telehub/research/export.h"

#include <fcntl.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

namespace telehub::research {
namespace {

tl::unexpected<core::Error> io_error(const std::string& what) {
  return core::fail(core::Code::kUnavailable, "export_io", what);
}

// A file written through a buffer, fsynced on close.
class OutFile {
 public:
  OutFile() = default;
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  ~OutFile() {
    if (fd_ >= 0) ::close(fd_);
  }

  Status open(const std::filesystem::path& path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) return io_error("cannot create " + path.filename().string());
    name_ = path.filename().string();
    return {};
  }
  Status write(std::string_view s) {
    buffer_.append(s);
    return buffer_.size() >= (1u << 20) ? flush() : Status{};
  }
  Status close() {
    if (auto s = flush(); !s) return s;
    const bool ok = ::fsync(fd_) == 0;
    ::close(fd_);
    fd_ = -1;
    if (!ok) return io_error("cannot sync " + name_);
    return {};
  }

 private:
  Status flush() {
    std::size_t done = 0;
    while (done < buffer_.size()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n <= 0) return io_error("cannot write " + name_);
      done += static_cast<std::size_t>(n);
    }
    buffer_.clear();
    return {};
  }
  int fd_ = -1;
  std::string name_;
  std::string buffer_;
};

Status sync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open a directory to sync it");
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return io_error("cannot sync a directory");
  return {};
}

// Shortest text that reads back as the same double; "" for a non-finite value (CSV: empty,
// NDJSON: null).
std::string number(double v) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string days_text(double days) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6f", days);
  return buf;
}

// A row's values split so that each slot code appears once per output row (a bucket may hold
// one code in two units: those go to two rows).
std::vector<std::vector<const RowValue*>> split_by_code(const Row& row) {
  std::vector<std::vector<const RowValue*>> out;
  for (const auto& v : row.values) {
    bool placed = false;
    for (auto& line : out) {
      const bool taken = std::any_of(line.begin(), line.end(), [&](const RowValue* p) { return p->code == v.code; });
      if (!taken) {
        line.push_back(&v);
        placed = true;
        break;
      }
    }
    if (!placed) out.push_back({&v});
  }
  if (out.empty()) out.emplace_back();
  return out;
}

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// A number as JSON number text (Writer::RawNumber would write it as a string); null when not finite.
void json_number(JsonWriter& w, double v) {
  const std::string text = number(v);
  if (text.empty()) w.Null();
  else w.RawValue(text.c_str(), text.size(), rapidjson::kNumberType);
}

class DataWriter {
 public:
  DataWriter(const Study& study, Format format, std::vector<std::string> slot_codes)
      : study_(study), format_(format), slots_(std::move(slot_codes)) {}

  std::vector<std::string> columns() const {
    std::vector<std::string> c{"pseudonym", study_.dates == DatesMode::kShift ? "time" : "day", "code", "aggregation", "n"};
    if (format_ == Format::kCsv) {
      for (const auto& s : slots_) {
        c.push_back(s);
        c.push_back(s + "_min");
        c.push_back(s + "_max");
        c.push_back(s + "_unit");
      }
    } else {
      c.push_back("values");
    }
    for (auto e : study_.environment) c.push_back("env_" + std::string(exposure_key(e)));
    return c;
  }

  std::string header() const {
    if (format_ != Format::kCsv) return "";
    std::string line;
    for (const auto& c : columns()) line += (line.empty() ? "" : ",") + csv_field(c);
    return line + "\n";
  }

  // The text of a row (one or more lines) and how many lines.
  std::pair<std::string, std::int64_t> render(const CohortSubject& subject, const Row& row) const {
    const std::string when = study_.dates == DatesMode::kShift ? core::format_rfc3339(row.shifted)
                                                               : days_text(row.days_since_enrolment);
    std::string out;
    std::int64_t lines = 0;
    for (const auto& line : split_by_code(row)) {
      ++lines;
      if (format_ == Format::kCsv) out += csv_line(subject, row, when, line);
      else out += json_line(subject, row, when, line);
    }
    return {out, lines};
  }

 private:
  std::string csv_line(const CohortSubject& subject, const Row& row, const std::string& when,
                       const std::vector<const RowValue*>& values) const {
    std::string s = subject.study_pseudonym + "," + csv_field(when) + "," + csv_field(row.code) + "," +
                    std::string(aggregation_name(row.aggregation)) + "," + std::to_string(row.count);
    for (const auto& code : slots_) {
      const RowValue* v = nullptr;
      for (const auto* p : values)
        if (p->code == code) v = p;
      if (!v) {
        s += ",,,,";
        continue;
      }
      const bool raw = row.aggregation == Aggregation::kRaw;
      s += "," + number(v->value) + "," + (raw ? "" : number(v->min)) + "," + (raw ? "" : number(v->max)) + "," +
           csv_field(v->unit);
    }
    for (const auto& e : row.exposure) s += "," + (e ? number(*e) : std::string());
    return s + "\n";
  }

  std::string json_line(const CohortSubject& subject, const Row& row, const std::string& when,
                        const std::vector<const RowValue*>& values) const {
    rapidjson::StringBuffer buf;
    JsonWriter w(buf);
    w.StartObject();
    w.Key("pseudonym");
    w.String(subject.study_pseudonym.c_str());
    if (study_.dates == DatesMode::kShift) {
      w.Key("time");
      w.String(when.c_str());
    } else {
      w.Key("day");
      w.RawValue(when.c_str(), static_cast<rapidjson::SizeType>(when.size()), rapidjson::kNumberType);
    }
    w.Key("code");
    w.String(row.code.c_str());
    w.Key("aggregation");
    w.String(aggregation_name(row.aggregation).data());
    w.Key("n");
    w.Int64(row.count);
    w.Key("values");
    w.StartArray();
    for (const auto* v : values) {
      w.StartObject();
      w.Key("code");
      w.String(v->code.c_str());
      w.Key("unit");
      w.String(v->unit.c_str());
      w.Key(row.aggregation == Aggregation::kRaw ? "value" : "mean");
      json_number(w, v->value);
      if (row.aggregation != Aggregation::kRaw) {
        w.Key("min");
        json_number(w, v->min);
        w.Key("max");
        json_number(w, v->max);
        w.Key("n");
        w.Int64(v->count);
      }
      w.EndObject();
    }
    w.EndArray();
    for (std::size_t i = 0; i < study_.environment.size(); ++i) {
      const std::string key = "env_" + std::string(exposure_key(study_.environment[i]));
      w.Key(key.c_str());
      if (i < row.exposure.size() && row.exposure[i]) {
        json_number(w, *row.exposure[i]);
      } else {
        w.Null();
      }
    }
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize()) + "\n";
  }

  const Study& study_;
  Format format_;
  std::vector<std::string> slots_;
};

std::string manifest_json(const Study& study, const Manifest& m) {
  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
  w.SetIndent(' ', 2);
  auto str = [&w](std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); };
  w.StartObject();
  w.Key("study");
  str(m.study_id);
  w.Key("title");
  str(study.title);
  w.Key("created");
  str(core::format_rfc3339(m.created));
  w.Key("format");
  str(format_name(m.format));
  w.Key("data_file");
  str(m.format == Format::kCsv ? "data.csv" : "data.ndjson");
  w.Key("dates");
  str(dates_mode_name(m.dates));
  w.Key("consent_scope");
  str(study.consent_scope);
  w.Key("k");
  w.Uint64(m.k);
  w.Key("max_suppression");
  w.Double(study.max_suppression);
  w.Key("variables");
  w.StartArray();
  for (const auto& v : study.variables) {
    w.StartObject();
    w.Key("code");
    str(v.code);
    w.Key("aggregation");
    str(aggregation_name(v.aggregation));
    w.EndObject();
  }
  w.EndArray();
  w.Key("environment");
  w.StartArray();
  for (auto e : study.environment) {
    w.StartObject();
    w.Key("column");
    str("env_" + std::string(exposure_key(e)));
    w.Key("unit");
    str(exposure_unit(e));
    w.EndObject();
  }
  w.EndArray();
  w.Key("quasi_identifiers");
  w.StartArray();
  for (std::size_t i = 0; i < m.qi_names.size(); ++i) {
    w.StartObject();
    w.Key("column");
    str(m.qi_names[i]);
    w.Key("level");
    str(m.qi_levels[i]);
    w.EndObject();
  }
  w.EndArray();
  w.Key("columns");
  w.StartArray();
  for (const auto& c : m.columns) str(c);
  w.EndArray();
  w.Key("counts");
  w.StartObject();
  w.Key("candidates");
  w.Int64(m.counts.candidates);
  w.Key("included");
  w.Int64(m.counts.included);
  w.Key("suppressed");
  w.Int64(m.counts.suppressed);
  w.Key("excluded_no_consent");
  w.Int64(m.counts.excluded_no_consent);
  w.Key("excluded_inclusion");
  w.Int64(m.counts.excluded_inclusion);
  w.Key("rows");
  w.Int64(m.rows);
  w.EndObject();
  w.Key("equivalence_classes");
  w.StartArray();
  for (const auto& c : m.classes) {
    w.StartObject();
    w.Key("key");
    w.StartObject();
    for (std::size_t i = 0; i < c.key.size() && i < m.qi_names.size(); ++i) {
      w.Key(m.qi_names[i].c_str());
      str(c.key[i]);
    }
    w.EndObject();
    w.Key("size");
    w.Uint64(c.size);
    w.EndObject();
  }
  w.EndArray();
  w.Key("risk");
  w.StartObject();
  w.Key("threshold");
  w.Double(m.risk.threshold);
  w.Key("prosecutor_max");
  w.Double(m.risk.prosecutor_max);
  w.Key("average");
  w.Double(m.risk.average);
  w.Key("records_at_risk");
  w.Double(m.risk.records_at_risk);
  w.EndObject();
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

Risk risk_of(const Cohort& cohort, std::size_t k) {
  Risk r;
  r.threshold = 1.0 / static_cast<double>(k);
  if (cohort.counts.included == 0 || cohort.classes.empty()) return r;
  std::size_t smallest = cohort.classes.front().size;
  std::size_t at_risk = 0;
  for (const auto& c : cohort.classes) {
    smallest = std::min(smallest, c.size);
    if (1.0 / static_cast<double>(c.size) > r.threshold) at_risk += c.size;
  }
  const auto included = static_cast<double>(cohort.counts.included);
  r.prosecutor_max = 1.0 / static_cast<double>(smallest);
  r.average = static_cast<double>(cohort.classes.size()) / included;
  r.records_at_risk = static_cast<double>(at_risk) / included;
  return r;
}

Status write_all(const Sources& sources, const Study& study, const ExportOptions& options, const Cohort& cohort,
                 const std::filesystem::path& dir, Manifest& m) {
  // CSV needs its columns before the first row: one pass to find the value slots.
  std::vector<std::string> slots;
  if (options.format == Format::kCsv) {
    std::set<std::string> codes;
    for (const auto& subject : cohort.subjects) {
      auto st = for_each_row(sources, study, subject, options.now, [&codes](const Row& row) -> Status {
        for (const auto& v : row.values) codes.insert(v.code);
        return {};
      });
      if (!st) return st;
    }
    slots.assign(codes.begin(), codes.end());
  }
  const DataWriter writer(study, options.format, slots);
  m.columns = writer.columns();

  OutFile data;
  if (auto s = data.open(dir / (options.format == Format::kCsv ? "data.csv" : "data.ndjson")); !s) return s;
  if (auto s = data.write(writer.header()); !s) return s;
  for (const auto& subject : cohort.subjects) {
    auto st = for_each_row(sources, study, subject, options.now, [&](const Row& row) -> Status {
      auto [text, lines] = writer.render(subject, row);
      m.rows += lines;
      return data.write(text);
    });
    if (!st) return st;
  }
  if (auto s = data.close(); !s) return s;

  OutFile subjects;
  if (auto s = subjects.open(dir / "subjects.csv"); !s) return s;
  std::string text = "pseudonym";
  for (const auto& n : cohort.qi_names) text += "," + n;
  text += "\n";
  for (const auto& s : cohort.subjects) {
    text += s.study_pseudonym;
    for (const auto& q : s.quasi_identifiers) text += "," + csv_field(q);
    text += "\n";
  }
  if (auto s = subjects.write(text); !s) return s;
  if (auto s = subjects.close(); !s) return s;

  OutFile manifest;
  if (auto s = manifest.open(dir / "manifest.json"); !s) return s;
  if (auto s = manifest.write(manifest_json(study, m)); !s) return s;
  if (auto s = manifest.close(); !s) return s;
  return sync_dir(dir);
}

}  // namespace

std::string_view format_name(Format f) { return f == Format::kCsv ? "csv" : "ndjson"; }

Result<Manifest> export_dataset(const Sources& sources, const Study& study, privacy::AuditLog& audit,
                                const ExportOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path out = options.out_dir.has_filename() ? options.out_dir : options.out_dir.parent_path();
  if (out.empty()) return core::fail(core::Code::kInvalidArgument, "bad_export", "no output directory given");
  if (options.user_id.empty()) return core::fail(core::Code::kInvalidArgument, "bad_export", "no user given for the audit");
  if (fs::exists(fs::symlink_status(out, ec)) && !(fs::is_directory(out, ec) && fs::is_empty(out, ec)))
    return core::fail(core::Code::kFailedPrecondition, "out_not_empty",
                      "the output directory exists and is not an empty directory");

  auto cohort = build_cohort(sources, study, options.now);
  if (!cohort) return tl::unexpected(cohort.error());

  Manifest m;
  m.study_id = study.id;
  m.created = options.now;
  m.format = options.format;
  m.dates = study.dates;
  m.k = study.k;
  m.qi_names = cohort->qi_names;
  m.qi_levels = cohort->qi_levels;
  m.counts = cohort->counts;
  m.classes = cohort->classes;
  m.risk = risk_of(*cohort, study.k);

  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  auto tag = core::random_bytes(8);
  if (!tag) return tl::unexpected(tag.error());
  const fs::path tmp = parent / ("." + out.filename().string() + ".partial-" + core::to_hex(*tag));
  if (!fs::create_directories(tmp, ec) || ec) return io_error("cannot create the temporary output directory");
  fs::permissions(tmp, fs::perms::owner_all, ec);
  auto cleanup = [&tmp]() {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
  };

  if (auto s = write_all(sources, study, options, *cohort, tmp, m); !s) {
    cleanup();
    return tl::unexpected(s.error());
  }

  privacy::AuditRecord record;
  record.event_type = "research.export";
  record.action = 'E';
  record.user_id = options.user_id;
  record.role = "research";
  record.purpose = "research";
  record.access_point = options.access_point;
  record.objects = "Study/" + study.id;
  record.query = "format=" + std::string(format_name(options.format)) + " dates=" + std::string(dates_mode_name(study.dates)) +
                 " k=" + std::to_string(study.k) + " candidates=" + std::to_string(m.counts.candidates) +
                 " included=" + std::to_string(m.counts.included) + " suppressed=" + std::to_string(m.counts.suppressed) +
                 " excluded_no_consent=" + std::to_string(m.counts.excluded_no_consent) +
                 " excluded_inclusion=" + std::to_string(m.counts.excluded_inclusion) + " rows=" + std::to_string(m.rows);
  if (auto a = audit.append(std::move(record)); !a) {
    cleanup();
    return tl::unexpected(a.error());
  }

  // rename(2) replaces an empty directory; anything else at `out` (created meanwhile) fails it.
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    cleanup();
    return core::fail(core::Code::kFailedPrecondition, "out_not_empty",
                      "the output directory could not be published (it is not empty, or not writable)");
  }
  if (auto s = sync_dir(parent); !s) return tl::unexpected(s.error());
  return m;
}

}  // namespace telehub::research
