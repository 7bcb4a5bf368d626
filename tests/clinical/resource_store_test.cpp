#include "telehub/clinical/resource_store.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>
#include <set>

#include "test_support.h"

using namespace telehub;
using clinical::Prefix;
using clinical::ResourceStore;
using clinical::ResourceWrite;
using clinical::WriteOutcome;

namespace {

class StepClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return core::from_unix_millis(ms_ += 1000); }
  mutable std::int64_t ms_ = 1'700'000'000'000;
};

const std::string kPs = "0123456789abcdef0123456789abcdef";
const std::string kOther = "fedcba9876543210fedcba9876543210";

std::string observation(const std::string& subject, const std::string& code, const std::string& effective,
                        double value, const std::string& category = "vital-signs") {
  return R"({"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":")" +
         category + R"("}]}],"code":{"coding":[{"system":"http://loinc.org","code":")" + code +
         R"("}]},"subject":{"reference":"Patient/)" + subject + R"("},"effectiveDateTime":")" + effective +
         R"(","valueQuantity":{"value":)" + std::to_string(value) +
         R"(,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}})";
}

ResourceWrite create(std::string type, std::string json) {
  ResourceWrite w;
  w.type = std::move(type);
  w.json = std::move(json);
  return w;
}

std::set<std::string> ids_of(const clinical::Page& p) {
  std::set<std::string> out;
  for (const auto& r : p.resources) out.insert(r.id);
  return out;
}

struct Fixture {
  testing::TempDir dir;
  StepClock clock;
  std::unique_ptr<ResourceStore> store;
  Fixture() {
    auto s = ResourceStore::open(dir.path() / "clinical.db", clock);
    REQUIRE(s);
    store = std::move(*s);
  }
  std::string add(const std::string& type, const std::string& json) {
    auto r = store->write(create(type, json));
    REQUIRE(r);
    return r->id;
  }
};

}  // namespace

TEST_CASE("clinical store: create, update, versions, vread and history", "[clinical]") {
  Fixture f;
  auto c = f.store->write(create("Observation", observation(kPs, "29463-7", "2020-01-02T10:00:00+01:00", 80)));
  REQUIRE(c);
  CHECK(c->outcome == WriteOutcome::kCreated);
  CHECK(c->version == 1);
  CHECK(c->id.size() == 32);
  ResourceWrite u;
  u.mode = ResourceWrite::Mode::kUpdate;
  u.type = "Observation";
  u.id = c->id;
  u.json = observation(kPs, "29463-7", "2020-01-02T10:00:00+01:00", 81);
  auto v2 = f.store->write(u);
  REQUIRE(v2);
  CHECK(v2->outcome == WriteOutcome::kUpdated);
  CHECK(v2->version == 2);
  auto same = f.store->write(u);
  REQUIRE(same);
  CHECK(same->outcome == WriteOutcome::kUnchanged);
  CHECK(same->version == 2);

  auto cur = f.store->read("Observation", c->id);
  REQUIRE(cur);
  REQUIRE(*cur);
  CHECK((*cur)->version == 2);
  CHECK((*cur)->subject == kPs);
  CHECK((*cur)->json.find(R"("meta":{"versionId":"2","lastUpdated":")") != std::string::npos);
  CHECK((*cur)->json.find(R"("id":")" + c->id + "\"") != std::string::npos);
  auto v1 = f.store->vread("Observation", c->id, 1);
  REQUIRE(v1);
  REQUIRE(*v1);
  CHECK((*v1)->json.find("\"value\":80") != std::string::npos);
  auto none = f.store->vread("Observation", c->id, 3);
  REQUIRE(none);
  CHECK(!*none);
  auto h = f.store->history("Observation", c->id);
  REQUIRE(h);
  REQUIRE(h->size() == 2);
  CHECK((*h)[0].version == 2);
  CHECK((*h)[1].version == 1);

  // PUT of an unknown id creates it.
  u.id = "hospital-1";
  auto put = f.store->write(u);
  REQUIRE(put);
  CHECK(put->outcome == WriteOutcome::kCreated);
  CHECK(put->id == "hospital-1");

  // Refusals.
  CHECK(f.store->write(create("Patient", R"({"resourceType":"Patient"})")).error().reason == "bad_resource");
  CHECK(f.store->write(create("Observation", R"({"resourceType":"Condition"})")).error().reason == "bad_resource");
  CHECK(f.store->write(create("Observation", "{not json")).error().reason == "bad_resource");
}

