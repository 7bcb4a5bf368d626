// Aggregate queries and the FHIR dataset of a study (query.h).
#include "telehub/research/query.h"

#include <algorithm>
#include <charconv>
#include <chrono>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "telehub/core/codes.h"

namespace telehub::research {

namespace {

core::Error bad_query(std::string message) {
  return core::make_error(core::Code::kInvalidArgument, "bad_query", std::move(message));
}

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  for (std::size_t b = 0;;) {
    const auto c = text.find(',', b);
    std::string part = text.substr(b, c == std::string::npos ? std::string::npos : c - b);
    if (!part.empty()) out.push_back(std::move(part));
    if (c == std::string::npos) break;
    b = c + 1;
  }
  return out;
}

bool parse_number(std::string_view text, double& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void member(Writer& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void coding(Writer& w, std::string_view code) {
  const core::CodeInfo* info = core::find_code(code);
  w.StartObject();
  member(w, "system", info ? info->system : core::kLoincSystem);
  member(w, "code", code);
  if (info) member(w, "display", info->display);
  w.EndObject();
}

void quantity(Writer& w, double value, std::string_view unit) {
  w.StartObject();
  w.Key("value");
  w.Double(value);
  if (!unit.empty()) {
    member(w, "unit", unit);
    member(w, "system", core::kUcumSystem);
    member(w, "code", unit);
  }
  w.EndObject();
}

// A nominal enrolment for "relative" studies: times are counted from it.
constexpr std::int64_t kNominalEnrolmentMs = 946'684'800'000;  // 2000-01-01T00:00:00Z

}  // namespace

Result<StudyQuery> parse_study_query(const std::vector<std::pair<std::string, std::string>>& params) {
  StudyQuery q;
  std::vector<std::string> seen;
  for (const auto& [name, value] : params) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end())
      return tl::unexpected(bad_query(name + ": given more than once"));
    seen.push_back(name);
    if (name == "code") {
      if (value.empty()) return tl::unexpected(bad_query("code: empty"));
      q.code = value;
    } else if (name == "group-by") {
      q.group_by = split_commas(value);
    } else if (name == "period") {
      auto p = parse_period(value);
      if (!p) return tl::unexpected(bad_query("period: must be all, day, week, month or year"));
      q.period = *p;
    } else if (name == "percentiles") {
      q.percentiles.clear();
      for (const auto& part : split_commas(value)) {
        double p = 0;
        if (!parse_number(part, p) || !(p >= 0 && p <= 100))
          return tl::unexpected(bad_query("percentiles: numbers from 0 to 100, comma-separated"));
        q.percentiles.push_back(p);
      }
    } else if (name == "min-subjects") {
      double n = 0;
      if (!parse_number(value, n) || n < 2 || n > 1e6 || n != static_cast<double>(static_cast<std::int64_t>(n)))
        return tl::unexpected(bad_query("min-subjects: an integer of at least 2"));
      q.min_subjects = static_cast<std::int64_t>(n);
    } else {
      return tl::unexpected(bad_query("unknown parameter (code, group-by, period, percentiles, min-subjects)"));
    }
  }
  if (q.code.empty()) return tl::unexpected(bad_query("code: required"));
  return q;
}

Result<AggregateTable> aggregate_study(const Sources& sources, const Study& study, const StudyQuery& query,
                                       core::TimePoint now) {
  auto cohort = build_cohort(sources, study, now);
  if (!cohort) return tl::unexpected(cohort.error());
  std::vector<std::size_t> columns;  // indexes into quasi_identifiers
  for (const auto& name : query.group_by) {
    const auto it = std::find(cohort->qi_names.begin(), cohort->qi_names.end(), name);
    if (it == cohort->qi_names.end()) {
      std::string kept;
      for (const auto& n : cohort->qi_names) kept += (kept.empty() ? "" : ", ") + n;
      return tl::unexpected(bad_query("group-by: " + name + " is not a quasi-identifier of the study (it keeps: " +
                                      (kept.empty() ? std::string("none") : kept) + ")"));
    }
    columns.push_back(static_cast<std::size_t>(it - cohort->qi_names.begin()));
  }
  const bool variable = std::any_of(study.variables.begin(), study.variables.end(),
                                    [&](const Variable& v) { return v.code == query.code; });
  // Rows of the asked variable only (or of the panels, one of which holds the member), without
  // exposures: the table uses neither the other variables nor the exposure lookups.
  Study rows_of = study;
  rows_of.environment.clear();
  std::erase_if(rows_of.variables, [&](const Variable& v) {
    if (variable) return v.code != query.code;
    const core::CodeInfo* info = core::find_code(v.code);
    return !(info && info->panel);
  });
  bool member_seen = false;
  std::vector<AggregateInput> inputs;
  for (const auto& subject : cohort->subjects) {
    std::string group;
    for (std::size_t i = 0; i < columns.size(); ++i)
      group += (i ? "|" : "") + subject.quasi_identifiers[columns[i]];
    auto status = for_each_row(sources, rows_of, subject, now, [&](const Row& row) -> Status {
      for (const auto& v : row.values) {
        if (v.code != query.code) continue;
        member_seen = true;
        inputs.push_back({group, period_key(row.time, query.period), subject.study_pseudonym, v.value});
      }
      return {};
    });
    if (!status) return tl::unexpected(status.error());
  }
  if (!variable && !member_seen) return tl::unexpected(bad_query("code: not a variable of the study (nor a member of one)"));
  AggregateSpec spec;
  spec.min_subjects = std::max<std::int64_t>(query.min_subjects, static_cast<std::int64_t>(study.k));
  spec.min_subjects = std::max<std::int64_t>(spec.min_subjects, 2);
  spec.percentiles = query.percentiles;
  auto table = aggregate(inputs, spec);
  if (!table) return tl::unexpected(bad_query(table.error().message));
  return table;
}

