// `telehub subject register|show|erase`, `telehub audit verify|show|head`,
// `telehub consent grant|deny|withdraw|show|import`: the privacy model of docs/privacy.md on
// the command line. Every access to identified data and every change writes an audit record
// first; if it cannot be written, the command does nothing and fails ("no audit, no access").
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "payload_config.h"
#include "privacy_stores.h"
#include "telehub/core/time.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kSubjectHelp = R"(usage: telehub subject register (--bsn N | --record SYSTEM|VALUE) [person options] [options]
       telehub subject show (--bsn N | --record SYSTEM|VALUE | --patient PSEUDONYM) [options]
       telehub subject erase (--bsn N | --record SYSTEM|VALUE | --patient PSEUDONYM) --yes [options]

register: puts a person in the identity vault (each field encrypted; BSN checked with the
          11-test), or updates the person already there with that BSN or record number.
          Prints the subject id (for `device enroll --subject`) and the Patient pseudonym.
  --bsn N            Dutch citizen service number (9 digits, 11-test)
  --record S|V       a hospital record number: identifier system and value (repeatable as S|V,S|V)
  --given G --family F --birth-date YYYY-MM-DD --sex male|female|other|unknown
  --address LINE --postcode P --city C --phone P --email E
show:     re-identification (care context, this machine only): prints the person. Audited.
erase:    GDPR erasure: deletes the person from the vault, the pseudonym link, the consent
          records and the care relations, revokes the subject's devices (keys overwritten).
          What stays in the measurement store is under a pseudonym nothing links back any
          more. Audited.

common:
  --data DIR         data directory (default ./data)
  --kek-file PATH    key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek)
)";

constexpr const char* kAuditHelp = R"(usage: telehub audit verify [--anchor SEQUENCE:HASH] [options]
       telehub audit show (--patient PSEUDONYM | --recent N) [options]
       telehub audit head [options]

verify: checks the hash chain of the audit log; names the first edited, deleted, inserted or
        reordered record (exit 1), or says how many records are intact (exit 0). --anchor
        checks against a head exported earlier (`audit head`), which also catches a cut tail.
show:   who accessed a patient's data (the patient's right to know), or the newest N records.
head:   the last record's sequence and hash, to keep elsewhere as an anchor.
  --data DIR       data directory (default ./data)
)";

constexpr const char* kConsentHelp = R"(usage: telehub consent grant|deny --patient PSEUDONYM --scope SCOPE [--from DATE] [options]
       telehub consent withdraw --patient PSEUDONYM --scope SCOPE [--at DATE] [options]
       telehub consent show --patient PSEUDONYM [options]
       telehub consent import FILE... [options]

SCOPE: care (home monitoring), research (any study) or research:<study id>. DATE: RFC 3339
(default now). import reads FHIR R4 Consent resources (JSON). Every change is audited.
  --data DIR       data directory (default ./data)
  --kek-file PATH  key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek)
)";

int usage(const char* help, const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << help;
  return 2;
}

// Writes the audit record; on failure prints why and returns false (the caller stops).
bool audited(PrivacyStores& p, privacy::AuditRecord record) {
  auto written = p.audit->append(std::move(record));
  if (!written) {
    std::cerr << "telehub: access refused: the audit record could not be written (" << written.error().message
              << ") [" << written.error().reason << "]\n";
    return false;
  }
  return true;
}

// The subject id named by --bsn, --record or --patient; empty (after printing why) if none.
std::string find_subject(const Args& args, PrivacyStores& p, int& status) {
  status = 1;
  Result<std::optional<std::string>> found = std::optional<std::string>();
  if (args.has("bsn")) {
    found = p.vault->find_by_bsn(args.get("bsn"));
  } else if (args.has("record")) {
    const std::string rn = args.get("record");
    const auto bar = rn.find('|');
    if (bar == std::string::npos) {
      status = usage(kSubjectHelp, "--record must be SYSTEM|VALUE");
      return {};
    }
    found = p.vault->find_by_record_number({rn.substr(0, bar), rn.substr(bar + 1)});
  } else if (args.has("patient")) {
    found = p.vault->find_by_pseudonym(args.get("patient"));
  } else {
    status = usage(kSubjectHelp, "name the person with --bsn, --record or --patient");
    return {};
  }
  if (!found) {
    status = found.error().reason == "bad_bsn" ? usage(kSubjectHelp, found.error().message) : fail_with(found.error());
    return {};
  }
  if (!*found) {
    std::cerr << "telehub: no such person in the identity vault\n";
    return {};
  }
  status = 0;
  return **found;
}

