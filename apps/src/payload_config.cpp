#include "payload_config.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include "telehub/envelope/json.h"
#include "telehub/formats/decoded.h"

namespace telehub::apps {

std::filesystem::path config_dir(const std::string& option) {
  if (!option.empty()) return option;
  if (const char* env = std::getenv("TELEHUB_CONFIG_DIR"); env && *env) return env;
  return TELEHUB_DEFAULT_CONFIG_DIR;
}

Result<PayloadConfig> load_payload_config(const std::filesystem::path& dir) {
  PayloadConfig config;
  config.dir = dir;
  std::error_code ec;
  if (std::filesystem::is_directory(dir / "mappings", ec)) {
    auto set = formats::MappingSet::load_dir(dir / "mappings");
    if (!set) return tl::unexpected(set.error());
    config.mappings = std::move(*set);
  }
  const auto rules = dir / "plausibility.json";
  if (std::filesystem::exists(rules, ec)) {
    std::ifstream in(rules, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof())
      return core::fail(core::Code::kUnavailable, "config_file", "cannot read " + rules.string());
    auto parsed = formats::Plausibility::parse(text.str());
    if (!parsed) {
      auto e = parsed.error();
      e.message = rules.string() + ": " + e.message;
      return tl::unexpected(e);
    }
    config.plausibility = std::move(*parsed);
  } else {
    config.plausibility = formats::Plausibility::defaults();
  }
  return config;
}

Result<std::string> resolve_format(const std::string& option, const PayloadConfig& config) {
  if (option.empty() || option == formats::kNativeFormat) return std::string(formats::kNativeFormat);
  if (option == formats::kSenmlFormat) return std::string(formats::kSenmlFormat);
  std::string name = option;
  if (name.starts_with(formats::kTemplatePrefix)) name = name.substr(formats::kTemplatePrefix.size());
  if (!config.mappings.find(name)) {
    std::string known;
    for (const auto& n : config.mappings.names()) known += (known.empty() ? "" : ", ") + n;
    return core::fail(core::Code::kInvalidArgument, "bad_format",
                      "--format: no mapping template '" + name + "' in " + (config.dir / "mappings").string() +
                          " (known: " + (known.empty() ? "none" : known) + "; or native, senml)");
  }
  return std::string(formats::kTemplatePrefix) + name;
}

Result<ingest::PipelineOptions> pipeline_options(const std::filesystem::path& dir, const DataDir& data,
                                                 const privacy::Kek& kek) {
  auto config = load_payload_config(dir);
  if (!config) return tl::unexpected(config.error());
  auto pseudonymiser = privacy::Pseudonymiser::open_wrapped_key_file(data.pseudonym_key(), kek);
  if (!pseudonymiser) return tl::unexpected(pseudonymiser.error());
  ingest::PipelineOptions options;
  options.mappings = std::make_shared<const formats::MappingSet>(std::move(config->mappings));
  options.plausibility = std::make_shared<const formats::Plausibility>(std::move(config->plausibility));
  options.pseudonymiser = std::shared_ptr<const privacy::Pseudonymiser>(std::move(*pseudonymiser));
  return options;
}

Result<Retention> parse_retention(std::string_view json) {
  rapidjson::Document doc;
  if (auto s = envelope::parse_json(json, doc); !s)
    return core::fail(core::Code::kInvalidArgument, "bad_config", "not valid JSON");
  if (!doc.IsObject()) return core::fail(core::Code::kInvalidArgument, "bad_config", "must be a JSON object");
  Retention r;
  r.quarantine_days = -1;
  auto days = [](const rapidjson::Value& v) { return v.IsInt64() && v.GetInt64() >= 1 && v.GetInt64() <= 36500; };
  for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
    const std::string name = it->name.GetString();
    if (name == "description" && it->value.IsString()) continue;
    if (name == "quarantine_days" && days(it->value)) {
      r.quarantine_days = it->value.GetInt64();
      continue;
    }
    if (name == "readings_days" && days(it->value)) {
      r.readings_days = it->value.GetInt64();
      continue;
    }
    return core::fail(core::Code::kInvalidArgument, "bad_config",
                      name + ": unknown member, or a value of the wrong type or range (days: 1..36500)");
  }
  if (r.quarantine_days < 0) return core::fail(core::Code::kInvalidArgument, "bad_config", "quarantine_days is missing");
  return r;
}

}  // namespace telehub::apps