Status write_fhir_dataset(const Sources& sources, const Study& study, core::TimePoint now,
                          const std::vector<std::string>& types, const WriteFn& write) {
  for (const auto& t : types)
    if (t != "Patient" && t != "Observation")
      return tl::unexpected(bad_query("_type: a study export offers Patient and Observation"));
  auto wants = [&](std::string_view t) { return types.empty() || std::find(types.begin(), types.end(), t) != types.end(); };
  auto cohort = build_cohort(sources, study, now);
  if (!cohort) return tl::unexpected(cohort.error());
  Study rows_of = study;
  rows_of.environment.clear();  // the FHIR dataset carries no exposures: no lookups
  for (const auto& subject : cohort->subjects) {
    const std::string& sp = subject.study_pseudonym;
    if (wants("Patient")) {
      rapidjson::StringBuffer b;
      Writer w(b);
      w.StartObject();
      member(w, "resourceType", "Patient");
      member(w, "id", sp);
      w.Key("meta");
      w.StartObject();
      w.Key("tag");
      w.StartArray();
      w.StartObject();
      member(w, "system", "https://telehub.example.org/fhir/CodeSystem/research");
      member(w, "code", "pseudonymised");
      member(w, "display", "Pseudonymised research subject (study " + study.id + ")");
      w.EndObject();
      w.EndArray();
      w.EndObject();
      std::vector<std::pair<std::string, std::string>> extensions;
      std::string gender;
      for (std::size_t i = 0; i < cohort->qi_names.size(); ++i) {
        const auto& name = cohort->qi_names[i];
        const auto& value = subject.quasi_identifiers[i];
        if (value.empty() || value == "*") continue;
        if (name == "sex") {
          if (value == "male" || value == "female" || value == "other" || value == "unknown") gender = value;
        } else {
          extensions.emplace_back("https://telehub.example.org/fhir/StructureDefinition/research-" + name, value);
        }
      }
      if (!extensions.empty()) {
        w.Key("extension");
        w.StartArray();
        for (const auto& [url, value] : extensions) {
          w.StartObject();
          member(w, "url", url);
          member(w, "valueString", value);
          w.EndObject();
        }
        w.EndArray();
      }
      if (!gender.empty()) member(w, "gender", gender);
      w.EndObject();
      if (auto s = write("Patient", b.GetString()); !s) return s;
    }
    if (!wants("Observation")) continue;
    std::int64_t n = 0;
    auto status = for_each_row(sources, rows_of, subject, now, [&](const Row& row) -> Status {
      if (row.values.empty()) return {};
      // The time shown: shifted, or counted from the nominal enrolment.
      const core::TimePoint shown =
          study.dates == DatesMode::kRelative
              ? core::from_unix_millis(kNominalEnrolmentMs + core::to_unix_millis(row.time) - core::to_unix_millis(subject.enrolled_at))
              : row.shifted;
      rapidjson::StringBuffer b;
      Writer w(b);
      w.StartObject();
      member(w, "resourceType", "Observation");
      member(w, "id", sp.substr(0, 16) + "-" + std::to_string(++n));
      member(w, "status", "final");
      const core::CodeInfo* info = core::find_code(row.code);
      if (info && info->vital_sign) {
        w.Key("category");
        w.StartArray();
        w.StartObject();
        w.Key("coding");
        w.StartArray();
        w.StartObject();
        member(w, "system", "http://terminology.hl7.org/CodeSystem/observation-category");
        member(w, "code", "vital-signs");
        w.EndObject();
        w.EndArray();
        w.EndObject();
        w.EndArray();
      }
      w.Key("code");
      w.StartObject();
      w.Key("coding");
      w.StartArray();
      coding(w, row.code);
      w.EndArray();
      w.EndObject();
      w.Key("subject");
      w.StartObject();
      member(w, "reference", "Patient/" + sp);
      w.EndObject();
      if (row.aggregation == Aggregation::kRaw) {
        member(w, "effectiveDateTime", core::format_rfc3339(shown));
      } else {
        const auto span = row.aggregation == Aggregation::kHourly ? std::chrono::hours(1) : std::chrono::hours(24);
        w.Key("effectivePeriod");
        w.StartObject();
        member(w, "start", core::format_rfc3339(shown));
        member(w, "end", core::format_rfc3339(shown + span));
        w.EndObject();
      }
      const bool single = row.values.size() == 1 && row.values.front().code == row.code;
      if (single) {
        w.Key("valueQuantity");
        quantity(w, row.values.front().value, row.values.front().unit);
      } else {
        w.Key("component");
        w.StartArray();
        for (const auto& v : row.values) {
          w.StartObject();
          w.Key("code");
          w.StartObject();
          w.Key("coding");
          w.StartArray();
          coding(w, v.code);
          w.EndArray();
          w.EndObject();
          w.Key("valueQuantity");
          quantity(w, v.value, v.unit);
          w.EndObject();
        }
        w.EndArray();
      }
      if (row.aggregation != Aggregation::kRaw) {
        w.Key("note");
        w.StartArray();
        w.StartObject();
        member(w, "text", std::string(row.aggregation == Aggregation::kHourly ? "Hourly" : "Daily") + " mean of " +
                              std::to_string(row.count) + " readings");
        w.EndObject();
        w.EndArray();
      }
      w.EndObject();
      return write("Observation", b.GetString());
    });
    if (!status) return status;
  }
  return {};
}

}  // namespace telehub::research
