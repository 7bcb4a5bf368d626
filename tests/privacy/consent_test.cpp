// privacy::ConsentStore (SQLite) and from_fhir_consent (FHIR R4 Consent).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "telehub/privacy/consent.h"
#include "test_support.h"

using namespace telehub;

namespace {

const std::string kAnna = "0123456789abcdef0123456789abcdef";
const std::string kBert = "fedcba9876543210fedcba9876543210";
const std::string kCarl = "00112233445566778899aabbccddeeff";

core::TimePoint t(std::string_view text) { return *core::parse_rfc3339(text); }

privacy::ConsentRecord rec(const std::string& subject, std::string scope, bool permit, std::string_view from) {
  privacy::ConsentRecord r;
  r.subject = subject;
  r.scope = std::move(scope);
  r.permit = permit;
  r.from = t(from);
  r.source = "cli";
  return r;
}

std::unique_ptr<privacy::ConsentStore> open_store(const testing::TempDir& dir) {
  auto store = privacy::ConsentStore::open(dir.path() / "consent.db");
  REQUIRE(store);
  return std::move(*store);
}

bool permitted(privacy::ConsentStore& s, const std::string& subject, std::string_view scope, std::string_view at) {
  auto r = s.permitted(subject, scope, t(at));
  REQUIRE(r);
  return *r;
}

std::string sample(const std::string& name) {
  std::ifstream in(std::filesystem::path(TELEHUB_SOURCE_DIR) / "tests/privacy/data/consent" / name);
  REQUIRE(in);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A minimal valid Consent (care, from dateTime) with one member replaced or added: `patch` is
// `"name": <JSON value>`.
std::string consent_with(const std::string& patch) {
  std::map<std::string, std::string> members = {
      {"resourceType", R"("Consent")"},
      {"id", R"("c1")"},
      {"status", R"("active")"},
      {"patient", R"({"reference": "Patient/0123456789abcdef0123456789abcdef"})"},
      {"dateTime", R"("2026-01-01T00:00:00Z")"},
      {"provision",
       R"({"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]})"},
  };
  if (!patch.empty()) {
    const auto open = patch.find('"');
    const auto close = patch.find('"', open + 1);
    const auto colon = patch.find(':', close);
    members[patch.substr(open + 1, close - open - 1)] = patch.substr(colon + 1);
  }
  std::string out = "{";
  for (const auto& [name, value] : members) out += (out.size() > 1 ? ", \"" : "\"") + name + "\": " + value;
  return out + "}";
}

void check_refused(const Result<privacy::ConsentRecord>& r, std::string_view path) {
  REQUIRE_FALSE(r);
  CHECK(r.error().code == core::Code::kInvalidArgument);
  CHECK(r.error().reason == "bad_consent");
  INFO(r.error().message);
  CHECK(r.error().message.find(path) != std::string::npos);
}

}  // namespace