TEST_CASE("clinical store: identical content is deduped on create", "[clinical]") {
  Fixture f;
  const auto json = observation(kPs, "29463-7", "2020-01-02", 80);
  auto a = f.store->write(create("Observation", json));
  REQUIRE(a);
  // Same content with another id, meta and member order: still identical.
  auto b = f.store->write(create("Observation", R"({"id":"x","meta":{"versionId":"9"},)" + json.substr(1)));
  REQUIRE(b);
  CHECK(b->outcome == WriteOutcome::kExisting);
  CHECK(b->id == a->id);
  auto found = f.store->find_identical("Observation", json);
  REQUIRE(found);
  REQUIRE(*found);
  CHECK((*found)->id == a->id);
  // Another subject is another resource.
  auto c = f.store->write(create("Observation", observation(kOther, "29463-7", "2020-01-02", 80)));
  REQUIRE(c);
  CHECK(c->outcome == WriteOutcome::kCreated);
  auto counts = f.store->count_by_type();
  REQUIRE(counts);
  REQUIRE(counts->size() == 1);
  CHECK((*counts)[0].second == 2);
}

TEST_CASE("clinical store: token, subject, id and lastUpdated queries", "[clinical]") {
  Fixture f;
  auto w1 = f.add("Observation", observation(kPs, "29463-7", "2020-01-02", 80));
  auto w2 = f.add("Observation", observation(kPs, "8302-2", "2020-01-03", 180));
  auto w3 = f.add("Observation", observation(kOther, "29463-7", "2020-01-04", 70, "laboratory"));
  auto cond = f.add("Condition", R"({"resourceType":"Condition","clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"code":{"coding":[{"system":"http://snomed.info/sct","code":"88805009"}]},"subject":{"reference":"Patient/)" + kPs + R"("},"onsetDateTime":"2019-05"})");
  auto enc = f.add("Encounter", R"({"resourceType":"Encounter","status":"finished","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},"subject":{"reference":"Patient/)" + kPs + R"("},"period":{"start":"2020-01-02T09:00:00Z","end":"2020-01-02T10:00:00Z"}})");

  auto search = [&](clinical::Query q) {
    auto p = f.store->search(q);
    REQUIRE(p);
    auto n = f.store->count(q);
    REQUIRE(n);
    CHECK(*n == static_cast<std::int64_t>(p->resources.size()));
    return ids_of(*p);
  };
  clinical::Query q;
  q.type = "Observation";
  q.tokens = {{"code", "http://loinc.org", "29463-7"}};
  CHECK(search(q) == std::set<std::string>{w1, w3});
  q.tokens = {{"code", "", "29463-7"}, {"code", "", "8302-2"}};  // OR
  CHECK(search(q) == std::set<std::string>{w1, w2, w3});
  q.tokens.push_back({"category", "", "laboratory"});  // AND
  CHECK(search(q) == std::set<std::string>{w3});
  q.tokens = {{"code", "http://other", "29463-7"}};
  CHECK(search(q).empty());
  q.tokens.clear();
  q.subject = kPs;
  CHECK(search(q) == std::set<std::string>{w1, w2});
  q.subject.reset();
  q.ids = {w2, w3, "nope"};
  CHECK(search(q) == std::set<std::string>{w2, w3});
  q.ids.clear();
  // _lastUpdated: each write is one second later.
  auto r2 = f.store->read("Observation", w2);
  REQUIRE(r2);
  q.last_updated_from = (*r2)->last_updated;
  CHECK(search(q) == std::set<std::string>{w2, w3});
  q.last_updated_to = (*r2)->last_updated + core::Millis(1);
  CHECK(search(q) == std::set<std::string>{w2});

  clinical::Query c;
  c.type = "Condition";
  c.tokens = {{"clinical-status", "", "active"}};
  CHECK(search(c) == std::set<std::string>{cond});
  clinical::Query e;
  e.type = "Encounter";
  e.tokens = {{"class", "", "AMB"}, {"status", "", "finished"}};
  CHECK(search(e) == std::set<std::string>{enc});
  e.tokens = {{"status", "", "planned"}};
  CHECK(search(e).empty());
}

