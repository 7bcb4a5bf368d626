// Provisioning file (docs/protocol.md section 6) read and written with RapidJSON.
#include "telehub/gateway/provisioning.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string_view>
#include <system_error>
#include <utility>

#include "telehub/envelope/envelope.h"

namespace telehub::gateway {
namespace {

using core::Code;

constexpr int kFormatVersion = 1;

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

tl::unexpected<core::Error> bad(std::string_view member, std::string_view problem) {
  return core::fail(Code::kInvalidArgument, "bad_provisioning", std::string(member) + ": " + std::string(problem));
}

// Paho's URI forms (tcp://, ssl://, mqtt://, mqtts://, ws://, wss://) with a host.
bool plausible_broker_uri(std::string_view uri) {
  static constexpr std::string_view kSchemes[] = {"tcp://", "ssl://", "mqtt://", "mqtts://", "ws://", "wss://"};
  for (auto scheme : kSchemes) {
    if (uri.substr(0, scheme.size()) == scheme) {
      auto rest = uri.substr(scheme.size());
      return !rest.empty() && rest.front() != ':' && rest.front() != '/' &&
             rest.find_first_of(" \t\r\n") == std::string_view::npos;
    }
  }
  return false;
}

bool is_tls_uri(std::string_view uri) { return uri.substr(0, 6) == "ssl://" || uri.substr(0, 8) == "mqtts://"; }

bool looks_like_pem(std::string_view text, std::string_view label_part) {
  return text.substr(0, 11) == "-----BEGIN " && text.find(label_part) != std::string_view::npos &&
         text.find("-----END ") != std::string_view::npos;
}

// The TLS members: all three or none; PEM-shaped; an ssl:// broker when present. Messages name
// the member, never its content.
[[nodiscard]] Status validate_tls(const Provisioning& p) {
  const int set = !p.ca_pem.empty() + !p.cert_pem.empty() + !p.key_pem.empty();
  if (set == 0) return {};
  if (set != 3) return bad("tls", "expected ca, cert and key");
  if (!looks_like_pem(p.ca_pem, "CERTIFICATE")) return bad("tls.ca", "expected a PEM certificate");
  if (!looks_like_pem(p.cert_pem, "CERTIFICATE")) return bad("tls.cert", "expected a PEM certificate");
  if (!looks_like_pem(p.key_pem, "PRIVATE KEY")) return bad("tls.key", "expected a PEM private key");
  if (!is_tls_uri(p.broker_uri)) return bad("broker", "expected ssl://host:port when tls is given");
  return {};
}

[[nodiscard]] Status validate(const Provisioning& p) {
  if (!envelope::valid_device_id(p.device_id)) return bad("device_id", "expected 1..64 characters of [A-Za-z0-9.-]");
  if (p.key.size() != envelope::kKeySize) return bad("key", "expected 32 bytes");
  if (!plausible_broker_uri(p.broker_uri)) return bad("broker", "expected a URI such as tcp://host:port");
  if (p.readings_topic != readings_topic_for(p.device_id))
    return bad("topics.readings", "expected telehub/v1/devices/<device_id>/readings");
  return validate_tls(p);
}

// Makes a completed rename durable; without it a crash can bring back the old directory entry.
void sync_parent(const std::filesystem::path& path) {
  auto parent = path.parent_path();
  if (parent.empty()) parent = ".";
  int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string readings_topic_for(const std::string& device_id) {
  return "telehub/v1/devices/" + device_id + "/readings";
}

Result<Provisioning> load_provisioning(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::fail(Code::kNotFound, "provisioning_io", "cannot open provisioning file " + path.string());
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return core::fail(Code::kUnavailable, "provisioning_io", "cannot read provisioning file " + path.string());

  rapidjson::Document doc;
  doc.Parse(text.data(), text.size());
  if (doc.HasParseError())
    return bad("(document)", std::string("not JSON: ") + rapidjson::GetParseError_En(doc.GetParseError()) + " at offset " +
                                 std::to_string(doc.GetErrorOffset()));
  if (!doc.IsObject()) return bad("(document)", "expected a JSON object");

  auto member = [&](const rapidjson::Value& obj, const char* name) -> const rapidjson::Value* {
    auto it = obj.FindMember(name);
    return it == obj.MemberEnd() ? nullptr : &it->value;
  };

  const auto* version = member(doc, "telehub_provisioning");
  if (!version || !version->IsInt()) return bad("telehub_provisioning", "missing or not an integer");
  if (version->GetInt() != kFormatVersion) return bad("telehub_provisioning", "unsupported format version (expected 1)");

  Provisioning p;
  const auto* device_id = member(doc, "device_id");
  if (!device_id || !device_id->IsString()) return bad("device_id", "missing or not a string");
  p.device_id.assign(device_id->GetString(), device_id->GetStringLength());
  if (!envelope::valid_device_id(p.device_id)) return bad("device_id", "expected 1..64 characters of [A-Za-z0-9.-]");

  const auto* key_id = member(doc, "key_id");
  if (!key_id || !key_id->IsUint()) return bad("key_id", "missing or not an integer in 0..4294967295");
  p.key_id = key_id->GetUint();

  // The key's value must never reach a message: errors from from_hex are replaced, not passed on.
  const auto* key = member(doc, "key");
  if (!key || !key->IsString()) return bad("key", "missing or not a string");
  if (key->GetStringLength() != 2 * envelope::kKeySize) return bad("key", "expected 64 hexadecimal characters");
  auto key_bytes = core::from_hex(std::string_view(key->GetString(), key->GetStringLength()));
  if (!key_bytes) return bad("key", "expected 64 hexadecimal characters");
  p.key = std::move(*key_bytes);

  const auto* broker = member(doc, "broker");
  if (!broker || !broker->IsString()) return bad("broker", "missing or not a string");
  p.broker_uri.assign(broker->GetString(), broker->GetStringLength());
  if (!plausible_broker_uri(p.broker_uri)) return bad("broker", "expected a URI such as tcp://host:port");

  const auto* topics = member(doc, "topics");
  if (!topics || !topics->IsObject()) return bad("topics", "missing or not an object");
  const auto* readings = member(*topics, "readings");
  if (!readings || !readings->IsString()) return bad("topics.readings", "missing or not a string");
  p.readings_topic.assign(readings->GetString(), readings->GetStringLength());
  if (p.readings_topic != readings_topic_for(p.device_id))
    return bad("topics.readings", "expected telehub/v1/devices/<device_id>/readings");

  if (const auto* tls = member(doc, "tls")) {
    if (!tls->IsObject()) return bad("tls", "not an object");
    const std::pair<const char*, std::string*> parts[] = {
        {"ca", &p.ca_pem}, {"cert", &p.cert_pem}, {"key", &p.key_pem}};
    for (const auto& [name, out] : parts) {
      const auto* v = member(*tls, name);
      if (!v || !v->IsString() || v->GetStringLength() == 0)
        return bad(std::string("tls.") + name, "missing or not a non-empty string");
      out->assign(v->GetString(), v->GetStringLength());
    }
    if (auto st = validate_tls(p); !st) return tl::unexpected(st.error());
  }
  return p;
}

Status save_provisioning(const std::filesystem::path& path, const Provisioning& p) {
  if (auto st = validate(p); !st) return st;

  rapidjson::StringBuffer buf;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buf);
  w.SetIndent(' ', 2);
  const std::string key_hex = core::to_hex(p.key);
  w.StartObject();
  w.Key("telehub_provisioning");
  w.Int(kFormatVersion);
  w.Key("device_id");
  w.String(p.device_id.data(), static_cast<rapidjson::SizeType>(p.device_id.size()));
  w.Key("key_id");
  w.Uint(p.key_id);
  w.Key("key");
  w.String(key_hex.data(), static_cast<rapidjson::SizeType>(key_hex.size()));
  w.Key("broker");
  w.String(p.broker_uri.data(), static_cast<rapidjson::SizeType>(p.broker_uri.size()));
  w.Key("topics");
  w.StartObject();
  w.Key("readings");
  w.String(p.readings_topic.data(), static_cast<rapidjson::SizeType>(p.readings_topic.size()));
  w.EndObject();
  if (p.has_tls()) {
    w.Key("tls");
    w.StartObject();
    w.Key("ca");
    w.String(p.ca_pem.data(), static_cast<rapidjson::SizeType>(p.ca_pem.size()));
    w.Key("cert");
    w.String(p.cert_pem.data(), static_cast<rapidjson::SizeType>(p.cert_pem.size()));
    w.Key("key");
    w.String(p.key_pem.data(), static_cast<rapidjson::SizeType>(p.key_pem.size()));
    w.EndObject();
  }
  w.EndObject();
  std::string_view json(buf.GetString(), buf.GetSize());

  // Created 0600 from the start (not chmod-ed later), so the key is never readable by others,
  // not even for a moment. O_EXCL: a leftover temp file from a crash is replaced, not reused.
  auto tmp = path;
  tmp += ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return core::fail(Code::kUnavailable, "provisioning_io", "cannot create " + tmp.string() + ": " + errno_text(errno));
  auto abandon = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return core::fail(Code::kUnavailable, "provisioning_io", std::string(what) + " " + tmp.string() + ": " + errno_text(err));
  };
  if (::fchmod(fd, 0600) != 0) return abandon("cannot chmod");  // umask could only narrow it; be exact
  for (std::size_t off = 0; off < json.size();) {
    ssize_t n = ::write(fd, json.data() + off, json.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return abandon("cannot write");
    off += static_cast<std::size_t>(n);
  }
  if (::write(fd, "\n", 1) != 1) return abandon("cannot write");
  if (::fsync(fd) != 0) return abandon("cannot fsync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return core::fail(Code::kUnavailable, "provisioning_io", "cannot close " + tmp.string() + ": " + errno_text(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return core::fail(Code::kUnavailable, "provisioning_io", "cannot rename to " + path.string() + ": " + errno_text(err));
  }
  sync_parent(path);
  return {};
}

}  // namespace telehub::gateway
