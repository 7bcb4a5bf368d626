// Dense views as FHIR (fhir/src/dense.h) over a real SQLite store with generated data: seven
// days of minute heart rate plus blood-pressure panels. Every resource and Bundle is checked by
// the independent validator (testing::fhir_validate, including its vital-signs layer), and the
// statistics in the JSON against brute force over the generated readings.
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../../fhir/src/dense.h"
#include "telehub/fhir/router.h"
#include "telehub/formats/plausibility.h"
#include "telehub/storage/store.h"
#include "test_support.h"

using namespace telehub;

namespace {

constexpr const char* kBase = "http://fhir.test/fhir";
constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t kMinute = 60'000;
constexpr std::int64_t kT0 = 1'772'323'200'000;  // 2026-03-01T00:00:00Z
constexpr const char* kStats = "http://terminology.hl7.org/CodeSystem/observation-statistics";

template <class T>
T must(Result<T> r) {
  if (!r) FAIL("unexpected error: " << r.error().to_string());
  return std::move(*r);
}

const privacy::Pseudonymiser& pseudonymiser() {
  static const auto p = std::move(*privacy::Pseudonymiser::from_key(core::Bytes(32, 5)));
  return *p;
}

core::Reading hr(double v, std::int64_t t) {
  core::Reading r;
  r.code = "8867-4";
  r.value = v;
  r.unit = "/min";
  r.time = core::from_unix_millis(t);
  return r;
}

core::Reading bp(double s, double d, std::int64_t t) {
  core::Reading r;
  r.code = "85354-9";
  r.time = core::from_unix_millis(t);
  r.components = {{"8480-6", s, "mm[Hg]"}, {"8462-4", d, "mm[Hg]"}};
  return r;
}

// Seven days of minute heart rate (hourly messages) and four BP panels a day, partly compacted.
struct Fixture {
  testing::TempDir dir;
  privacy::SubjectPseudonym subject = pseudonymiser().subject("dense-fhir-patient");
  std::unique_ptr<storage::Store> store;
  std::vector<core::Reading> readings;

