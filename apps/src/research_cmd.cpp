// `telehub research export --study FILE --format csv|ndjson --out DIR [--data DIR] [--kek-file F]
// [--user NAME]`: a study's pseudonymised, consented, k-anonymous dataset (docs/research.md).
// The export is written to the audit log (research.export, by the OS user or --user) before its
// files are published (research::export_dataset).
#include <iostream>

#include "args.h"
#include "commands.h"
#include "privacy_stores.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/environment/env_store.h"
#include "telehub/research/export.h"
#include "telehub/research/query.h"
#include "telehub/research/research_key.h"
#include "telehub/research/study.h"
#include "telehub/storage/store.h"

namespace telehub::apps {
namespace {

constexpr const char* kResearchHelp = R"(usage: telehub research export --study FILE --format csv|ndjson --out DIR [options]
       telehub research query --study FILE --code CODE [--group-by QI,...] [--period P] [options]

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

query prints an aggregate table of one study variable over the same cohort (docs/research.md,
"Aggregate queries"): subjects, readings, mean, min, max and percentiles per group and period,
cells of fewer subjects than the threshold suppressed, with complementary suppression. The
query is recorded in the audit log first.
  --code CODE         a study variable's code, or a member of a panel variable (8480-6)
  --group-by QI,...   age_band, sex and/or region (those the study keeps). Default: none
  --period P          all, day, week, month or year (calendar periods). Default: month
  --percentiles LIST  e.g. 10,50,90. Default: 10,25,50,75,90
  --min-subjects N    the small-cell threshold; never below the study's k. Default: k
  --format F          json or csv. Default: json
)";

int usage(const std::string& message) {
  std::cerr << "telehub: " << message << "\n" << kResearchHelp;
  return 2;
}

// The stores a study reads, kept open together.
struct Opened {
  PrivacyStores privacy;
  std::unique_ptr<research::ResearchKey> key;
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<clinical::ResourceStore> clinical;
  std::unique_ptr<environment::EnvStore> env;
  research::ExposureFn exposure;
  research::Sources sources() const {
    return research::Sources{store->observations(), store->registry(), *privacy.vault, *privacy.consent, *clinical, *key,
                             exposure};
  }
};

Result<Opened> open_research(const Args& args, const research::Study& study) {
  auto dir = open_data_dir(args.get("data", "data"));
  if (!dir) return tl::unexpected(dir.error());
  auto kek = load_kek(args.get("kek-file"), *dir);
  if (!kek) return tl::unexpected(kek.error());
  Opened o;
  auto p = open_privacy(*dir, *kek);
  if (!p) return tl::unexpected(p.error());
  o.privacy = std::move(*p);
  auto key = research::ResearchKey::open_wrapped_key_file(dir->research_key(), *kek);
  if (!key) return tl::unexpected(key.error());
  o.key = std::make_unique<research::ResearchKey>(*key);
  auto store = storage::open_sqlite_store({dir->db()}, core::system_clock());
  if (!store) return tl::unexpected(store.error());
  o.store = std::move(*store);
  auto clinical = clinical::ResourceStore::open(dir->clinical_db(), core::system_clock());
  if (!clinical) return tl::unexpected(clinical.error());
  o.clinical = std::move(*clinical);
  if (!study.environment.empty()) {
    auto e = environment::EnvStore::open(dir->environment_db());
    if (!e) return tl::unexpected(e.error());
    o.env = std::move(*e);
    o.exposure = research::env_store_exposure(*o.env);
  }
  return o;
}

// `telehub research query`: an aggregate table of a study variable (docs/research.md,
// "Aggregate queries"), written to the audit log (research.query) before it is printed.
int cmd_query(int argc, char** argv) {
  auto parsed = parse_args(argc, argv, 3,
                           {"study", "code", "group-by", "period", "percentiles", "min-subjects", "format", "data", "kek-file", "user"},
                           {"help"});
  if (!parsed) return usage(parsed.error().message);
  const Args& args = *parsed;
  if (args.has("help")) {
    std::cout << kResearchHelp;
    return 0;
  }
  if (!args.words.empty()) return usage("unexpected argument '" + args.words.front() + "'");
  for (const char* required : {"study", "code"})
    if (args.get(required).empty()) return usage(std::string("--") + required + " is required");
  const std::string format = args.get("format", "json");
  if (format != "json" && format != "csv") return usage("--format must be json or csv");
  std::vector<std::pair<std::string, std::string>> params;
  for (const char* name : {"code", "group-by", "period", "percentiles", "min-subjects"})
    if (args.has(name)) params.emplace_back(name, args.get(name));
  auto query = research::parse_study_query(params);
  if (!query) return usage(query.error().message);
  auto study = research::load_study(args.get("study"));
  if (!study) return fail_with(study.error());
  auto opened = open_research(args, *study);
  if (!opened) return fail_with(opened.error());
  auto table = research::aggregate_study(opened->sources(), *study, *query, core::system_clock().now());
  if (!table) return fail_with(table.error());
  // No record, no answer.
  std::string objects = "Group/" + study->id;
  std::string detail = "code=" + query->code;
  for (const auto& [k, v] : params)
    if (k != "code") detail += "&" + k + "=" + v;
  auto record = cli_audit("research.query", 'E', "", objects, "research");
  record.query = detail;
  if (args.has("user")) record.user_id = args.get("user");
  if (auto a = opened->privacy.audit->append(std::move(record)); !a) return fail_with(a.error());
  std::cout << (format == "json" ? research::to_json(*table) + "\n" : research::to_csv(*table));
  return 0;
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
  auto opened = open_research(args, *study);
  if (!opened) return fail_with(opened.error());
  const research::Sources sources = opened->sources();
  const auto& p = opened->privacy;
  research::ExportOptions options;
  options.out_dir = args.get("out");
  options.format = format;
  options.now = core::system_clock().now();
  options.user_id = args.has("user") ? args.get("user") : cli_audit("", 'E', "", "", "").user_id;
  options.access_point = "cli";
  auto m = research::export_dataset(sources, *study, *p.audit, options);
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
  if (sub == "query") return cmd_query(argc, argv);
  return usage("unknown research command '" + sub + "'");
}

}  // namespace telehub::apps
