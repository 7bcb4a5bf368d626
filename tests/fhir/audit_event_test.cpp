// fhir::audit_event_json: audit records as R4 AuditEvents, with and without the optional
// fields, checked field by field and by the independent validator (../shared/tools/fhir-validate).
#include <catch2/catch.hpp>

#include <rapidjson/document.h>

#include <string>
#include <vector>

#include "telehub/core/bytes.h"
#include "telehub/fhir/audit_event.h"
#include "test_support.h"

using namespace telehub;

namespace {

privacy::AuditRecord full_record() {
  privacy::AuditRecord r;
  r.sequence = 42;
  r.recorded = "2026-11-28T14:03:11.123+00:00";
  r.event_type = "patient.search";
  r.action = 'E';
  r.outcome = "success";
  r.user_id = "dr-jansen";
  r.role = "care";
  r.on_behalf_of = "dr-de-vries";
  r.purpose = "treatment";
  r.access_point = "127.0.0.1:51234";
  r.subject = "p-7f3a";
  r.objects = "Observation?subject=Patient/p-7f3a";
  r.query = "Observation?subject=Patient/p-7f3a&code=8867-4&_count=10";
  r.prev_hash = std::string(64, 'a');
  r.hash = std::string(64, 'b');
  return r;
}

privacy::AuditRecord minimal_record() {
  privacy::AuditRecord r;
  r.sequence = 1;
  r.recorded = "2026-11-28T14:03:11.123+00:00";
  r.event_type = "audit.verify";
  r.action = 'E';
  r.user_id = "local:1000";
  r.role = "local";
  return r;
}

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string str(const rapidjson::Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

}  // namespace

TEST_CASE("a full audit record maps to an AuditEvent field by field", "[fhir][audit]") {
  const auto json = fhir::audit_event_json(full_record());
  INFO(json);
  auto d = parse(json);
  CHECK(str(d["resourceType"]) == "AuditEvent");
  CHECK(str(d["id"]) == "audit-42");
  CHECK(str(d["type"]["system"]) == "http://dicom.nema.org/resources/ontology/DCM");
  CHECK(str(d["type"]["code"]) == "110112");
  CHECK(str(d["subtype"][0]["system"]) == "https://telehub.example.org/fhir/CodeSystem/audit-event-type");
  CHECK(str(d["subtype"][0]["code"]) == "patient.search");
  CHECK(str(d["action"]) == "E");
  CHECK(str(d["recorded"]) == "2026-11-28T14:03:11.123+00:00");
  CHECK(str(d["outcome"]) == "0");
  CHECK_FALSE(d.HasMember("outcomeDesc"));
  CHECK(str(d["purposeOfEvent"][0]["coding"][0]["code"]) == "TREAT");
  CHECK(str(d["purposeOfEvent"][0]["coding"][0]["system"]) == "http://terminology.hl7.org/CodeSystem/v3-ActReason");

  const auto& agents = d["agent"];
  REQUIRE(agents.Size() == 2);
  CHECK(str(agents[0]["who"]["identifier"]["value"]) == "dr-jansen");
  CHECK(str(agents[0]["role"][0]["text"]) == "care");
  CHECK(agents[0]["requestor"].GetBool());
  CHECK(str(agents[0]["network"]["address"]) == "127.0.0.1:51234");
  CHECK(str(agents[0]["network"]["type"]) == "2");
  CHECK(str(agents[1]["who"]["identifier"]["value"]) == "dr-de-vries");
  CHECK_FALSE(agents[1]["requestor"].GetBool());

  CHECK(str(d["source"]["observer"]["display"]) == "telehub");

  const auto& entities = d["entity"];
  REQUIRE(entities.Size() == 3);
  CHECK(str(entities[0]["what"]["reference"]) == "Patient/p-7f3a");
  CHECK(str(entities[1]["what"]["identifier"]["value"]) == "Observation?subject=Patient/p-7f3a");
  const auto query = core::from_base64(str(entities[2]["query"]));
  REQUIRE(query);
  CHECK(std::string(query->begin(), query->end()) == full_record().query);

  // The chain fields are the log's business, not the AuditEvent's.
  CHECK(json.find(std::string(64, 'b')) == std::string::npos);
}

TEST_CASE("audit event types, outcomes and purposes map to their codes", "[fhir][audit]") {
  auto r = minimal_record();
  auto d = parse(fhir::audit_event_json(r));
  CHECK(str(d["type"]["code"]) == "110101");
  CHECK_FALSE(d.HasMember("purposeOfEvent"));
  CHECK_FALSE(d.HasMember("entity"));
  REQUIRE(d["agent"].Size() == 1);
  CHECK_FALSE(d["agent"][0].HasMember("network"));

  r.event_type = "patient.read";
  r.action = 'R';
  r.outcome = "denied";
  r.purpose = "research";
  d = parse(fhir::audit_event_json(r));
  CHECK(str(d["type"]["code"]) == "110110");
  CHECK(str(d["outcome"]) == "4");
  CHECK(str(d["outcomeDesc"]) == "access denied");
  CHECK(str(d["purposeOfEvent"][0]["coding"][0]["code"]) == "HRESCH");

  r.event_type = "device.enroll";
  r.outcome = "failure";
  r.purpose = "fleet-maintenance";
  r.access_point = "cli";
  d = parse(fhir::audit_event_json(r));
  CHECK(str(d["type"]["code"]) == "110100");
  CHECK(str(d["outcome"]) == "8");
  CHECK_FALSE(d["purposeOfEvent"][0].HasMember("coding"));
  CHECK(str(d["purposeOfEvent"][0]["text"]) == "fleet-maintenance");
  CHECK(str(d["agent"][0]["network"]["address"]) == "cli");
  CHECK_FALSE(d["agent"][0]["network"].HasMember("type"));

  // objects equal to the subject's reference are not repeated.
  r.subject = "p-1";
  r.objects = "Patient/p-1";
  d = parse(fhir::audit_event_json(r));
  CHECK(d["entity"].Size() == 1);
}

TEST_CASE("AuditEvents with and without optional fields pass the FHIR validator", "[fhir][audit]") {
  std::vector<std::string> docs;
  docs.push_back(fhir::audit_event_json(full_record()));
  docs.push_back(fhir::audit_event_json(minimal_record()));

  auto erase = minimal_record();
  erase.sequence = 7;
  erase.event_type = "subject.erase";
  erase.action = 'D';
  erase.outcome = "failure";
  erase.purpose = "erasure-request";
  erase.access_point = "[::1]:8443";
  erase.subject = "p-9";
  docs.push_back(fhir::audit_event_json(erase));

  auto denied = full_record();
  denied.sequence = 8;
  denied.event_type = "patient.read";
  denied.action = 'R';
  denied.outcome = "denied";
  denied.role = "research";
  denied.purpose = "some local purpose";
  denied.on_behalf_of.clear();
  denied.query.clear();
  denied.objects = "Patient/" + denied.subject;
  denied.recorded = "2026-11-28T15:03:11.000+01:00";
  docs.push_back(fhir::audit_event_json(denied));

  auto consent = minimal_record();
  consent.sequence = 9;
  consent.event_type = "consent.update";
  consent.action = 'U';
  consent.role = "enrolment";
  consent.purpose = "enrolment";
  consent.subject = "p-2";
  consent.query = "non-ASCII é and a\nline feed";
  docs.push_back(fhir::audit_event_json(consent));

  const auto result = testing::fhir_validate(docs);
  INFO(result.output);
  CHECK(result.exit_code == 0);
}