  Fixture() {
    storage::StoreOptions o;
    o.path = dir.path() / "telehub.db";
    o.sync_each_commit = false;
    o.compact_after_readings = 0;
    store = must(storage::open_sqlite_store(o, core::system_clock()));
    std::mt19937_64 rng(42);
    std::uint64_t seq = 0;
    auto append = [&](std::vector<core::Reading> rs) {
      storage::MessageBatch b;
      b.device_id = "dev-fhir-dense";
      b.sequence = ++seq;
      b.content_hash = "x" + std::to_string(seq);
      b.received_at = core::from_unix_millis(kT0 + 8 * kDay);
      for (auto& r : rs) {
        r.device = b.device_id;
        r.sequence = seq;
        readings.push_back(r);
        b.readings.push_back(privacy::PseudonymousReading::bind(std::move(r), subject));
      }
      REQUIRE(must(store->observations().append(std::move(b))) == storage::AppendOutcome::kStored);
    };
    for (std::int64_t h = 0; h < 7 * 24; ++h) {
      std::vector<core::Reading> msg;
      for (int m = 0; m < 60; ++m) msg.push_back(hr(static_cast<double>(50 + rng() % 70) + (m % 3 == 0 ? 0.5 : 0), kT0 + h * kHour + m * kMinute));
      if (h % 6 == 0) msg.push_back(bp(110 + static_cast<double>(rng() % 40), 70 + static_cast<double>(rng() % 20), kT0 + h * kHour + 17));
      append(std::move(msg));
      if (h == 100) (void)must(store->compact());  // the rest stays in the log
    }
  }
};

struct Brute {
  std::int64_t count = 0;
  double min = 0, max = 0, sum = 0;
};

// Brute force over the generated readings: per bucket start, per (component) code.
std::map<std::int64_t, std::map<std::string, Brute>> brute(const std::vector<core::Reading>& all, const std::string& code,
                                                           std::int64_t width) {
  std::map<std::int64_t, std::map<std::string, Brute>> out;
  auto add = [](Brute& b, double v) {
    if (b.count == 0) b.min = b.max = v;
    b.min = std::min(b.min, v);
    b.max = std::max(b.max, v);
    ++b.count;
    b.sum += v;
  };
  for (const auto& r : all) {
    if (r.code != code) continue;
    const auto t = core::to_unix_millis(r.time);
    auto& bucket = out[t / width * width];
    if (r.value) add(bucket[r.code], *r.value);
    for (const auto& c : r.components) add(bucket[c.code], c.value);
  }
  return out;
}

std::string statistic_of(const rapidjson::Value& component) {
  for (const auto& c : component["code"]["coding"].GetArray())
    if (std::string(c["system"].GetString()) == kStats) return c["code"].GetString();
  return {};
}

std::string member_of(const rapidjson::Value& component) {
  if (!component.HasMember("extension")) return {};
  return component["extension"][0]["valueCoding"]["code"].GetString();
}

// Checks one aggregate Observation against brute force; `code` is the series code.
void check_observation(const rapidjson::Value& o, const std::string& subject, const std::string& code,
                       storage::BucketSize size, const std::map<std::int64_t, std::map<std::string, Brute>>& expected) {
  const std::string id = o["id"].GetString();
  auto parsed = fhir::parse_aggregate_observation_id(id);
  REQUIRE(parsed);
  CHECK(parsed->subject == subject);
  CHECK(parsed->code == code);
  CHECK(parsed->size == size);
  const auto start = core::to_unix_millis(parsed->start);
  CHECK(std::string(o["effectivePeriod"]["start"].GetString()) == core::format_rfc3339(parsed->start));
  CHECK(std::string(o["effectivePeriod"]["end"].GetString()) ==
        core::format_rfc3339(core::from_unix_millis(start + storage::bucket_millis(size))));
  CHECK(std::string(o["status"].GetString()) == "final");
  CHECK(std::string(o["meta"]["tag"][0]["code"].GetString()) ==
        (size == storage::BucketSize::kHour ? "aggregate-hour" : "aggregate-day"));
  CHECK(std::string(o["subject"]["reference"].GetString()) == "Patient/" + subject);
  CHECK(std::string(o["code"]["coding"][0]["code"].GetString()) == code);
  const auto it = expected.find(start);
  REQUIRE(it != expected.end());
  const auto& stats = it->second;
  if (o.HasMember("valueQuantity")) {
    const auto& b = stats.at(code);
    CHECK(o["valueQuantity"]["value"].GetDouble() == Approx(b.sum / static_cast<double>(b.count)).epsilon(1e-12));
  }
  std::map<std::string, int> seen;
  for (const auto& c : o["component"].GetArray()) {
    const auto statistic = statistic_of(c);
    if (statistic.empty()) {  // a panel member with its mean
      const std::string member = c["code"]["coding"][0]["code"].GetString();
      const auto& b = stats.at(member);
      CHECK(c["valueQuantity"]["value"].GetDouble() == Approx(b.sum / static_cast<double>(b.count)).epsilon(1e-12));
      continue;
    }
    const std::string of = member_of(c).empty() ? code : member_of(c);
    const auto& b = stats.at(of);
    ++seen[of + "/" + statistic];
    if (statistic == "count") CHECK(c["valueInteger"].GetInt64() == b.count);
    else if (statistic == "minimum") CHECK(c["valueQuantity"]["value"].GetDouble() == b.min);
    else if (statistic == "maximum") CHECK(c["valueQuantity"]["value"].GetDouble() == b.max);
    else if (statistic == "average")
      CHECK(c["valueQuantity"]["value"].GetDouble() == Approx(b.sum / static_cast<double>(b.count)).epsilon(1e-12));
    else FAIL("unexpected statistic " << statistic);
  }
  for (const auto& [of, b] : stats)
    for (const char* s : {"average", "minimum", "maximum", "count"}) CHECK(seen[of + "/" + s] == 1);
}

void require_valid(const std::vector<std::string>& docs) {
  auto v = testing::fhir_validate(docs);
  INFO(v.output);
  REQUIRE(v.exit_code == 0);
}

}  // namespace

