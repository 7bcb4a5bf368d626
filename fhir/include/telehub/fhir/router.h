// telehub::fhir: the FHIR R4 (4.0.1) REST API over the measurement store.
//
// Router::handle() is a pure function from a Request to a Response (no sockets), so every
// route is unit-tested without a server; http_server.h puts it behind Boost.Beast.
//
// Routes ([1/8]), all under /fhir:
//   GET metadata                 CapabilityStatement
//   GET Observation?patient=|subject=&code=[system|]code&date=<prefix><date>&_count=&_cursor=
//                                searchset Bundle of Observations (docs/api.md), with next link
//   GET Observation/<id>         one Observation
//   GET Patient/<id>             Patient: re-identified (name, BSN) for the care role within a
//                                care relation, pseudonymous without authentication
//   GET Device/<id>              Device
// ([5/8]) POST Patient, PUT Patient?identifier=system|value, GET AuditEvent, POST Consent;
// ([6/8]) GET .well-known/smart-configuration (with options.auth.tokens); outside /fhir,
// POST /auth/token (SMART Backend Services token endpoint, with options.auth.tokens) and
// GET /metrics (Prometheus text format 0.0.4) when options.metrics is set.
//
// Access (issue [6/8], access.h and docs/security.md): with options.auth.tokens every route but
// metadata, the SMART configuration and the token endpoint needs a bearer token or a registered
// client certificate, and its role and scopes decide:
//   Observation search/read   care (system/Observation.rs), only within a care relation
//   Patient read              care (system/Patient.r), only within a care relation: identified
//   Patient create/update     care (system/Patient.c / .u); declares the care relation
//   Device read               care (within a care relation) or enrolment (system/Device.r)
//   AuditEvent search         operator (system/AuditEvent.s)
//   Consent create            care (system/Consent.c), only within a care relation
//   /metrics                  operator
// 401 without valid credentials (WWW-Authenticate: Bearer), 403 otherwise. Every allowed and
// every refused access to these routes is written to the audit log first (no record, no access:
// 503). Without options.auth.tokens: no authentication; the pseudonymous reads are open and the
// identified routes answer 403, except in the local care setting (privacy.care_local).
// Every error is an OperationOutcome with the matching HTTP status (400 bad parameter,
// 401/403 access, 404 unknown resource/route, 405 method, 500 storage failure with no details);
// the token endpoint answers RFC 6749 JSON errors.
//
// Thread-safety: handle() is const and may be called from many threads at once (the store
// is thread-safe).
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "telehub/auth/token_service.h"
#include "telehub/clinical/resource_store.h"
#include "telehub/environment/env_store.h"
#include "telehub/formats/plausibility.h"
#include "telehub/privacy/care_relations.h"
#include "telehub/privacy/audit_log.h"
#include "telehub/privacy/consent.h"
#include "telehub/privacy/identity_vault.h"
#include "telehub/privacy/pseudonym.h"
#include "telehub/storage/store.h"

namespace telehub::fhir {

class BulkExports;  // fhir/src/bulk_export.h

struct Request {
  std::string method;   // "GET", "POST", ...
  std::string target;   // origin-form: path plus optional "?query", percent-encoded
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The client's address "ip:port" as the HTTP server saw it (empty when unknown, e.g. in
  // unit tests), and whether it is a loopback address. The audit log records the address;
  // the local-only care setting (RouterOptions::care_local) serves only loopback clients.
  std::string remote_address;
  bool remote_loopback = false;
  // With mutual TLS (HttpServerOptions::tls with a client_ca_file): the verified client
  // certificate's subject CN, or its first subjectAltName when it has no CN. Empty without
  // mutual TLS and in unit tests.
  std::string client_certificate{};  // "{}": brace-initialised Requests may leave it out
};

struct Response {
  int status = 200;
  std::string content_type = "application/fhir+json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // When set, the body is this file instead (body empty): the HTTP server streams it from disk
  // in pieces, never whole in memory (Bulk Data NDJSON files), uncompressed. Callers of
  // Router::handle outside the server read the file themselves.
  std::filesystem::path file;
};

struct RouterOptions {
  // Absolute base URL used in Bundle links and fullUrls. Default: "http://127.0.0.1:8080/fhir".
  std::string base_url = "http://127.0.0.1:8080/fhir";
  // Default and maximum page sizes for searches. Default: 50 and 1000 (the store's
  // limit caps max_count at 1000).
  std::size_t default_count = 50;
  std::size_t max_count = 1000;
  // Produces the Prometheus text served at GET /metrics (outside /fhir). Called on the HTTP
  // threads, so it must be thread-safe. Default: empty = /metrics is 404.
  std::function<std::string()> metrics;
  // The plausibility rules ingest applies: a stored value outside its code's expected range
  // gets Observation.interpretation HH or LL (docs/payloads.md, "Plausibility"). Default
  // (nullptr): formats::Plausibility::defaults().
  std::shared_ptr<const formats::Plausibility> plausibility;

