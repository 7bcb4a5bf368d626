// `telehub import FILE... [--data DIR] [--kek-file F] [--organisation ORG]`: imports FHIR R4
// transaction or batch Bundles from hospital systems (docs/clinical.md) into the identity vault
// (Patients) and <data>/clinical.db (everything else, by pseudonym). One audit record per
// imported Patient: "subject.register" (C) when the Bundle created the subject, else
// "clinical.import" (U). With --organisation, a care relation from now for each imported
// Patient (audited as "care.add"). Files are imported one by one; a failed file does not stop
// the others, and the exit status is then 1.
#include <fstream>
#include <iostream>
#include <iterator>

#include "args.h"
#include "bundle_import.h"
#include "commands.h"
#include "privacy_stores.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kImportHelp = R"(usage: telehub import FILE... [options]

Imports FHIR R4 Bundles (type transaction or batch; JSON) from a hospital system: each Patient
goes to the identity vault, every other resource to <data>/clinical.db under the Patient's
pseudonym. A transaction is all or nothing; a batch imports each entry on its own. Importing a
file again stores nothing new. Prints per file the entries stored, existing and failed, and the
pseudonyms of its Patients. Exit status 1 when a file failed (the others are still imported).
  --data DIR          data directory (default ./data)
  --kek-file PATH     key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek)
  --organisation ORG  record a care relation of ORG with each imported Patient (from now)
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kImportHelp;
  return 2;
}

bool audit(PrivacyStores& p, privacy::AuditRecord record) {
  auto written = p.audit->append(std::move(record));
  if (!written) {
    std::cerr << "telehub: the audit record could not be written (" << written.error().message << ") ["
              << written.error().reason << "]\n";
    return false;
  }
  return true;
}

}  // namespace

int cmd_import(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 2, {"data", "kek-file", "organisation"}, {"help"});
  if (!parsed) return usage(parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kImportHelp;
    return 0;
  }
  if (args.words.empty()) return usage("name at least one Bundle file");
  if (args.has("organisation") && args.get("organisation").empty()) return usage("--organisation needs a value");
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto p = open_privacy(*dir, *kek);
  if (!p) return fail_with(p.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  auto clinical = clinical::ResourceStore::open(dir->clinical_db(), core::system_clock());
  if (!clinical) return fail_with(clinical.error());
  std::unique_ptr<privacy::CareRelations> care;
  if (args.has("organisation")) {
    auto c = privacy::CareRelations::open(dir->care_db());
    if (!c) return fail_with(c.error());
    care = std::move(*c);
  }
  const fhir::ImportContext context{*p->vault, *p->pseudonymiser, (*store)->registry(), **clinical, ""};

  int status = 0;
  for (const auto& file : args.words) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      std::cerr << "telehub: " << file << ": cannot read the file\n";
      status = 1;
      continue;
    }
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto r = fhir::import_bundle(text, context);
    if (!r) {
      std::cerr << "telehub: " << file << ": not imported: " << r.error().message << " [" << r.error().reason << "]\n";
      status = 1;
      continue;
    }
    for (const auto& patient : r->patients) {
      const std::string ps = patient.pseudonym;
      if (!audit(*p, cli_audit(patient.created ? "subject.register" : "clinical.import", patient.created ? 'C' : 'U', ps,
                               "Patient/" + ps + " Bundle", "registration")))
        status = 1;
      if (care) {
        const std::string org = args.get("organisation");
        if (!audit(*p, cli_audit("care.add", 'C', ps, "CareRelation organisation=" + org, "care-relation"))) {
          status = 1;
          continue;
        }
        if (auto added = care->add(ps, org, core::system_clock().now(), "import"); !added) {
          std::cerr << "telehub: " << file << ": care relation not recorded: " << added.error().message << " ["
                    << added.error().reason << "]\n";
          status = 1;
        }
      }
    }
    std::cout << file << ": " << (r->transaction ? "transaction" : "batch") << ", " << r->entries.size()
              << " entries: " << r->stored() << " stored, " << r->existing() << " existing, " << r->failed()
              << " failed\n";
    for (const auto& patient : r->patients)
      std::cout << "  patient: Patient/" << patient.pseudonym << (patient.created ? " (new)" : " (known)") << "\n";
    for (const auto& e : r->entries)
      if (e.error) std::cout << "  failed: " << e.error->message << " [" << e.error->reason << "]\n";
    if (r->failed() > 0) status = 1;
  }
  return status;
}

}  // namespace telehub::apps