TEST_CASE("aggregate Observations and Bundles are valid and match brute force", "[fhir][dense]") {
  Fixture f;
  const std::string subject = f.subject.str();
  std::vector<std::string> docs;
  for (auto size : {storage::BucketSize::kHour, storage::BucketSize::kDay}) {
    for (const std::string code : {"8867-4", "85354-9"}) {
      INFO(code << (size == storage::BucketSize::kHour ? " hourly" : " daily"));
      storage::AggregateQuery q;
      q.subject = subject;
      q.code = code;
      q.bucket = size;
      q.from = core::from_unix_millis(kT0);
      q.to = core::from_unix_millis(kT0 + 7 * kDay);
      auto buckets = must(f.store->observations().aggregate(q));
      const auto expected = brute(f.readings, code, storage::bucket_millis(size));
      REQUIRE(buckets.size() == expected.size());

      // One Observation on its own.
      const auto one = fhir::aggregate_observation_json(buckets.front(), subject, code, size);
      REQUIRE_FALSE(one.empty());
      docs.push_back(one);

      // The page as a searchset Bundle.
      fhir::BundleLinks links{kBase, std::string(kBase) + "/Observation?_aggregate=x", ""};
      const auto bundle = fhir::aggregate_bundle_json({{code, buckets}}, subject, size, links);
      docs.push_back(bundle);
      rapidjson::Document d;
      d.Parse(bundle.c_str(), bundle.size());
      REQUIRE_FALSE(d.HasParseError());
      CHECK(std::string(d["type"].GetString()) == "searchset");
      REQUIRE(d["entry"].Size() == buckets.size());
      CHECK(d["total"].GetUint64() == buckets.size());
      for (const auto& e : d["entry"].GetArray()) {
        const auto& o = e["resource"];
        CHECK(std::string(e["fullUrl"].GetString()) == std::string(kBase) + "/Observation/" + o["id"].GetString());
        check_observation(o, subject, code, size, expected);
      }
    }
  }
  require_valid(docs);
}

TEST_CASE("aggregate ids encode bucket, subject and code and fit a FHIR id", "[fhir][dense]") {
  const std::string subject(32, 'a');
  const auto start = core::from_unix_millis(kT0 + 5 * kHour);
  auto id = fhir::aggregate_observation_id(subject, "8867-4", storage::BucketSize::kHour, start);
  REQUIRE(id);
  CHECK(*id == "agg.h." + std::to_string((kT0 + 5 * kHour) / kHour) + "." + subject + ".8867-4");
  CHECK(fhir::valid_fhir_id(*id));
  auto parsed = fhir::parse_aggregate_observation_id(*id);
  REQUIRE(parsed);
  CHECK(parsed->start == start);
  CHECK(parsed->subject == subject);
  CHECK(parsed->code == "8867-4");

  auto day = fhir::aggregate_observation_id(subject, "85354-9", storage::BucketSize::kDay, core::from_unix_millis(kT0));
  REQUIRE(day);
  CHECK(*day == "agg.d." + std::to_string(kT0 / kDay) + "." + subject + ".85354-9");

  // Too long with the pseudonym: left out, and said so by the parse.
  auto longer = fhir::aggregate_observation_id(subject, "irregular-heartbeat", storage::BucketSize::kHour, start);
  REQUIRE(longer);
  CHECK(fhir::valid_fhir_id(*longer));
  CHECK(longer->find(subject) == std::string::npos);
  auto p2 = fhir::parse_aggregate_observation_id(*longer);
  REQUIRE(p2);
  CHECK(p2->subject.empty());
  CHECK(p2->code == "irregular-heartbeat");

  CHECK_FALSE(fhir::aggregate_observation_id(subject, "a|b", storage::BucketSize::kHour, start));
  CHECK_FALSE(fhir::aggregate_observation_id(subject, std::string(70, 'x'), storage::BucketSize::kHour, start));
  for (const char* bad : {"123", "agg.x.1.8867-4", "agg.h.1x.8867-4", "agg.h.1", "agg.h..8867-4", "agg.h.1.a.b.c"})
    CHECK_FALSE(fhir::parse_aggregate_observation_id(bad));
}