TEST_CASE("consent is opt-in: no record means not permitted", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-01-01T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "research", "2026-01-01T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "research:HF-1", "2026-01-01T00:00:00Z"));
  CHECK(store->permitted_subjects("research", t("2026-01-01T00:00:00Z"))->empty());
  // A care permit says nothing about research, and a permit is not in force before its date.
  REQUIRE(store->record(rec(kAnna, "care", true, "2026-01-10T00:00:00Z")));
  CHECK_FALSE(permitted(*store, kAnna, "research", "2026-02-01T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-01-09T23:59:59.999Z"));
  CHECK(permitted(*store, kAnna, "care", "2026-01-10T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kBert, "care", "2026-02-01T00:00:00Z"));
}

TEST_CASE("a permit holds until its withdrawal date, and the withdrawn record is kept", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  auto id = store->record(rec(kAnna, "care", true, "2026-01-10T00:00:00Z"));
  REQUIRE(id);
  CHECK(*id > 0);
  auto n = store->withdraw(kAnna, "care", t("2026-03-01T00:00:00Z"));
  REQUIRE(n);
  CHECK(*n == 1);
  CHECK(permitted(*store, kAnna, "care", "2026-02-28T23:59:59.999Z"));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-03-01T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2027-01-01T00:00:00Z"));
  // Nothing left to withdraw; an earlier withdrawal date still shortens the permit.
  CHECK(*store->withdraw(kAnna, "care", t("2026-04-01T00:00:00Z")) == 0);
  CHECK(*store->withdraw(kAnna, "care", t("2026-02-01T00:00:00Z")) == 1);
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-02-15T00:00:00Z"));

  auto all = store->of_subject(kAnna);
  REQUIRE(all);
  REQUIRE(all->size() == 1);
  CHECK((*all)[0].id == *id);
  CHECK((*all)[0].permit);
  CHECK((*all)[0].scope == "care");
  CHECK((*all)[0].source == "cli");
  CHECK((*all)[0].from == t("2026-01-10T00:00:00Z"));
  REQUIRE((*all)[0].withdrawn);
  CHECK(*(*all)[0].withdrawn == t("2026-02-01T00:00:00Z"));
}

TEST_CASE("a newer deny overrides an older permit, and a newer permit follows a withdrawal", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  REQUIRE(store->record(rec(kAnna, "care", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kAnna, "care", false, "2026-02-01T00:00:00Z")));
  CHECK(permitted(*store, kAnna, "care", "2026-01-15T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-02-01T00:00:00Z"));
  // A deny is not a permit: withdraw() leaves it alone.
  CHECK(*store->withdraw(kAnna, "care", t("2026-02-10T00:00:00Z")) == 1);
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-02-15T00:00:00Z"));

  REQUIRE(store->record(rec(kAnna, "care", true, "2026-03-01T00:00:00Z")));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-02-28T00:00:00Z"));
  CHECK(permitted(*store, kAnna, "care", "2026-03-01T00:00:00Z"));
  // The earlier answers still hold: the history is kept.
  CHECK(permitted(*store, kAnna, "care", "2026-01-15T00:00:00Z"));
  CHECK(store->of_subject(kAnna)->size() == 3);

  // Same date: the later insertion wins.
  REQUIRE(store->record(rec(kAnna, "care", false, "2026-03-01T00:00:00Z")));
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-03-02T00:00:00Z"));
}

TEST_CASE("per-study consent against overall research consent", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);

  SECTION("an overall permit covers every study until a study-specific deny") {
    REQUIRE(store->record(rec(kAnna, "research", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research:HF-1", false, "2026-02-01T00:00:00Z")));
    CHECK(permitted(*store, kAnna, "research:HF-1", "2026-01-15T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:HF-1", "2026-02-15T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research:COPD_2", "2026-02-15T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research", "2026-02-15T00:00:00Z"));
    // The study record decides even when it is older than the overall one.
    REQUIRE(store->record(rec(kAnna, "research", true, "2026-03-01T00:00:00Z")));
    CHECK_FALSE(permitted(*store, kAnna, "research:HF-1", "2026-03-15T00:00:00Z"));
  }

  SECTION("a study permit alone is not overall research consent") {
    REQUIRE(store->record(rec(kAnna, "research:HF-1", true, "2026-01-01T00:00:00Z")));
    CHECK(permitted(*store, kAnna, "research:HF-1", "2026-01-15T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:COPD_2", "2026-01-15T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research", "2026-01-15T00:00:00Z"));
  }

  SECTION("a study permit with an overall deny is permitted for that study only") {
    REQUIRE(store->record(rec(kAnna, "research", false, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research:HF-1", true, "2026-01-01T00:00:00Z")));
    CHECK(permitted(*store, kAnna, "research:HF-1", "2026-01-15T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:COPD_2", "2026-01-15T00:00:00Z"));
  }

  SECTION("withdrawing research ends study permits too; withdrawing a study ends only that study") {
    REQUIRE(store->record(rec(kAnna, "research", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research:HF-1", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research:HF-10", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "care", true, "2026-01-01T00:00:00Z")));

    CHECK(*store->withdraw(kAnna, "research:HF-1", t("2026-02-01T00:00:00Z")) == 1);
    // Withdrawn from HF-1: the overall permit does not bring it back.
    CHECK_FALSE(permitted(*store, kAnna, "research:HF-1", "2026-02-15T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research:HF-10", "2026-02-15T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research:OTHER", "2026-02-15T00:00:00Z"));

    CHECK(*store->withdraw(kAnna, "research", t("2026-03-01T00:00:00Z")) == 2);
    CHECK_FALSE(permitted(*store, kAnna, "research", "2026-03-01T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:HF-10", "2026-03-01T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:OTHER", "2026-03-01T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research:HF-10", "2026-02-28T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "care", "2026-03-01T00:00:00Z"));
  }

  SECTION("a study id with '_' matches only itself") {
    REQUIRE(store->record(rec(kAnna, "research:A_B", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research:AxB", true, "2026-01-01T00:00:00Z")));
    CHECK(*store->withdraw(kAnna, "research:A_B", t("2026-02-01T00:00:00Z")) == 1);
    CHECK(permitted(*store, kAnna, "research:AxB", "2026-03-01T00:00:00Z"));
  }
}

TEST_CASE("consent withdrawal removes a subject from the research cohort", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  REQUIRE(store->record(rec(kBert, "research", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kAnna, "research", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kCarl, "research:HF-1", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kCarl, "care", true, "2026-01-01T00:00:00Z")));

  auto before = store->permitted_subjects("research", t("2026-02-01T00:00:00Z"));
  REQUIRE(before);
  CHECK(*before == std::vector<std::string>{kAnna, kBert});
  CHECK(*store->permitted_subjects("research:HF-1", t("2026-02-01T00:00:00Z")) ==
        std::vector<std::string>{kCarl, kAnna, kBert});

  REQUIRE(*store->withdraw(kAnna, "research", t("2026-03-01T00:00:00Z")) == 1);
  const auto after = t("2026-03-01T00:00:00Z");
  CHECK(*store->permitted_subjects("research", after) == std::vector<std::string>{kBert});
  CHECK(*store->permitted_subjects("research:HF-1", after) == std::vector<std::string>{kCarl, kBert});
  // An export for a time before the withdrawal still sees her.
  CHECK(*store->permitted_subjects("research", t("2026-02-28T00:00:00Z")) == std::vector<std::string>{kAnna, kBert});
  CHECK(*store->permitted_subjects("care", after) == std::vector<std::string>{kCarl});
  CHECK(store->permitted_subjects("marketing", after).error().reason == "bad_consent");
}

TEST_CASE("erase_subject deletes every record of one subject", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  REQUIRE(store->record(rec(kAnna, "care", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kAnna, "research:HF-1", true, "2026-01-01T00:00:00Z")));
  REQUIRE(store->record(rec(kBert, "care", true, "2026-01-01T00:00:00Z")));
  auto n = store->erase_subject(kAnna);
  REQUIRE(n);
  CHECK(*n == 2);
  CHECK(store->of_subject(kAnna)->empty());
  CHECK_FALSE(permitted(*store, kAnna, "care", "2026-02-01T00:00:00Z"));
  CHECK(permitted(*store, kBert, "care", "2026-02-01T00:00:00Z"));
  CHECK(*store->erase_subject(kAnna) == 0);
}

TEST_CASE("a reopened consent store keeps its records and withdrawals", "[privacy][consent]") {
  testing::TempDir dir;
  {
    auto store = open_store(dir);
    REQUIRE(store->record(rec(kAnna, "care", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->record(rec(kAnna, "research", true, "2026-01-01T00:00:00Z")));
    REQUIRE(store->withdraw(kAnna, "research", t("2026-02-01T00:00:00Z")));
  }
  auto store = open_store(dir);
  CHECK(permitted(*store, kAnna, "care", "2026-03-01T00:00:00Z"));
  CHECK_FALSE(permitted(*store, kAnna, "research", "2026-03-01T00:00:00Z"));
  CHECK(permitted(*store, kAnna, "research", "2026-01-15T00:00:00Z"));
  auto all = store->of_subject(kAnna);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0].id < (*all)[1].id);
  CHECK((*all)[1].withdrawn == t("2026-02-01T00:00:00Z"));
}

TEST_CASE("the consent store refuses bad subjects and scopes", "[privacy][consent]") {
  testing::TempDir dir;
  auto store = open_store(dir);
  for (const std::string& subject : std::vector<std::string>{"", "patient-1", "0123456789ABCDEF0123456789ABCDEF", kAnna + "0"}) {
    INFO(subject);
    auto r = store->record(rec(subject, "care", true, "2026-01-01T00:00:00Z"));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == core::Code::kInvalidArgument);
    CHECK(r.error().reason == "bad_consent");
    CHECK(store->permitted(subject, "care", t("2026-01-01T00:00:00Z")).error().reason == "bad_consent");
    CHECK(store->withdraw(subject, "care", t("2026-01-01T00:00:00Z")).error().reason == "bad_consent");
    CHECK(store->of_subject(subject).error().reason == "bad_consent");
    CHECK(store->erase_subject(subject).error().reason == "bad_consent");
  }
  for (const std::string& scope : std::vector<std::string>{"", "Care", "research:", "research:a b", "research:" + std::string(65, 'x'),
                                   "research:x/y", "research:%", "treatment", "research:HF-1:2"}) {
    INFO(scope);
    auto r = store->record(rec(kAnna, scope, true, "2026-01-01T00:00:00Z"));
    REQUIRE_FALSE(r);
    CHECK(r.error().reason == "bad_consent");
    CHECK(store->permitted(kAnna, scope, t("2026-01-01T00:00:00Z")).error().reason == "bad_consent");
    CHECK(store->withdraw(kAnna, scope, t("2026-01-01T00:00:00Z")).error().reason == "bad_consent");
  }
  CHECK(store->record(rec(kAnna, "research:" + std::string(64, 'x'), true, "2026-01-01T00:00:00Z")));
  CHECK(store->record(rec(kAnna, "research:Study.v2_a-1", true, "2026-01-01T00:00:00Z")));
  CHECK(store->of_subject(kAnna)->size() == 2);
}

TEST_CASE("FHIR Consent samples map to consent records", "[privacy][consent][fhir]") {
  SECTION("care permit") {
    auto r = privacy::from_fhir_consent(sample("care-permit.json"));
    REQUIRE(r);
    CHECK(r->subject == kAnna);
    CHECK(r->scope == "care");
    CHECK(r->permit);
    CHECK(r->from == t("2026-01-10T00:00:00Z"));  // provision.period.start (a date) over dateTime
    CHECK_FALSE(r->withdrawn);
    CHECK(r->source == "fhir:Consent/care-permit");
    CHECK(r->id == 0);
  }
  SECTION("research permit for one study, ending with its period") {
    auto r = privacy::from_fhir_consent(sample("research-study-permit.json"));
    REQUIRE(r);
    CHECK(r->scope == "research:HF-2026_01");
    CHECK(r->permit);
    CHECK(r->from == t("2026-02-01T12:00:00Z"));
    CHECK(r->withdrawn == t("2027-02-01T12:00:00Z"));
    CHECK(r->source == "fhir:Consent/research-hf-2026");
  }
  SECTION("research deny from Consent.scope, dated by dateTime") {
    auto r = privacy::from_fhir_consent(sample("research-deny.json"));
    REQUIRE(r);
    CHECK(r->scope == "research");
    CHECK_FALSE(r->permit);
    CHECK(r->from == t("2026-03-05T08:00:00Z"));
    CHECK_FALSE(r->withdrawn);
  }
  SECTION("an inactive Consent is a deny") {
    auto r = privacy::from_fhir_consent(sample("inactive.json"));
    REQUIRE(r);
    CHECK(r->scope == "care");  // CAREMGT
    CHECK_FALSE(r->permit);
    CHECK(r->from == t("2026-04-02T00:00:00Z"));
    CHECK_FALSE(r->withdrawn);
    CHECK(r->source == "fhir:Consent");
  }
  SECTION("the records drive decisions in the store") {
    testing::TempDir dir;
    auto store = open_store(dir);
    for (const char* name : {"care-permit.json", "research-study-permit.json", "research-deny.json"})
      REQUIRE(store->record(*privacy::from_fhir_consent(sample(name))));
    CHECK(permitted(*store, kAnna, "care", "2026-05-01T00:00:00Z"));
    CHECK(permitted(*store, kAnna, "research:HF-2026_01", "2026-05-01T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:HF-2026_01", "2027-02-01T12:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research:OTHER", "2026-05-01T00:00:00Z"));
    CHECK_FALSE(permitted(*store, kAnna, "research", "2026-05-01T00:00:00Z"));
  }
}

TEST_CASE("FHIR Consent mapping details", "[privacy][consent][fhir]") {
  auto base = privacy::from_fhir_consent(consent_with(""));
  REQUIRE(base);
  CHECK(base->scope == "care");
  CHECK(base->permit);  // no provision.type: permit
  CHECK(base->from == t("2026-01-01T00:00:00Z"));
  CHECK(privacy::from_fhir_consent(consent_with(R"("status": "rejected")"))->permit == false);
  CHECK(privacy::from_fhir_consent(consent_with(R"("status": "entered-in-error")"))->permit == false);
  CHECK(privacy::from_fhir_consent(consent_with(R"("dateTime": "2026-01-01T01:00:00+01:00")"))->from ==
        t("2026-01-01T00:00:00Z"));
  CHECK(privacy::from_fhir_consent(consent_with(R"("dateTime": "2026-01-01")"))->from == t("2026-01-01T00:00:00Z"));
  // Consent.scope treatment, no purpose: care.
  auto scope_only = privacy::from_fhir_consent(R"({"resourceType": "Consent", "status": "active",
    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
    "patient": {"reference": "Patient/0123456789abcdef0123456789abcdef"}, "dateTime": "2026-01-01T00:00:00Z"})");
  REQUIRE(scope_only);
  CHECK(scope_only->scope == "care");
  // HRESCH is research; a study identifier on it names the study.
  auto study = privacy::from_fhir_consent(R"({"resourceType": "Consent", "status": "active",
    "identifier": [{"system": "https://telehub.example.org/fhir/NamingSystem/study", "value": "S1"}],
    "patient": {"reference": "Patient/0123456789abcdef0123456789abcdef"}, "dateTime": "2026-01-01T00:00:00Z",
    "provision": {"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]}})");
  REQUIRE(study);
  CHECK(study->scope == "research:S1");
}

TEST_CASE("FHIR Consents telehub cannot read are refused with the element path", "[privacy][consent][fhir]") {
  check_refused(privacy::from_fhir_consent("not json"), "Consent");
  check_refused(privacy::from_fhir_consent("[]"), "Consent must be a JSON object");
  check_refused(privacy::from_fhir_consent(consent_with(R"("resourceType": "Patient")")), "resourceType must be Consent");
  check_refused(privacy::from_fhir_consent(R"({"status": "active"})"), "resourceType must be Consent");
  for (const char* patient : {R"("patient": {"reference": "Patient/f001"})",
                              R"("patient": {"reference": "Group/0123456789abcdef0123456789abcdef"})",
                              R"("patient": {"reference": "Patient/0123456789ABCDEF0123456789ABCDEF"})",
                              R"("patient": "Patient/0123456789abcdef0123456789abcdef")"}) {
    INFO(patient);
    check_refused(privacy::from_fhir_consent(consent_with(patient)), "Consent.patient must reference Patient/<pseudonym>");
  }
  check_refused(privacy::from_fhir_consent(R"({"resourceType": "Consent", "status": "active",
    "patient": {"reference": "Patient/0123456789abcdef0123456789abcdef"},
    "provision": {"purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]}})"),
                "Consent.provision.period.start or Consent.dateTime is required");
  check_refused(privacy::from_fhir_consent(consent_with(R"("dateTime": "2026")")), "Consent.dateTime");
  check_refused(privacy::from_fhir_consent(consent_with(R"("dateTime": "2026-01-01T10:00:00")")), "Consent.dateTime");
  check_refused(privacy::from_fhir_consent(consent_with(R"("dateTime": "2026-02-30")")), "Consent.dateTime");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"period": {"start": "yesterday"},
      "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]})")),
                "Consent.provision.period.start");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"period": {"start": "2026-02-01", "end": "2026-01-01"},
      "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]})")),
                "Consent.provision.period.end");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"purpose": [
      {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"},
      {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HMARKT"}]})")),
                "Consent.provision.purpose[1]");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"purpose": [
      {"system": "http://example.org/reasons", "code": "TREAT"}]})")),
                "Consent.provision.purpose[0]");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"purpose": [
      {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"},
      {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]})")),
                "Consent.provision.purpose[1]");
  // No purpose and a Consent.scope telehub does not map (the R4 examples use patient-privacy).
  check_refused(privacy::from_fhir_consent(R"({"resourceType": "Consent", "status": "active",
    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
    "patient": {"reference": "Patient/0123456789abcdef0123456789abcdef"}, "dateTime": "2026-01-01T00:00:00Z"})"),
                "Consent.scope");
  check_refused(privacy::from_fhir_consent(consent_with(R"("provision": {"type": "maybe",
      "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}]})")),
                "Consent.provision.type");
  check_refused(privacy::from_fhir_consent(consent_with(R"("status": "draft")")), "Consent.status");
  check_refused(privacy::from_fhir_consent(consent_with(R"("id": "a b")")), "Consent.id");
  // A study identifier on a care Consent, or a malformed study id.
  check_refused(privacy::from_fhir_consent(consent_with(
                    R"("identifier": [{"system": "https://telehub.example.org/fhir/NamingSystem/study", "value": "S1"}])")),
                "Consent.identifier");
  check_refused(privacy::from_fhir_consent(consent_with(
                    R"("identifier": [{"system": "https://telehub.example.org/fhir/NamingSystem/study", "value": "S 1"}])")),
                "Consent.identifier[0].value");
  // The HL7 R4 examples reference Patient/f001 and Patient/xcda, which are not pseudonyms.
  const auto dir = testing::shared_dir() / "fhir-r4-examples";
  for (const char* name : {"Consent-consent-example-basic.json", "Consent-consent-example-smartonfhir.json"}) {
    std::ifstream in(dir / name);
    if (!in) continue;
    std::ostringstream text;
    text << in.rdbuf();
    INFO(name);
    check_refused(privacy::from_fhir_consent(text.str()), "Consent.patient");
  }
}
