// The audit log (NEN 7513): every access to identified data, every registration, consent change
// and erasure leaves a record. A separate SQLite file (<data>/audit.db), append-only and
// hash-chained: each record holds the SHA-256 of its predecessor's canonical form, and its own
// hash covers all its fields and that link, so editing, deleting, inserting or reordering a
// record breaks the chain from that point on. The head (last sequence number and hash) can be
// exported and kept elsewhere to anchor the chain (a truncated tail is caught against it).
//
// Canonical form (what is hashed): the fields in the order of AuditRecord below, each as
// <name>=<value> with the value's UTF-8 bytes, joined by "\n", then "\nprev=" + prev_hash hex.
// docs/privacy.md, "Audit log", states it so that another program can verify the chain.
//
// If a record cannot be written, append() fails, and callers refuse the access it was about
// ("no audit, no access").
//
// Error policy: Result, never throws. Failures: unavailable/audit_io (cannot write or read),
// invalid_argument/bad_audit_record (a required field empty, an unknown action or outcome).
// Thread-safety: append() and reads may be called from several threads (serialised inside).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "telehub/core/error.h"
#include "telehub/core/time.h"

namespace telehub::privacy {

struct AuditRecord {
  std::int64_t sequence = 0;      // set by append(): 1, 2, 3, ...
  std::string recorded;           // set by append(): RFC 3339 date-time with zone offset, e.g. 2026-11-28T14:03:11.123+00:00
  std::string event_type;         // REQUIRED: what kind of event: "subject.register", "patient.read", "patient.search", "consent.update", "subject.erase", "audit.verify", ...
  char action = 'R';              // REQUIRED: C, R, U, D or E (execute), as FHIR AuditEvent.action
  std::string outcome = "success";  // REQUIRED: success | denied | failure
  std::string user_id;            // REQUIRED: who (a user, client id, or "local:<uid>" for the CLI)
  std::string role;               // REQUIRED: care | research | enrolment | operator | local
  std::string on_behalf_of;       // the responsible user, when user_id acts for someone
  std::string purpose;            // purpose of use, e.g. "treatment", "research", "erasure-request"
  std::string access_point;       // client address or system ("127.0.0.1:51234", "cli")
  std::string subject;            // the subject's pseudonym (never an identifier)
  std::string objects;            // the objects touched, e.g. "Patient/<pseudonym>"
  std::string query;              // for searches: the query as received (may name a pseudonym, never a BSN)
  std::string source = "telehub"; // audit source: this system
  std::string prev_hash;          // set by append(): hex SHA-256 of the previous record ("" for the first)
  std::string hash;               // set by append(): hex SHA-256 of this record's canonical form
};

// The canonical form (above) of a record: what its hash covers.
std::string canonical_form(const AuditRecord& record);

struct AuditHead {
  std::int64_t sequence = 0;
  std::string hash;
};

struct VerifyResult {
  bool ok = true;
  std::int64_t records = 0;         // records checked
  std::int64_t first_bad = 0;       // sequence (or position) of the first bad record; 0 when ok
  std::string problem;              // "record 12: hash does not match its content", "record 13 is missing (sequence jumps from 12 to 14)", ...
};

class AuditLog {
 public:
  // Opens (creating when missing) the audit file. Fails with unavailable/audit_io.
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& file);
  virtual ~AuditLog() = default;

  // Appends a record (sets sequence, recorded, prev_hash, hash) durably (fsync) and returns it.
  [[nodiscard]] virtual Result<AuditRecord> append(AuditRecord record) = 0;

  // Checks the whole chain: sequences 1..n without gaps, each prev_hash = the previous hash,
  // each hash = SHA-256(canonical form). With `anchor`, also that the record at
  // anchor->sequence has anchor->hash (a tail cut off, or history rewritten before it).
  [[nodiscard]] virtual Result<VerifyResult> verify(const std::optional<AuditHead>& anchor = std::nullopt) = 0;

  // Records about one subject (pseudonym), oldest first.
  [[nodiscard]] virtual Result<std::vector<AuditRecord>> for_subject(std::string_view pseudonym) = 0;
  // The last `limit` records, oldest first.
  [[nodiscard]] virtual Result<std::vector<AuditRecord>> recent(std::size_t limit) = 0;
  [[nodiscard]] virtual Result<AuditHead> head() = 0;
};

}  // namespace telehub::privacy
