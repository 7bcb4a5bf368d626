// CareRelations: which organisation treats which subject, and when (docs/security.md, "Care
// relations"). The care role of issue [6/8] sees identified data only for subjects in an active
// care relation with its client's organisation. Kept by pseudonym in <data>/care.db.
//
// A relation is (subject pseudonym, organisation, from, until?). It is active at time t when
// from <= t and (no until or t < until). end() sets `until` on the open relations of a pair;
// nothing is deleted except by erase_subject() (GDPR erasure). Several relations of one pair
// may exist over time (a new episode after an ended one).
//
// Organisation: 1..128 characters from [A-Za-z0-9._:-] (e.g. a URA number "ura:12345678" or a
// short name "hospital-a"); subjects: SubjectPseudonym::parse.
//
// Error policy: Result, never throws. Bad arguments: invalid_argument/bad_care_relation (the
// message names the argument, never quotes it beyond the organisation). Database failures:
// reason care_io, keeping the sqlite wrapper's code (unavailable when the file cannot be
// opened or is busy).
//
// Thread-safety: safe from several threads (one connection, serialised by a mutex inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::privacy {

struct CareRelation {
  std::int64_t id = 0;  // set by the store
  std::string subject;  // pseudonym (32 hex)
  std::string organisation;
  core::TimePoint from{};
  std::optional<core::TimePoint> until;
  std::string source;  // who recorded it: "cli", "fhir:<client id>", ...
};

// True when `organisation` is 1..128 characters from [A-Za-z0-9._:-].
bool valid_organisation(std::string_view organisation);

class CareRelations {
 public:
  // Opens or creates the database file (WAL, synchronous=FULL) and its schema. Fails with
  // care_io (unavailable when it cannot open).
  [[nodiscard]] static Result<std::unique_ptr<CareRelations>> open(const std::filesystem::path& file);
  virtual ~CareRelations() = default;

  // Records a relation from `from` (open-ended) unless the pair already has one active at
  // `from`; returns the id of the new or the already active relation. bad_care_relation for a
  // bad subject or organisation.
  [[nodiscard]] virtual Result<std::int64_t> add(std::string_view subject, std::string_view organisation,
                                                 core::TimePoint from, std::string_view source) = 0;
  // Ends every open relation of the pair at `at` (sets until = at where until is unset or
  // later). Returns how many it changed (0: none was open).
  [[nodiscard]] virtual Result<int> end(std::string_view subject, std::string_view organisation, core::TimePoint at) = 0;
  // Whether the pair has a relation active at `at`.
  [[nodiscard]] virtual Result<bool> active(std::string_view subject, std::string_view organisation,
                                            core::TimePoint at) = 0;
  // Every relation of a subject, oldest first (by from, then id).
  [[nodiscard]] virtual Result<std::vector<CareRelation>> of_subject(std::string_view subject) = 0;
  // Subjects with a relation to `organisation` active at `at`, sorted.
  [[nodiscard]] virtual Result<std::vector<std::string>> subjects_of(std::string_view organisation,
                                                                     core::TimePoint at) = 0;
  // Deletes every relation of a subject (erasure). Returns how many.
  [[nodiscard]] virtual Result<int> erase_subject(std::string_view subject) = 0;
};

}  // namespace telehub::privacy