void print_person(const privacy::Person& person, const std::string& pseudonym) {
  auto line = [](const char* label, const std::string& value) {
    if (!value.empty()) std::cout << label << value << "\n";
  };
  line("subject:      ", person.subject_id);
  line("patient:      Patient/", pseudonym);
  line("bsn:          ", person.bsn);
  for (const auto& rn : person.record_numbers) std::cout << "record:       " << rn.system << "|" << rn.value << "\n";
  line("given name:   ", person.given_name);
  line("family name:  ", person.family_name);
  line("birth date:   ", person.birth_date);
  line("sex:          ", person.sex);
  line("address:      ", person.address_line);
  line("postcode:     ", person.postcode);
  line("city:         ", person.city);
  line("phone:        ", person.phone);
  line("email:        ", person.email);
}

}  // namespace

int cmd_subject(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "register" && sub != "show" && sub != "erase") return usage(kSubjectHelp, "unknown subject command");
  auto parsed = parse_args(argc, argv, 3,
                           {"data", "kek-file", "bsn", "record", "patient", "given", "family", "birth-date", "sex",
                            "address", "postcode", "city", "phone", "email"},
                           {"yes", "help"});
  if (!parsed) return usage(kSubjectHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kSubjectHelp;
    return 0;
  }
  if (!args.words.empty()) return usage(kSubjectHelp, "unexpected argument '" + args.words[0] + "'");
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto p = open_privacy(*dir, *kek);
  if (!p) return fail_with(p.error());

  if (sub == "register") {
    if (args.has("patient")) return usage(kSubjectHelp, "register takes --bsn or --record, not --patient");
    privacy::Person person;
    person.bsn = args.get("bsn");
    if (args.has("record")) {
      std::string rest = args.get("record");
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string one = rest.substr(0, comma);
        const auto bar = one.find('|');
        if (bar == std::string::npos) return usage(kSubjectHelp, "--record must be SYSTEM|VALUE");
        person.record_numbers.push_back({one.substr(0, bar), one.substr(bar + 1)});
        rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
      }
    }
    person.given_name = args.get("given");
    person.family_name = args.get("family");
    person.birth_date = args.get("birth-date");
    person.sex = args.get("sex");
    person.address_line = args.get("address");
    person.postcode = args.get("postcode");
    person.city = args.get("city");
    person.phone = args.get("phone");
    person.email = args.get("email");
    auto r = p->vault->register_person(person);
    if (!r) {
      if (r.error().code == core::Code::kInvalidArgument) return usage(kSubjectHelp, r.error().message);
      return fail_with(r.error());
    }
    const auto pseudonym = p->pseudonymiser->subject(r->subject_id);
    if (auto s = p->vault->link_pseudonym(r->subject_id, pseudonym.str()); !s) return fail_with(s.error());
    if (!audited(*p, cli_audit("subject.register", r->created ? 'C' : 'U', pseudonym.str(), "Patient/" + pseudonym.str(),
                              "registration")))
      return 1;
    auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
    if (!store) return fail_with(store.error());
    if (auto s = (*store)->registry().add_subject(pseudonym); !s) return fail_with(s.error());
    std::cout << (r->created ? "registered:   " : "updated:      ") << r->subject_id
              << " (use with `device enroll --subject`)\n"
              << "patient:      Patient/" << pseudonym.str() << " (pseudonym)\n";
    return 0;
  }

  int status = 0;
  const std::string subject_id = find_subject(args, *p, status);
  if (subject_id.empty()) return status;
  const auto pseudonym = p->pseudonymiser->subject(subject_id);

  if (sub == "show") {
    if (!audited(*p, cli_audit("patient.read", 'R', pseudonym.str(), "Patient/" + pseudonym.str(), "treatment")))
      return 1;
    auto person = p->vault->get(subject_id);
    if (!person) return fail_with(person.error());
    if (!*person) {
      std::cerr << "telehub: no such person in the identity vault\n";
      return 1;
    }
    print_person(**person, pseudonym.str());
    return 0;
  }

  // erase
  if (!args.has("yes")) return usage(kSubjectHelp, "erase deletes a person's identity for good: add --yes");
  if (!audited(*p, cli_audit("subject.erase", 'D', pseudonym.str(), "Patient/" + pseudonym.str(), "erasure-request")))
    return 1;
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  auto devices = (*store)->registry().devices_of(pseudonym.str());
  if (!devices) return fail_with(devices.error());
  int revoked = 0;
  for (const auto& d : *devices) {
    if (!d.active) continue;
    auto r = revoke_device(*dir, **store, d.id);
    if (!r) return fail_with(r.error());
    ++revoked;
  }
  auto consents = p->consent->erase_subject(pseudonym.str());
  if (!consents) return fail_with(consents.error());
  auto care = privacy::CareRelations::open(dir->care_db());
  if (!care) return fail_with(care.error());
  auto relations = (*care)->erase_subject(pseudonym.str());
  if (!relations) return fail_with(relations.error());
  auto clinical = clinical::ResourceStore::open(dir->clinical_db(), core::system_clock());
  if (!clinical) return fail_with(clinical.error());
  auto records = (*clinical)->erase_subject(pseudonym.str());
  if (!records) return fail_with(records.error());
  auto erased = p->vault->erase(subject_id);
  if (!erased) return fail_with(erased.error());
  std::cout << "erased:       the identity of Patient/" << pseudonym.str() << " (vault fields, identifier index, "
            << "pseudonym link)\n"
            << "consent:      " << *consents << " record(s) deleted\n"
            << "care:         " << *relations << " care relation(s) deleted\n"
            << "clinical:     " << *records << " imported clinical record(s) deleted, every version\n"
            << "devices:      " << revoked << " revoked (keys overwritten)\n"
            << "kept:         readings under the pseudonym, which nothing links to a person any more; the audit "
               "log (it records the erasure)\n";
  return 0;
}