  // Identified data (issue [5/8], docs/privacy.md): the stores the identified routes use. With
  // care_local (development only), clients on a loopback address that send no credentials act
  // in the care role as user "local", with every scope and without care-relation checks (the
  // audit log records their address). Each access writes an audit record first; if that fails,
  // the access is refused (503). Routes: POST Patient (register; conditional update by
  // identifier: PUT Patient?identifier=system|value, which must be one of the body's
  // identifiers), GET Patient/<pseudonym> (re-identified: name, BSN), GET
  // AuditEvent[?patient=<pseudonym>], POST Consent. Default: all unset.
  struct Privacy {
    std::shared_ptr<privacy::IdentityVault> vault;
    std::shared_ptr<privacy::AuditLog> audit;
    std::shared_ptr<privacy::ConsentStore> consent;
    std::shared_ptr<const privacy::Pseudonymiser> pseudonymiser;
    bool care_local = false;
  };
  Privacy privacy;

  // Authentication and authorisation (issue [6/8], docs/security.md). With `tokens` set, every
  // route except GET metadata and POST /auth/token needs a bearer token (or, with mutual TLS,
  // the certificate of a registered client), and the role and scopes decide what it may do;
  // privacy.care_local then applies only to loopback requests without credentials. Unset (the
  // library default, used by unit tests of other routes): no authentication.
  struct Auth {
    std::shared_ptr<auth::TokenService> tokens;
    // The absolute URL of POST /auth/token: the aud every client assertion must carry.
    std::string token_url;
    // Care relations: the care role sees identified data only for subjects in an active
    // relation with its organisation.
    std::shared_ptr<privacy::CareRelations> care_relations;
  };
  Auth auth;

  // Clinical records imported from hospital systems (issue [7/8], docs/clinical.md): POST /fhir
  // (transaction/batch Bundles), GET <Type>/<id>[/_history[/<vid>]], GET <Type>?..., clinical
  // Observations in Observation search and read, and Patient/<id>/$everything. Default: unset =
  // those routes are 404 (Observation search serves home readings only).
  std::shared_ptr<clinical::ResourceStore> clinical;

  // Bulk Data export jobs (docs/bulk-export.md): GET $export, Patient/$export,
  // Group/<organisation>/$export with Prefer: respond-async, the status URL
  // $export-status/<job> (GET polls, DELETE cancels) and $export-files/<job>/<file>.
  // Default: unset = those routes are 404.
  std::shared_ptr<BulkExports> exports;

  // Environmental context (issue [8/8], docs/environment.md): Patient/$everything adds the
  // hourly values of the patient's home area (PC4 of the vault postcode) over the requested
  // period. Default: unset = no environment in the dossier.
  std::shared_ptr<environment::EnvStore> environment;

  // Research (issue [8/8], docs/research.md): the research role's study outputs. The research
  // module supplies them through apps (fhir does not depend on it). Each unset hook: its routes
  // answer 404. The router checks the role and writes the audit record; the hooks only compute.
  struct Research {
    // GET /research/studies: the ids of the studies the hub serves, sorted.
    std::function<Result<std::vector<std::string>>()> studies;
    // GET /research/studies/<id>/aggregate?...: the aggregate table of a study (JSON text) for
    // the query parameters. Fails with not_found (unknown study) or invalid_argument (bad
    // parameters; the message is shown to the client).
    std::function<Result<std::string>(std::string_view study,
                                      const std::vector<std::pair<std::string, std::string>>& params)>
        aggregate;
    // GET Group/<study id>/$export by the research role: writes the study's pseudonymised FHIR
    // resources through `write` (on the export job's thread); `types` empty = all it offers.
    using WriteFn = std::function<Status(std::string_view type, std::string_view json)>;
    std::function<Status(std::string_view study, const std::vector<std::string>& types, const WriteFn& write)>
        export_study;
  } research;
};

class Router {
 public:
  Router(storage::Store& store, RouterOptions options);
  Response handle(const Request& request) const;

 private:
  Response route_request(const Request& request) const;
  storage::Store& store_;
  RouterOptions options_;
};

}  // namespace telehub::fhir
