// The research hooks of `telehub serve` (research_service.h).
#include "research_service.h"

#include "telehub/research/cohort.h"
#include "telehub/research/query.h"

namespace telehub::apps {

Result<std::shared_ptr<ResearchService>> ResearchService::open(const std::filesystem::path& studies_dir,
                                                               const std::filesystem::path& key_file,
                                                               const privacy::Kek& kek, ResearchStores stores) {
  auto key = research::ResearchKey::open_wrapped_key_file(key_file, kek);
  if (!key) return tl::unexpected(key.error());
  std::shared_ptr<ResearchService> service(new ResearchService(std::move(*key), std::move(stores)));
  std::error_code ec;
  if (!std::filesystem::is_directory(studies_dir, ec)) return service;
  for (const auto& entry : std::filesystem::directory_iterator(studies_dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    auto study = research::load_study(entry.path());
    if (!study)
      return core::fail(study.error().code, study.error().reason, entry.path().string() + ": " + study.error().message);
    if (study->id != entry.path().stem().string())
      return core::fail(core::Code::kInvalidArgument, "bad_study",
                        entry.path().string() + ": the study id must be the file name (" + study->id + ".json)");
    service->studies_.emplace(study->id, std::move(*study));
  }
  if (ec) return core::fail(core::Code::kUnavailable, "studies_dir", "cannot read " + studies_dir.string() + ": " + ec.message());
  return service;
}

void ResearchService::install(fhir::RouterOptions& options) const {
  const ResearchService* self = this;
  auto sources = [self]() {
    research::ExposureFn exposure;
    if (self->stores_.environment) exposure = research::env_store_exposure(*self->stores_.environment);
    return research::Sources{self->stores_.store->observations(), self->stores_.store->registry(), *self->stores_.vault,
                             *self->stores_.consent, *self->stores_.clinical, self->key_, exposure};
  };
  options.research.studies = [self]() -> Result<std::vector<std::string>> {
    std::vector<std::string> ids;
    for (const auto& [id, study] : self->studies_) ids.push_back(id);
    return ids;
  };
  options.research.aggregate = [self, sources](std::string_view id,
                                               const std::vector<std::pair<std::string, std::string>>& params) -> Result<std::string> {
    const auto it = self->studies_.find(std::string(id));
    if (it == self->studies_.end()) return core::fail(core::Code::kNotFound, "no_study", "no such study");
    auto query = research::parse_study_query(params);
    if (!query) return tl::unexpected(query.error());
    auto table = research::aggregate_study(sources(), it->second, *query, core::system_clock().now());
    if (!table) return tl::unexpected(table.error());
    return research::to_json(*table);
  };
  options.research.export_study = [self, sources](std::string_view id, const std::vector<std::string>& types,
                                                  const fhir::RouterOptions::Research::WriteFn& write) -> Status {
    const auto it = self->studies_.find(std::string(id));
    if (it == self->studies_.end()) return core::fail(core::Code::kNotFound, "no_study", "no such study");
    return research::write_fhir_dataset(sources(), it->second, core::system_clock().now(), types, write);
  };
}

}  // namespace telehub::apps