TEST_CASE("clinical store: date prefixes with partial dates", "[clinical]") {
  Fixture f;
  auto jan2 = f.add("Observation", observation(kPs, "1", "2020-01-02T10:00:00+01:00", 1));
  auto jan = f.add("Observation", observation(kPs, "2", "2020-01", 1));   // the whole month
  auto feb = f.add("Observation", observation(kPs, "3", "2020-02-15", 1));
  auto none = f.add("Observation", R"({"resourceType":"Observation","status":"final","code":{"text":"x"}})");

  auto range = [](const char* text) {
    auto r = clinical::fhir_date_range(text);
    REQUIRE(r);
    return *r;
  };
  CHECK(range("2020").to_ms - range("2020").from_ms == 366LL * 86'400'000);
  CHECK(range("2020-02").to_ms - range("2020-02").from_ms == 29LL * 86'400'000);
  CHECK(range("2020-01-02T10:00:00+01:00").from_ms == range("2020-01-02T09:00:00Z").from_ms);
  CHECK(range("2020-01-02T10:00:00.5Z").to_ms - range("2020-01-02T10:00:00.5Z").from_ms == 1);
  CHECK(!clinical::fhir_date_range("2020-13"));
  CHECK(!clinical::fhir_date_range("2020-02-30"));

  auto search = [&](Prefix p, const char* value) {
    clinical::Query q;
    q.type = "Observation";
    q.dates = {{p, range(value)}};
    auto page = f.store->search(q);
    REQUIRE(page);
    return ids_of(*page);
  };
  using S = std::set<std::string>;
  CHECK(search(Prefix::kEq, "2020-01") == S{jan2, jan});
  CHECK(search(Prefix::kEq, "2020-01-02") == S{jan2});
  CHECK(search(Prefix::kNe, "2020-01-02") == S{jan, feb});
  CHECK(search(Prefix::kEq, "2020") == S{jan2, jan, feb});
  CHECK(search(Prefix::kGt, "2020-01-02") == S{jan, feb});  // the month of January reaches beyond Jan 2
  CHECK(search(Prefix::kLt, "2020-01-02") == S{jan});
  CHECK(search(Prefix::kGe, "2020-01-02") == S{jan2, jan, feb});
  CHECK(search(Prefix::kLe, "2020-01-31") == S{jan2, jan});
  CHECK(search(Prefix::kSa, "2020-01") == S{feb});
  CHECK(search(Prefix::kEb, "2020-02") == S{jan2, jan});
  CHECK(search(Prefix::kGt, "2020-02") == S{});
  // Two date params are AND-ed: a range.
  clinical::Query q;
  q.type = "Observation";
  q.dates = {{Prefix::kGe, range("2020-01-15")}, {Prefix::kLt, range("2020-03")}};
  auto page = f.store->search(q);
  REQUIRE(page);
  CHECK(ids_of(*page) == S{jan, feb});
  (void)none;
}

TEST_CASE("clinical store: value-quantity comparisons", "[clinical]") {
  Fixture f;
  auto a = f.add("Observation", observation(kPs, "29463-7", "2020-01-01", 80.5));
  auto b = f.add("Observation", observation(kPs, "29463-7", "2020-01-02", 90));
  auto search = [&](clinical::QuantityParam p) {
    clinical::Query q;
    q.type = "Observation";
    q.quantities = {p};
    auto page = f.store->search(q);
    REQUIRE(page);
    return ids_of(*page);
  };
  using S = std::set<std::string>;
  clinical::QuantityParam p;
  p.prefix = Prefix::kGt;
  p.value = 85;
  CHECK(search(p) == S{b});
  p.prefix = Prefix::kLe;
  p.value = 90;
  CHECK(search(p) == S{a, b});
  p.prefix = Prefix::kEq;
  p.low = 80.45;
  p.high = 80.55;
  CHECK(search(p) == S{a});
  p.system = "http://unitsofmeasure.org";
  p.code = "kg";
  CHECK(search(p) == S{a});
  p.code = "g";
  CHECK(search(p).empty());
  p.code.clear();
  p.prefix = Prefix::kNe;
  CHECK(search(p) == S{b});
}

