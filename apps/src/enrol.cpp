#include "enrol.h"

#include "telehub/core/bytes.h"
#include "telehub/gateway/provisioning.h"
#include "telehub/privacy/pseudonym.h"

namespace telehub::apps {

Result<Enrolment> enrol_device(const DataDir& dir, storage::Store& store, const std::string& subject_id,
                               const std::string& broker_uri, const std::filesystem::path& out) {
  bool printable = !subject_id.empty() && subject_id.size() <= 128;
  for (unsigned char c : subject_id) printable = printable && c > 0x20 && c < 0x7f;
  if (!printable)
    return core::fail(core::Code::kInvalidArgument, "bad_subject",
                      "--subject must be 1 to 128 printable ASCII characters without spaces");
  auto pseudonymiser = privacy::Pseudonymiser::open_key_file(dir.pseudonym_key());
  if (!pseudonymiser) return tl::unexpected(pseudonymiser.error());
  const auto subject = (*pseudonymiser)->subject(subject_id);

  auto id_bytes = core::random_bytes(8);
  auto key = core::random_bytes(32);
  if (!id_bytes) return tl::unexpected(id_bytes.error());
  if (!key) return tl::unexpected(key.error());

  storage::DeviceRecord device;
  device.id = "dev-" + core::to_hex(*id_bytes);
  device.subject = subject.str();
  device.key_id = 1;
  device.key = *key;
  device.enrolled_at = core::system_clock().now();
  if (auto s = store.registry().add_device(device); !s) return tl::unexpected(s.error());

  gateway::Provisioning p;
  p.device_id = device.id;
  p.key_id = device.key_id;
  p.key = device.key;
  p.broker_uri = broker_uri;
  p.readings_topic = gateway::readings_topic_for(device.id);
  std::filesystem::path file = out.empty() ? dir.provisioning_dir() / (device.id + ".json") : out;
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (auto s = gateway::save_provisioning(file, p); !s) return tl::unexpected(s.error());
  return Enrolment{device.id, subject.str(), file};
}

}  // namespace telehub::apps
