// CareRelations on SQLite (see care_relations.h). STUB: implemented by the care-relations work.
#include "telehub/privacy/care_relations.h"

namespace telehub::privacy {

bool valid_organisation(std::string_view organisation) {
  if (organisation.empty() || organisation.size() > 128) return false;
  for (const char c : organisation) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::unique_ptr<CareRelations>> CareRelations::open(const std::filesystem::path&) {
  return core::fail(core::Code::kUnimplemented, "care_io", "care relations not implemented yet");
}

}  // namespace telehub::privacy
