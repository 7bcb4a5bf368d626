// A data directory for the research tests, built with the real stores (SQLite files): people in
// the identity vault, consent records, devices and readings in the measurement store, Conditions
// in the clinical store, and an in-test environment table. Everything the exporter must never
// output is collected in `forbidden`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/codes.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/research/cohort.h"
#include "telehub/storage/store.h"
#include "test_support.h"

namespace telehub::research_test {

inline core::TimePoint t(std::string_view text) { return *core::parse_rfc3339(text); }

class FixedClock final : public core::Clock {
 public:
  core::TimePoint now() const override { return t("2026-07-01T00:00:00Z"); }
};

inline const std::string kKekHex(64, 'a');
inline const std::string kHeartFailure = "84114007";
inline const std::string kSnomed = "http://snomed.info/sct";
inline const std::string kCopd = "13645005";
// Areas whose first digit is their index: the checker recomputes the exposure from the region.
inline const std::vector<std::string> kAreas{"1011", "2511", "3511"};
// Hour of day without an environment value.
inline constexpr int kMissingHour = 3;

// The synthetic exposure: pm25 = 10 + hour of day + 100 * first digit of the area.
inline double pm25(const std::string& area, int hour_of_day) { return 10 + hour_of_day + 100 * (area[0] - '0'); }

// A 9-digit number passing the 11-test, different for each n.
inline std::string make_bsn(int n) {
  for (long base = 10000000L + n * 7919L;; base += 1) {
    std::string d = std::to_string(base).substr(0, 8);
    int sum = 0;
    for (int k = 0; k < 8; ++k) sum += (9 - k) * (d[static_cast<std::size_t>(k)] - '0');
    for (int last = 0; last <= 9; ++last)
      if ((sum - last) % 11 == 0) return d + std::to_string(last);
  }
}

struct Person {
  std::string pseudonym;
  std::string device;
  std::string area;
};

class ResearchData {
 public:
  enum class Consent { kResearch, kNone, kWithdrawn, kStudyDeny };
  struct Spec {
    std::string birth_date = "1956-05-17";
    std::string sex = "female";
    std::string area = "1011";
    core::TimePoint enrolled = t("2026-02-01T09:00:00Z");
    Consent consent = Consent::kResearch;
    std::string condition = kHeartFailure;  // "" none
    double marker = 0;  // when non-zero: the first heart rate reading has this value
    std::string deny_study;  // kStudyDeny: the study denied
  };

  explicit ResearchData(const std::filesystem::path& data) : data_(data) {
    std::filesystem::create_directories(data / "keys");
    kek_ = std::make_unique<privacy::Kek>(*privacy::Kek::from_hex(kKekHex));
    vault_ = std::move(*privacy::IdentityVault::open(data / "identity.db", data / "keys" / "vault.key", *kek_));
    consent_ = std::move(*privacy::ConsentStore::open(data / "consent.db"));
    store_ = std::move(*storage::open_sqlite_store({data / "telehub.db"}, clock_));
    clinical_ = std::move(*clinical::ResourceStore::open(data / "clinical.db", clock_));
    pseudonymiser_ = std::move(*privacy::Pseudonymiser::open_wrapped_key_file(data / "keys" / "pseudonym.key", *kek_));
    for (const auto& area : kAreas) add_area(area);
    add_area("9999");
  }

  const std::filesystem::path& dir() const { return data_; }
  const privacy::Kek& kek() const { return *kek_; }
  privacy::AuditLog& audit() {
    if (!audit_) audit_ = std::move(*privacy::AuditLog::open(data_ / "audit.db", clock_));
    return *audit_;
  }
  void close_audit() { audit_.reset(); }