int cmd_audit(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "verify" && sub != "show" && sub != "head") return usage(kAuditHelp, "unknown audit command");
  auto parsed = parse_args(argc, argv, 3, {"data", "anchor", "patient", "recent"}, {"help"});
  if (!parsed) return usage(kAuditHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kAuditHelp;
    return 0;
  }
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto log = privacy::AuditLog::open(dir->audit_db());
  if (!log) return fail_with(log.error());

  if (sub == "head") {
    auto h = (*log)->head();
    if (!h) return fail_with(h.error());
    std::cout << h->sequence << ":" << h->hash << "\n";
    return 0;
  }
  if (sub == "verify") {
    std::optional<privacy::AuditHead> anchor;
    if (args.has("anchor")) {
      const std::string a = args.get("anchor");
      const auto colon = a.find(':');
      if (colon == std::string::npos) return usage(kAuditHelp, "--anchor must be SEQUENCE:HASH (from `audit head`)");
      Args one;
      one.options["anchor"] = a.substr(0, colon);
      auto seq = one.get_int("anchor", 0, 0, INT64_MAX);
      if (!seq) return usage(kAuditHelp, "--anchor must be SEQUENCE:HASH (from `audit head`)");
      anchor = privacy::AuditHead{*seq, a.substr(colon + 1)};
    }
    auto v = (*log)->verify(anchor);
    if (!v) return fail_with(v.error());
    if (!v->ok) {
      std::cout << "audit log BROKEN at record " << v->first_bad << ": " << v->problem << "\n";
      return 1;
    }
    std::cout << "audit log intact: " << v->records << " records, hash chain verified"
              << (anchor ? " up to and against the anchor" : "") << "\n";
    return 0;
  }
  // show
  Result<std::vector<privacy::AuditRecord>> records = std::vector<privacy::AuditRecord>();
  if (args.has("patient")) {
    records = (*log)->for_subject(args.get("patient"));
  } else {
    auto n = args.get_int("recent", 20, 1, 100000);
    if (!n) return usage(kAuditHelp, n.error().message);
    records = (*log)->recent(static_cast<std::size_t>(*n));
  }
  if (!records) return fail_with(records.error());
  for (const auto& r : *records) {
    std::cout << r.sequence << "  " << r.recorded << "  " << r.event_type << " " << r.action << " " << r.outcome
              << "  by " << r.user_id << " (" << r.role << (r.on_behalf_of.empty() ? "" : ", for " + r.on_behalf_of)
              << ")" << (r.purpose.empty() ? "" : "  purpose " + r.purpose) << "  from " << r.access_point
              << (r.objects.empty() ? "" : "  " + r.objects) << "\n";
  }
  if (records->empty()) std::cout << "(no records)\n";
  return 0;
}

