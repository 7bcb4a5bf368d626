#include "telehub/envelope/receipt.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "telehub/envelope/envelope.h"

namespace telehub::envelope {
namespace {

tl::unexpected<core::Error> bad(const std::string& what) {
  return core::fail(core::Code::kInvalidArgument, "bad_receipt", "receipt: " + what);
}

const char* status_name(Receipt::Status s) {
  switch (s) {
    case Receipt::Status::kStored: return "stored";
    case Receipt::Status::kDuplicate: return "duplicate";
    case Receipt::Status::kRejected: return "rejected";
  }
  return "";
}

}  // namespace

std::string receipts_topic_for(const std::string& device_id) {
  return "telehub/v1/devices/" + device_id + "/receipts";
}

Result<std::string> encode_receipt(const Receipt& r) {
  if (!valid_device_id(r.device_id)) return bad("device: not a valid device id");
  if (r.sequence == 0) return bad("sequence: must be at least 1");
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("v");
  w.Int(1);
  w.Key("device");
  w.String(r.device_id.c_str(), static_cast<rapidjson::SizeType>(r.device_id.size()));
  w.Key("sequence");
  w.Uint64(r.sequence);
  w.Key("status");
  w.String(status_name(r.status));
  if (r.status == Receipt::Status::kRejected) {
    w.Key("reason");
    w.String(r.reason.c_str(), static_cast<rapidjson::SizeType>(r.reason.size()));
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

Result<Receipt> decode_receipt(std::span<const std::uint8_t> json) {
  if (json.size() > 4096) return bad("too large");
  rapidjson::Document doc;
  doc.Parse(reinterpret_cast<const char*>(json.data()), json.size());
  if (doc.HasParseError() || !doc.IsObject()) return bad("not a JSON object");
  if (!doc.HasMember("v") || !doc["v"].IsInt() || doc["v"].GetInt() != 1) return bad("v: must be 1");
  Receipt r;
  if (!doc.HasMember("device") || !doc["device"].IsString()) return bad("device: missing");
  r.device_id = doc["device"].GetString();
  if (!valid_device_id(r.device_id)) return bad("device: not a valid device id");
  if (!doc.HasMember("sequence") || !doc["sequence"].IsUint64() || doc["sequence"].GetUint64() == 0)
    return bad("sequence: missing or not a positive integer");
  r.sequence = doc["sequence"].GetUint64();
  if (!doc.HasMember("status") || !doc["status"].IsString()) return bad("status: missing");
  const std::string status = doc["status"].GetString();
  if (status == "stored") r.status = Receipt::Status::kStored;
  else if (status == "duplicate") r.status = Receipt::Status::kDuplicate;
  else if (status == "rejected") r.status = Receipt::Status::kRejected;
  else return bad("status: unknown value");
  if (r.status == Receipt::Status::kRejected) {
    if (!doc.HasMember("reason") || !doc["reason"].IsString()) return bad("reason: missing");
    r.reason = doc["reason"].GetString();
  }
  return r;
}

}  // namespace telehub::envelope
