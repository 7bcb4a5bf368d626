// Where `serve` and `device enroll` find the device payload configuration (docs/payloads.md):
// the mapping templates (<config>/mappings/*.json) and the plausibility rules
// (<config>/plausibility.json, else the built-in defaults, which equal the shipped file).
//
// The configuration directory is --config DIR, else $TELEHUB_CONFIG_DIR, else the `config/`
// directory of the source tree telehub was built from (TELEHUB_DEFAULT_CONFIG_DIR).
//
// Error policy: Result; a template or rules file that does not parse fails the command (a
// half-loaded configuration would quarantine a device's every message).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "hub_files.h"
#include "telehub/core/error.h"
#include "telehub/ingest/pipeline.h"
#include "telehub/privacy/keystore.h"
#include "telehub/formats/mapping.h"
#include "telehub/formats/plausibility.h"

namespace telehub::apps {

struct PayloadConfig {
  std::filesystem::path dir;
  formats::MappingSet mappings;
  formats::Plausibility plausibility;
};

std::filesystem::path config_dir(const std::string& option);

// Loads the templates (a missing mappings directory means none) and the rules.
[[nodiscard]] Result<PayloadConfig> load_payload_config(const std::filesystem::path& dir);

// "native", "senml" or "template:<name>" from the --format option: native, senml, a template
// name or template:<name>. Fails with invalid_argument/bad_format when no such template exists.
[[nodiscard]] Result<std::string> resolve_format(const std::string& option, const PayloadConfig& config);

// The pipeline options `serve` and `quarantine replay` share: the configuration of `config_dir`
// (templates, plausibility rules) and the data directory's pseudonymiser for device serials
// (its key file is created when missing, as enrolment does).
[[nodiscard]] Result<ingest::PipelineOptions> pipeline_options(const std::filesystem::path& config_dir,
                                                               const DataDir& dir, const privacy::Kek& kek);

// The retention periods of <config>/retention.json: {"quarantine_days": N (required, 1..36500),
// "readings_days": N (optional, 1..36500; absent: readings are kept), "description": "..."};
// other members refused. Fails with invalid_argument/bad_config.
struct Retention {
  long long quarantine_days = 0;
  std::optional<long long> readings_days;
};
[[nodiscard]] Result<Retention> parse_retention(std::string_view json);

}  // namespace telehub::apps