int cmd_consent(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "grant" && sub != "deny" && sub != "withdraw" && sub != "show" && sub != "import")
    return usage(kConsentHelp, "unknown consent command");
  auto parsed = parse_args(argc, argv, 3, {"data", "kek-file", "patient", "scope", "from", "at"}, {"help"});
  if (!parsed) return usage(kConsentHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kConsentHelp;
    return 0;
  }
  if (sub != "import" && !args.words.empty()) return usage(kConsentHelp, "unexpected argument '" + args.words[0] + "'");
  if (sub == "import" && args.words.empty()) return usage(kConsentHelp, "consent import needs FILE...");
  if (sub != "import" && !args.has("patient")) return usage(kConsentHelp, "--patient PSEUDONYM is required");
  if ((sub == "grant" || sub == "deny" || sub == "withdraw") && !args.has("scope"))
    return usage(kConsentHelp, "--scope is required");
  auto when = [&](const char* option) -> std::optional<core::TimePoint> {
    if (!args.has(option)) return core::system_clock().now();
    auto t = core::parse_rfc3339(args.get(option));
    if (!t) return std::nullopt;
    return *t;
  };
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto p = open_privacy(*dir, *kek);
  if (!p) return fail_with(p.error());
  const std::string patient = args.get("patient");

  if (sub == "grant" || sub == "deny") {
    auto from = when("from");
    if (!from) return usage(kConsentHelp, "--from must be an RFC 3339 date-time");
    privacy::ConsentRecord r;
    r.subject = patient;
    r.scope = args.get("scope");
    r.permit = sub == "grant";
    r.from = *from;
    r.source = "cli";
    if (!audited(*p, cli_audit("consent.update", 'C', patient, "Consent", "consent"))) return 1;
    auto id = p->consent->record(r);
    if (!id) return id.error().code == core::Code::kInvalidArgument ? usage(kConsentHelp, id.error().message)
                                                                   : fail_with(id.error());
    std::cout << "consent " << *id << ": Patient/" << patient << " " << (r.permit ? "permits " : "denies ") << r.scope
              << " from " << core::format_rfc3339(r.from) << "\n";
    return 0;
  }
  if (sub == "withdraw") {
    auto at = when("at");
    if (!at) return usage(kConsentHelp, "--at must be an RFC 3339 date-time");
    if (!audited(*p, cli_audit("consent.withdraw", 'U', patient, "Consent", "consent"))) return 1;
    auto n = p->consent->withdraw(patient, args.get("scope"), *at);
    if (!n) return n.error().code == core::Code::kInvalidArgument ? usage(kConsentHelp, n.error().message)
                                                                 : fail_with(n.error());
    std::cout << "withdrawn: " << *n << " permit(s) of Patient/" << patient << " for " << args.get("scope") << " from "
              << core::format_rfc3339(*at) << "\n";
    return 0;
  }
  if (sub == "show") {
    if (!audited(*p, cli_audit("consent.read", 'R', patient, "Consent", "consent"))) return 1;
    auto records = p->consent->of_subject(patient);
    if (!records) return fail_with(records.error());
    for (const auto& r : *records)
      std::cout << r.id << "  " << (r.permit ? "permit " : "deny   ") << r.scope << "  from " << core::format_rfc3339(r.from)
                << (r.withdrawn ? "  withdrawn " + core::format_rfc3339(*r.withdrawn) : "") << "  (" << r.source << ")\n";
    if (records->empty()) std::cout << "(no consent records: nothing is permitted)\n";
    return 0;
  }
  // import
  int failed = 0;
  for (const auto& file : args.words) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "telehub: cannot read " << file << "\n";
      ++failed;
      continue;
    }
    std::stringstream text;
    text << in.rdbuf();
    auto r = privacy::from_fhir_consent(text.str());
    if (!r) {
      std::cerr << "telehub: " << file << ": " << r.error().message << " [" << r.error().reason << "]\n";
      ++failed;
      continue;
    }
    if (!audited(*p, cli_audit("consent.update", 'C', r->subject, "Consent", "consent"))) return 1;
    auto id = p->consent->record(*r);
    if (!id) {
      std::cerr << "telehub: " << file << ": " << id.error().message << " [" << id.error().reason << "]\n";
      ++failed;
      continue;
    }
    std::cout << "consent " << *id << ": Patient/" << r->subject << " " << (r->permit ? "permits " : "denies ")
              << r->scope << " (" << file << ")\n";
  }
  return failed ? 1 : 0;
}

}  // namespace telehub::apps

