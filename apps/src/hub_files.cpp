#include "hub_files.h"

#include "telehub/core/log.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace telehub::apps {

Result<DataDir> open_data_dir(const std::filesystem::path& root) {
  std::error_code ec;
  std::filesystem::create_directories(root, ec);
  if (ec || !std::filesystem::is_directory(root))
    return core::fail(core::Code::kUnavailable, "data_dir", "cannot create data directory " + root.string());
  ::chmod(root.c_str(), 0700);
  return DataDir{std::filesystem::absolute(root)};
}

Result<privacy::Kek> load_kek(const std::string& kek_file, const DataDir& dir) {
  const char* env = std::getenv(privacy::Kek::kEnvVar);
  if (kek_file.empty() && (env == nullptr || *env == '\0')) {
    auto path = privacy::Kek::default_dev_path();
    if (path)
      core::log_warn("keys", "using the development key-encryption key " + path->string() +
                                 " (created on first use); in production pass --kek-file or set TELEHUB_KEK");
  }
  return privacy::Kek::resolve(kek_file, dir.root);
}

Status write_hub_info(const DataDir& dir, const HubInfo& info) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("broker");
  w.String(info.broker_uri.c_str());
  w.Key("fhir");
  w.String(info.fhir_base.c_str());
  w.Key("embedded_broker_port");
  w.Int(info.embedded_broker_port);
  w.EndObject();
  auto tmp = dir.hub_file();
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << buf.GetString() << "\n";
    if (!out) return core::fail(core::Code::kUnavailable, "hub_file", "cannot write " + tmp.string());
  }
  std::error_code ec;
  std::filesystem::rename(tmp, dir.hub_file(), ec);
  if (ec) return core::fail(core::Code::kUnavailable, "hub_file", "cannot write " + dir.hub_file().string());
  return {};
}

Result<std::optional<HubInfo>> read_hub_info(const DataDir& dir) {
  std::ifstream in(dir.hub_file());
  if (!in) return std::optional<HubInfo>();
  std::stringstream ss;
  ss << in.rdbuf();
  rapidjson::Document doc;
  doc.Parse(ss.str().c_str());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("broker") || !doc["broker"].IsString())
    return core::fail(core::Code::kDataLoss, "hub_file", dir.hub_file().string() + " is not a valid hub file");
  HubInfo info;
  info.broker_uri = doc["broker"].GetString();
  if (doc.HasMember("fhir") && doc["fhir"].IsString()) info.fhir_base = doc["fhir"].GetString();
  if (doc.HasMember("embedded_broker_port") && doc["embedded_broker_port"].IsInt())
    info.embedded_broker_port = doc["embedded_broker_port"].GetInt();
  return std::optional<HubInfo>(info);
}

}  // namespace telehub::apps