TEST_CASE("clinical store: sorting and keyset paging stay correct while resources arrive", "[clinical]") {
  Fixture f;
  std::vector<std::string> by_date;
  for (int i = 0; i < 10; ++i) {
    // Dates in reverse of write order.
    by_date.insert(by_date.begin(),
                   f.add("Observation", observation(kPs, "c", "2020-01-" + std::to_string(20 - i), i)));
  }
  clinical::Query q;
  q.type = "Observation";
  q.sort = clinical::SortBy::kDate;
  q.limit = 3;
  std::vector<std::string> seen;
  int pages = 0;
  for (;;) {
    auto page = f.store->search(q);
    REQUIRE(page);
    for (const auto& r : page->resources) seen.push_back(r.id);
    // New resources arrive between pages: one dated before everything, one after.
    if (pages == 0) {
      f.add("Observation", observation(kPs, "c", "2019-01-01", 100));
      by_date.push_back(f.add("Observation", observation(kPs, "c", "2021-01-01", 101)));
    }
    ++pages;
    if (page->next_cursor.empty()) break;
    q.cursor = page->next_cursor;
  }
  CHECK(seen == by_date);  // no repeat, no gap; the earlier one falls before the cursor
  // Descending by _lastUpdated.
  clinical::Query d;
  d.type = "Observation";
  d.descending = true;
  d.limit = 5;
  auto first = f.store->search(d);
  REQUIRE(first);
  REQUIRE(first->resources.size() == 5);
  CHECK(first->resources[0].last_updated > first->resources[4].last_updated);
  // A cursor of another order is refused.
  q.cursor = first->next_cursor;
  CHECK(f.store->search(q).error().reason == "bad_query");
  q.cursor = "zz";
  CHECK(f.store->search(q).error().reason == "bad_query");
}

TEST_CASE("clinical store: write_all is all or nothing", "[clinical]") {
  Fixture f;
  std::vector<ResourceWrite> writes = {create("Observation", observation(kPs, "a", "2020-01-01", 1)),
                                       create("Observation", observation(kPs, "b", "2020-01-01", 2)),
                                       create("Observation", R"({"resourceType":"Condition"})")};
  auto r = f.store->write_all(writes);
  REQUIRE(!r);
  CHECK(r.error().message.starts_with("write[2]: "));
  auto counts = f.store->count_by_type();
  REQUIRE(counts);
  CHECK(counts->empty());
  writes.pop_back();
  auto ok = f.store->write_all(writes);
  REQUIRE(ok);
  CHECK(ok->size() == 2);
}

TEST_CASE("clinical store: of_subject pages, erase_subject removes every version, data survives reopen",
          "[clinical]") {
  testing::TempDir dir;
  StepClock clock;
  std::string kept;
  {
    auto store = ResourceStore::open(dir.path() / "clinical.db", clock);
    REQUIRE(store);
    for (int i = 0; i < 7; ++i) {
      auto w = (*store)->write(create("Observation", observation(kPs, "c" + std::to_string(i), "2020-01-01", i)));
      REQUIRE(w);
    }
    auto cond = (*store)->write(create("Condition", R"({"resourceType":"Condition","subject":{"reference":"Patient/)" +
                                                        kPs + R"("},"note":[{"text":"secret-note-text"}]})"));
    REQUIRE(cond);
    ResourceWrite u;
    u.mode = ResourceWrite::Mode::kUpdate;
    u.type = "Condition";
    u.id = cond->id;
    u.json = R"({"resourceType":"Condition","subject":{"reference":"Patient/)" + kPs + R"("},"note":[{"text":"v2"}]})";
    REQUIRE((*store)->write(u));
    auto other = (*store)->write(create("Observation", observation(kOther, "c", "2020-01-01", 1)));
    REQUIRE(other);
    kept = other->id;
  }
  auto store = ResourceStore::open(dir.path() / "clinical.db", clock);
  REQUIRE(store);
  auto kept_read = (*store)->read("Observation", kept);
  REQUIRE(kept_read);
  CHECK(*kept_read);
  std::size_t all = 0;
  std::string cursor;
  for (;;) {
    auto page = (*store)->of_subject(kPs, {}, std::nullopt, cursor, 3);
    REQUIRE(page);
    all += page->resources.size();
    if (page->next_cursor.empty()) break;
    cursor = page->next_cursor;
  }
  CHECK(all == 8);
  auto conditions = (*store)->of_subject(kPs, {"Condition"}, std::nullopt, "", 100);
  REQUIRE(conditions);
  CHECK(conditions->resources.size() == 1);

  auto erased = (*store)->erase_subject(kPs);
  REQUIRE(erased);
  CHECK(*erased == 8);
  auto after = (*store)->of_subject(kPs, {}, std::nullopt, "", 100);
  REQUIRE(after);
  CHECK(after->resources.empty());
  auto other = (*store)->read("Observation", kept);
  REQUIRE(other);
  CHECK(*other);
  store->reset();
  // No version of the erased resources is left in the file.
  std::string bytes;
  for (const char* name : {"clinical.db", "clinical.db-wal"}) {
    std::ifstream in(dir.path() / name, std::ios::binary);
    bytes.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  CHECK(bytes.find("secret-note-text") == std::string::npos);
  CHECK(bytes.find(kPs) == std::string::npos);
}