namespace telehub::apps {
namespace {

constexpr const char* kRetentionHelp = R"(usage: telehub retention apply [--config DIR] [--data DIR]

Deletes what is older than its retention period in <config>/retention.json (default config dir:
$TELEHUB_CONFIG_DIR, else the source tree's config/):
  quarantine_days  quarantined messages received more than this many days ago (1..36500)
  readings_days    readings taken more than this many days ago (optional; absent: kept), per
                   compacted chunk (a chunk spans at most a day)
The audit log is kept (docs/privacy.md, "Retention"). Run it daily (cron).
)";

}  // namespace

int cmd_retention(int argc, char** argv) {
  const std::string sub = argc >= 3 ? argv[2] : "";
  if (sub != "apply") return usage(kRetentionHelp, "unknown retention command");
  auto parsed = parse_args(argc, argv, 3, {"data", "config"}, {"help"});
  if (!parsed) return usage(kRetentionHelp, parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kRetentionHelp;
    return 0;
  }
  const auto file = config_dir(args.get("config")) / "retention.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "telehub: cannot read " << file.string() << "\n";
    return 1;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto retention = parse_retention(text.str());
  if (!retention) {
    std::cerr << "telehub: " << file.string() << ": " << retention.error().message << "\n";
    return 1;
  }
  const long long days = retention->quarantine_days;
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  const auto now = core::system_clock().now();
  const auto cutoff = now - std::chrono::hours(24) * days;
  auto purged = (*store)->quarantine().purge_before(cutoff);
  if (!purged) return fail_with(purged.error());
  std::cout << "quarantine:   " << *purged << " entr" << (*purged == 1 ? "y" : "ies") << " received before "
            << core::format_rfc3339(cutoff) << " deleted (" << days << " days)\n";
  if (retention->readings_days) {
    const auto readings_cutoff = now - std::chrono::hours(24) * *retention->readings_days;
    auto deleted = (*store)->purge_readings_before(readings_cutoff);
    if (!deleted) return fail_with(deleted.error());
    std::cout << "readings:     " << *deleted << " taken before " << core::format_rfc3339(readings_cutoff)
              << " deleted (" << *retention->readings_days << " days)\n";
  } else {
    std::cout << "readings:     kept (no readings_days)\n";
  }
  return 0;
}

}  // namespace telehub::apps
