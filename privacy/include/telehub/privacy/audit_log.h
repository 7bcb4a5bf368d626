// The audit log (NEN 7513): every access to identified data, every registration, consent change
// and erasure leaves a record. A separate SQLite file (<data>/audit.db), append-only and
// hash-chained: each record holds the SHA-256 of its predecessor's canonical form, and its own
// hash covers all its fields and that link, so editing, deleting, inserting or reordering a
// record breaks the chain from that point on. The head (last sequence number and hash) can be
// exported and kept elsewhere to anchor the chain (a truncated tail is caught against it).
//
// Canonical form (what is hashed): the fields in the order of AuditRecord below, from sequence
// to source, each as <name>=<value> with the value's UTF-8 bytes, joined by "\n", then
// "\nprev=" + prev_hash hex. Precisely:
//   - names are the member names below (sequence, recorded, event_type, action, outcome,
//     user_id, role, on_behalf_of, purpose, access_point, subject, objects, query, source);
//   - sequence is decimal without sign or leading zeros; action is its one letter; recorded is
//     the stored text as is; empty optional fields still appear ("on_behalf_of=");
//   - in every value a backslash is written "\\" and a line feed "\n" (two characters), so a
//     value cannot imitate a field separator; no other byte is changed;
//   - no trailing line feed. hash = lower-case hex of SHA-256 (FIPS 180-4) over these bytes.
// Example (sequence 1, so prev is empty):
//   "sequence=1\nrecorded=2026-11-28T14:03:11.123+00:00\nevent_type=patient.read\naction=R\n
//    outcome=success\nuser_id=u1\nrole=care\non_behalf_of=\npurpose=treatment\n
//    access_point=127.0.0.1:51234\nsubject=p1\nobjects=Patient/p1\nquery=\nsource=telehub\nprev="
// docs/privacy.md, "Audit log", states it so that another program can verify the chain.
//
// Storage: table audit(sequence INTEGER PRIMARY KEY, recorded, event_type, action, outcome,
// user_id, role, on_behalf_of, purpose, access_point, subject, objects, query, source,
// prev_hash, hash), indexed on subject; WAL with synchronous=FULL, so a record is on disk when
// append() returns. Each append reads the last hash and inserts in one IMMEDIATE transaction.
//
// What the chain does and does not show: an edit, deletion, insertion or reordering inside
// the log breaks the chain at or after the record concerned. The hash is not keyed, so someone
// who rewrites every record after a point (or cuts the tail) leaves a consistent chain; only an
// anchor (head() kept elsewhere) exposes that.
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
#include <string_view>
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
  // Opens (creating when missing) the audit file and its table. `clock` stamps `recorded`; it
  // must outlive the log. Fails with unavailable/audit_io (missing directory, not a database,
  // locked longer than the busy timeout of 2 s).
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> open(const std::filesystem::path& file,
                                                              const core::Clock& clock = core::system_clock());
  virtual ~AuditLog() = default;

  // Appends a record (sets sequence = last + 1, recorded = now, prev_hash = the last hash,
  // hash) durably (fsync) and returns it as stored. Fails with invalid_argument/bad_audit_record
  // when event_type, user_id or role is empty, action is not one of C R U D E, or outcome is not
  // success | denied | failure (nothing is written); with unavailable/audit_io when the record
  // could not be written (nothing is written; the caller refuses the access).
  [[nodiscard]] virtual Result<AuditRecord> append(AuditRecord record) = 0;

  // Checks the whole chain: sequences 1..n without gaps, each prev_hash = the previous hash,
  // each hash = SHA-256(canonical form). With `anchor`, also that the record at
  // anchor->sequence has anchor->hash (a tail cut off, or history rewritten before it); an
  // anchor with sequence 0 (the head of an empty log) checks nothing. Stops at the first bad
  // record: ok = false, first_bad = its sequence (for a gap, the record after it), problem says
  // what is wrong. A broken chain is a successful verify() with ok = false; the call fails
  // (unavailable/audit_io) only when the file cannot be read.
  [[nodiscard]] virtual Result<VerifyResult> verify(const std::optional<AuditHead>& anchor = std::nullopt) = 0;

  // Reads. Each fails with unavailable/audit_io when the file cannot be read.
  // Records about one subject (pseudonym), oldest first.
  [[nodiscard]] virtual Result<std::vector<AuditRecord>> for_subject(std::string_view pseudonym) = 0;
  // The last `limit` records, oldest first.
  [[nodiscard]] virtual Result<std::vector<AuditRecord>> recent(std::size_t limit) = 0;
  // The last record's sequence and hash ({0, ""} for an empty log): export it to anchor verify().
  [[nodiscard]] virtual Result<AuditHead> head() = 0;
};

}  // namespace telehub::privacy
