// `telehub research export --study FILE --format csv|ndjson --out DIR [--data DIR] [--kek-file F]
// [--user NAME]`: a study's pseudonymised, consented, k-anonymous dataset (docs/research.md).
// The export is written to the audit log (research.export, by the OS user or --user) before its
// files are published (research::export_dataset).
#include <iostream>

#include "args.h"
#include "commands.h"
#include "privacy_stores.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/research/export.h"
#include "telehub/research/research_key.h"
#include "telehub/research/study.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kResearchHelp = R"(usage: telehub research export --study FILE --format csv|ndjson --out DIR [options]

Exports the dataset of a study (docs/research.md): only subjects who consented to the study's
scope and meet its inclusion, under per-study pseudonyms, with dates shifted per subject (or
relative to enrolment), quasi-identifiers generalised until every class holds at least k
subjects, readings joined with the environmental exposure of their area and hour. Writes
data.csv or data.ndjson, subjects.csv and manifest.json into DIR (which must not exist or be
empty), after recording the export in the audit log. Prints the manifest's counts.
  --study FILE        the study definition (JSON; config/studies/example-hf.json)
  --format F          csv or ndjson
  --out DIR           the output directory to create
  --data DIR          data directory (default ./data)
  --kek-file PATH     key-encryption key file (default: $TELEHUB_KEK, else ~/.config/telehub/kek)
  --user NAME         who exports, for the audit log (default: the OS user)
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kResearchHelp;
  return 2;
}

int cmd_export(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 3, {"study", "format", "out", "data", "kek-file", "user"}, {"help"});
  if (!parsed) return usage(parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kResearchHelp;
    return 0;
  }
  if (!args.words.empty()) return usage("unexpected argument '" + args.words.front() + "'");
  for (const char* required : {"study", "format", "out"})
    if (args.get(required).empty()) return usage(std::string("--") + required + " is required");
  research::Format format;
  if (args.get("format") == "csv") format = research::Format::kCsv;
  else if (args.get("format") == "ndjson") format = research::Format::kNdjson;
  else return usage("--format must be csv or ndjson");
  if (args.has("user") && args.get("user").empty()) return usage("--user needs a value");

  auto study = research::load_study(args.get("study"));
  if (!study) return fail_with(study.error());
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return fail_with(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return fail_with(kek.error());
  auto p = open_privacy(*dir, *kek);
  if (!p) return fail_with(p.error());
  auto key = research::ResearchKey::open_wrapped_key_file(dir->research_key(), *kek);
  if (!key) return fail_with(key.error());
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return fail_with(store.error());
  auto clinical = clinical::ResourceStore::open(dir->clinical_db(), core::system_clock());
  if (!clinical) return fail_with(clinical.error());

  research::ExposureFn exposure;
  std::unique_ptr<environment::EnvStore> env;
  if (!study->environment.empty()) {
    auto e = environment::EnvStore::open(dir->environment_db());
    if (!e) return fail_with(e.error());
    env = std::move(*e);
    exposure = research::env_store_exposure(*env);
  }

  const research::Sources sources{(*store)->observations(), (*store)->registry(), *p->vault, *p->consent,
                                  **clinical, *key, exposure};
  research::ExportOptions options;
  options.out_dir = args.get("out");
  options.format = format;
  options.now = core::system_clock().now();
  options.user_id = args.has("user") ? args.get("user") : cli_audit("", 'E', "", "", "").user_id;
  options.access_point = "cli";
  auto m = research::export_dataset(sources, *study, *p->audit, options);
  if (!m) return fail_with(m.error());
  std::cout << "study " << m->study_id << ": " << m->counts.included << " included, " << m->counts.suppressed
            << " suppressed (classes below k=" << m->k << "), " << m->counts.excluded_no_consent
            << " excluded for lack of consent, " << m->counts.excluded_inclusion << " not meeting the inclusion, of "
            << m->counts.candidates << " subjects; " << m->rows << " rows\n"
            << "risk: prosecutor max " << m->risk.prosecutor_max << ", average " << m->risk.average << "\n"
            << "written: " << options.out_dir.string() << "\n";
  return 0;
}

}  // namespace

int cmd_research(int argc, char** argv) {
  if (argc < 3) return usage("name a research command");
  const std::string sub = argv[2];
  if (sub == "--help" || sub == "help") {
    std::cout << kResearchHelp;
    return 0;
  }
  if (sub == "export") return cmd_export(argc, argv);
  return usage("unknown research command '" + sub + "'");
}

}  // namespace telehub::apps