TEST_CASE("lastn Bundle groups the newest readings by code and is valid", "[fhir][dense]") {
  Fixture f;
  const std::string subject = f.subject.str();
  fhir::RouterOptions options;
  options.base_url = kBase;
  fhir::Router router(*f.store, options);
  auto call = [&](const std::string& target) {
    return router.handle(fhir::Request{"GET", target, {}, "", "127.0.0.1:1", true});
  };
  const auto response = call("/fhir/Observation/$lastn?patient=" + subject + "&max=3");
  REQUIRE(response.status == 200);
  const std::string& bundle = response.body;
  rapidjson::Document d;
  d.Parse(bundle.c_str(), bundle.size());
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d["entry"].Size() == 6);  // 3 heart rates, 3 panels
  CHECK(d["total"].GetInt() == 6);
  // Grouped by the LOINC coding (ascending), newest first within a group.
  std::vector<std::pair<std::string, std::string>> order;
  for (const auto& e : d["entry"].GetArray())
    order.emplace_back(e["resource"]["code"]["coding"][0]["code"].GetString(),
                       e["resource"]["effectiveDateTime"].GetString());
  CHECK(order[0].first == "85354-9");
  CHECK(order[3].first == "8867-4");
  CHECK(order[0].second > order[1].second);
  CHECK(order[3].second > order[4].second);
  // Brute force: the newest heart rate is the last minute of the seven days.
  CHECK(order[3].second == core::format_rfc3339(core::from_unix_millis(kT0 + 7 * kDay - kMinute)));
  const auto none = call("/fhir/Observation/$lastn?patient=" + subject + "&code=29463-7");
  REQUIRE(none.status == 200);
  require_valid({bundle, none.body});
}

TEST_CASE("dense request parameters: _aggregate and lastn", "[fhir][dense]") {
  const std::string p = pseudonymiser().subject("someone").str();
  fhir::SearchLimits limits{kBase, 50, 1000};
  auto q = [](std::string_view text) { return *fhir::parse_query(text); };

  CHECK(fhir::wants_aggregate(q("patient=x&_aggregate=hour")));
  CHECK_FALSE(fhir::wants_aggregate(q("patient=x&code=8867-4")));

  auto ok = fhir::parse_aggregate_request(q("_aggregate=day&patient=" + p + "&code=8867-4&date=ge2026-03-01&date=lt2026-03-08"), limits);
  REQUIRE(ok);
  CHECK(ok->size == storage::BucketSize::kDay);
  CHECK(ok->subject == p);
  CHECK(ok->codes == std::vector<std::string>{"8867-4"});
  CHECK(ok->from == core::from_unix_millis(kT0));
  CHECK(ok->to == core::from_unix_millis(kT0 + 7 * kDay));
  CHECK_FALSE(ok->matches_nothing);
  CHECK(std::any_of(ok->link_params.begin(), ok->link_params.end(), [](const auto& x) { return x.name == "_aggregate"; }));

  auto hour = fhir::parse_aggregate_request(q("_aggregate=hour&patient=" + p + "&code=http://loinc.org|8867-4"), limits);
  REQUIRE(hour);
  CHECK(hour->size == storage::BucketSize::kHour);

  auto fails = [&](std::string text, const char* code) {
    INFO(text);
    auto r = fhir::parse_aggregate_request(q(text), limits);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == code);
    CHECK(r.error().severity == "error");
  };
  fails("_aggregate=week&patient=" + p + "&code=8867-4", "value");
  fails("_aggregate=hour&_aggregate=day&patient=" + p + "&code=8867-4", "value");
  fails("_aggregate=hour&patient=" + p, "required");
  fails("_aggregate=hour&code=8867-4", "required");
  fails("_aggregate=hour&patient=" + p + "&code=8867-4&_cursor=1.2", "not-supported");
  fails("_aggregate:exact=hour&patient=" + p + "&code=8867-4", "not-supported");
  fails("_aggregate=hour&patient=" + p + "&code=8867-4&date=2026-13-01", "value");

  auto lastn = fhir::parse_lastn_request(q("patient=" + p), limits);
  REQUIRE(lastn);
  CHECK(lastn->max == 1);
  CHECK(lastn->codes.empty());
  CHECK_FALSE(lastn->matches_nothing);
  auto lastn2 = fhir::parse_lastn_request(q("patient=" + p + "&code=8867-4,85354-9&max=5"), limits);
  REQUIRE(lastn2);
  CHECK(lastn2->max == 5);
  CHECK(lastn2->codes == std::vector<std::string>{"85354-9", "8867-4"});
  auto lastn_fails = [&](std::string text, const char* code) {
    INFO(text);
    auto r = fhir::parse_lastn_request(q(text), limits);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == code);
  };
  lastn_fails("patient=" + p + "&max=0", "value");
  lastn_fails("patient=" + p + "&max=1001", "value");
  lastn_fails("patient=" + p + "&max=abc", "value");
  lastn_fails("patient=" + p + "&max=2&max=3", "value");
  lastn_fails("patient=" + p + "&date=ge2026-01-01", "not-supported");
  lastn_fails("max=3", "required");
}