  // Registers a person with devices, consent, a Condition and readings.
  Person add(const Spec& spec) {
    const int n = next_++;
    privacy::Person p;
    p.bsn = make_bsn(n);
    p.record_numbers.push_back({"urn:oid:2.16.840.1.113883.2.4.6.3", "MRN-ZX" + std::to_string(700000 + n)});
    p.given_name = "Quirinaxa" + std::to_string(n);
    p.family_name = "Vandervlugtz" + std::to_string(n);
    p.birth_date = spec.birth_date;
    p.sex = spec.sex;
    p.address_line = "Kwikstaartlaan " + std::to_string(100 + n);
    p.postcode = spec.area + " " + std::string(1, static_cast<char>('K' + n % 10)) + "Z";
    p.city = "Zwammerdijkje";
    p.phone = "+31 6 " + std::to_string(40000000 + n);
    p.email = "pat" + std::to_string(n) + "@voorbeeld-mail.test";
    auto reg = vault_->register_person(p);
    REQUIRE(reg);
    const auto pseudonym = pseudonymiser_->subject(reg->subject_id);
    REQUIRE(vault_->link_pseudonym(reg->subject_id, pseudonym.str()));
    for (const std::string& s : {p.bsn, p.record_numbers[0].value, p.given_name, p.family_name, p.birth_date,
                                 p.address_line, p.postcode, p.city, p.phone, p.email, reg->subject_id, pseudonym.str()})
      forbidden.push_back(s);

    Person out{pseudonym.str(), "dev-qx-" + std::to_string(n), spec.area};
    storage::DeviceRecord d;
    d.id = out.device;
    d.subject = pseudonym.str();
    d.wrapped_key = {1, 2, 3};
    d.enrolled_at = spec.enrolled;
    d.manufacturer = "Acme";
    d.model = "Cuff-2";
    const std::string serial = "SNQX" + std::to_string(880000 + n);
    d.serial_pseudonym = pseudonymiser_->device_serial(serial);
    REQUIRE(store_->registry().add_device(d));
    for (const std::string& s : {d.id, serial, d.serial_pseudonym}) forbidden.push_back(s);

    if (spec.consent != Consent::kNone) {
      privacy::ConsentRecord c;
      c.subject = pseudonym.str();
      c.scope = "research";
      c.from = t("2025-01-01T00:00:00Z");
      c.source = "test";
      REQUIRE(consent_->record(c));
      if (spec.consent == Consent::kWithdrawn) REQUIRE(consent_->withdraw(pseudonym.str(), "research", t("2026-05-01T00:00:00Z")));
      if (spec.consent == Consent::kStudyDeny) {
        c.scope = "research:" + spec.deny_study;
        c.permit = false;
        REQUIRE(consent_->record(c));
      }
    }
    if (!spec.condition.empty()) {
      clinical::ResourceWrite w;
      w.type = "Condition";
      w.json = R"({"resourceType":"Condition","subject":{"reference":"Patient/)" + pseudonym.str() +
               R"("},"code":{"coding":[{"system":")" + kSnomed + R"(","code":")" + spec.condition + R"("}]}})";
      REQUIRE(clinical_->write(w));
    }

    // Readings over 12 days from enrolment: heart rate at hours spread over the day (hour 3
    // among them), a weight each morning, a blood pressure panel each evening.
    std::vector<privacy::PseudonymousReading> readings;
    for (int day = 0; day < 12; ++day) {
      const auto base = std::chrono::floor<std::chrono::days>(spec.enrolled) + std::chrono::days(day);
      const int hour = (n * 5 + day * 7) % 24;
      core::Reading hr;
      hr.device = d.id;
      hr.code = std::string(core::loinc::kHeartRate);
      hr.value = (day == 0 && spec.marker != 0) ? spec.marker : 60 + (n + day) % 30;
      hr.unit = "/min";
      hr.time = base + std::chrono::hours(hour) + std::chrono::minutes(17);
      readings.push_back(privacy::PseudonymousReading::bind(hr, pseudonym));
      core::Reading hr2 = hr;
      hr2.value = 61 + (n + day) % 30;
      hr2.time = base + std::chrono::hours(kMissingHour) + std::chrono::minutes(5);
      readings.push_back(privacy::PseudonymousReading::bind(hr2, pseudonym));
      core::Reading w;
      w.device = d.id;
      w.code = std::string(core::loinc::kBodyWeight);
      w.value = 70 + n * 0.5 + day * 0.1;
      w.unit = "kg";
      w.time = base + std::chrono::hours(7);
      readings.push_back(privacy::PseudonymousReading::bind(w, pseudonym));
      core::Reading bp;
      bp.device = d.id;
      bp.code = std::string(core::loinc::kBloodPressurePanel);
      bp.time = base + std::chrono::hours(20) + std::chrono::minutes(2);
      bp.components = {{std::string(core::loinc::kSystolic), 120.0 + (n + day) % 20, "mm[Hg]"},
                       {std::string(core::loinc::kDiastolic), 80.0 + (n + day) % 10, "mm[Hg]"}};
      readings.push_back(privacy::PseudonymousReading::bind(bp, pseudonym));
    }
    storage::MessageBatch b;
    b.device_id = d.id;
    b.sequence = 1;
    b.content_hash = d.id + "#1";
    b.received_at = spec.enrolled;
    b.readings = std::move(readings);
    auto stored = store_->observations().append(std::move(b));
    REQUIRE(stored);
    REQUIRE(*stored == storage::AppendOutcome::kStored);
    return out;
  }

  research::ExposureFn exposure() {
    return [this](std::string_view area, environment::Component c,
                  core::TimePoint hour) -> Result<std::optional<double>> {
      ++env_lookups;
      if (c != environment::Component::kPm25) return std::optional<double>{};
      auto it = env_.find({std::string(area), core::to_unix_millis(hour)});
      if (it == env_.end()) return std::optional<double>{};
      return std::optional<double>(it->second);
    };
  }

  research::Sources sources(const research::ResearchKey& key) {
    return research::Sources{store_->observations(), store_->registry(), *vault_, *consent_, *clinical_, key,
                             exposure()};
  }

  // Closes every store (so the binary can open the files).
  void close() {
    audit_.reset();
    store_.reset();
    clinical_.reset();
    consent_.reset();
    vault_.reset();
  }

  std::vector<std::string> forbidden;
  std::size_t env_lookups = 0;

 private:
  // pm25 for every hour of Jan..Jun 2026 except hour of day kMissingHour.
  void add_area(const std::string& area) {
    for (auto h = t("2025-07-01T00:00:00Z"); h < t("2027-01-01T00:00:00Z"); h += std::chrono::hours(1)) {
      const int hod = static_cast<int>((core::to_unix_millis(h) / 3'600'000) % 24);
      if (hod == kMissingHour) continue;
      env_[{area, core::to_unix_millis(h)}] = pm25(area, hod);
    }
  }

  std::filesystem::path data_;
  FixedClock clock_;
  std::unique_ptr<privacy::Kek> kek_;
  std::unique_ptr<privacy::IdentityVault> vault_;
  std::unique_ptr<privacy::ConsentStore> consent_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<clinical::ResourceStore> clinical_;
  std::unique_ptr<privacy::Pseudonymiser> pseudonymiser_;
  std::unique_ptr<privacy::AuditLog> audit_;
  std::map<std::pair<std::string, std::int64_t>, double> env_;
  int next_ = 1;
};

// A JSON string literal.
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

inline std::string json_strings(const std::vector<std::string>& v) {
  std::string out = "[";
  for (const auto& s : v) out += (out.size() > 1 ? "," : "") + json_string(s);
  return out + "]";
}

}  // namespace telehub::research_test
