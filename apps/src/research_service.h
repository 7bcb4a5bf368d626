// The research role's study outputs for `telehub serve` (docs/research.md): the study
// definitions of a directory, the research key, and the hooks the router calls
// (fhir::RouterOptions::research) for the study list, aggregate tables and the pseudonymised
// Bulk Data export. The router checks the role and audits; these only compute.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "telehub/clinical/resource_store.h"
#include "telehub/core/error.h"
#include "telehub/environment/env_store.h"
#include "telehub/fhir/router.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/keystore.h"
#include "telehub/research/research_key.h"
#include "telehub/research/study.h"
#include "telehub/storage/store.h"

namespace telehub::apps {

struct ResearchStores {
  storage::Store* store = nullptr;
  std::shared_ptr<privacy::IdentityVault> vault;
  std::shared_ptr<privacy::ConsentStore> consent;
  std::shared_ptr<clinical::ResourceStore> clinical;
  std::shared_ptr<environment::EnvStore> environment;  // may be null: no exposures
};

class ResearchService {
 public:
  // Loads every <id>.json study in `studies_dir` (a missing directory: no studies; a bad file
  // or an id that is not its file name: an error naming the file) and opens the research key.
  [[nodiscard]] static Result<std::shared_ptr<ResearchService>> open(const std::filesystem::path& studies_dir,
                                                                     const std::filesystem::path& key_file,
                                                                     const privacy::Kek& kek, ResearchStores stores);
  // Sets options.research to hooks over this service (which must outlive the router).
  void install(fhir::RouterOptions& options) const;
  std::size_t study_count() const { return studies_.size(); }

 private:
  ResearchService(research::ResearchKey key, ResearchStores stores) : key_(std::move(key)), stores_(std::move(stores)) {}
  research::ResearchKey key_;
  ResearchStores stores_;
  std::map<std::string, research::Study> studies_;
};

}  // namespace telehub::apps
