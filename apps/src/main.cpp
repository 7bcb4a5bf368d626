// The `telehub` command: serve, device, simulate, quarantine, subject, audit, consent, import, ...
#include <iostream>
#include <string>

#include "args.h"
#include "commands.h"
#include "enrol.h"
#include "hub_files.h"
#include "telehub/core/time.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

int fail_with(const core::Error& e) {
  std::cerr << "telehub: " << e.message << " [" << e.reason << "]\n";
  return 1;
}

namespace {

constexpr const char* kHelp = R"(usage: telehub <command> [options]

commands:
  serve                      run the hub: broker link, ingest, FHIR API (telehub serve --help)
  device enroll --subject ID enrol a device for a subject and write its provisioning file
  simulate                   enrol simulated patients and publish their vital signs (telehub simulate --help)
  quarantine list|show|replay  inspect quarantined messages; replay them after a fix (e.g. enrolment)
  subject register|show|erase  the identity vault: register a person, re-identify (audited), GDPR erasure
  audit verify|show|head     check the audit log's hash chain; who accessed a patient's data
  consent grant|deny|withdraw|show|import  consent records (care, research, research:<study>)
  retention apply            delete what is older than its retention period (config/retention.json)
  client keygen|register|rotate|assertion  SMART Backend Services clients: keys, registration, JWT assertions
  token create|revoke        API tokens for operators and researchers (shown once, stored hashed)
  care add|end|list          care relations: which organisation treats which subject, and when (audited)
  import FILE...             import FHIR Bundles from a hospital: Patients to the vault, the rest to clinical.db
  env import FILE...         hourly air quality and weather per postcode area (docs/environment.md)
  research export|query      study datasets and aggregates: pseudonymised, consented, k-anonymous (docs/research.md)

common options: --data DIR (default ./data)
)";

}  // namespace

}  // namespace telehub::apps

int main(int argc, char** argv) {
  using namespace telehub::apps;
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "help") {
    std::cout << kHelp;
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  if (cmd == "serve") return cmd_serve(argc, argv);
  if (cmd == "device") return cmd_device(argc, argv);
  if (cmd == "simulate") return cmd_simulate(argc, argv);
  if (cmd == "quarantine") return cmd_quarantine(argc, argv);
  if (cmd == "subject") return cmd_subject(argc, argv);
  if (cmd == "audit") return cmd_audit(argc, argv);
  if (cmd == "consent") return cmd_consent(argc, argv);
  if (cmd == "retention") return cmd_retention(argc, argv);
  if (cmd == "client") return cmd_client(argc, argv);
  if (cmd == "token") return cmd_token(argc, argv);
  if (cmd == "care") return cmd_care(argc, argv);
  if (cmd == "import") return cmd_import(argc, argv);
  if (cmd == "env") return cmd_env(argc, argv);
  if (cmd == "research") return cmd_research(argc, argv);
  std::cerr << "telehub: unknown command '" << cmd << "'\n" << kHelp;
  return 2;
}
