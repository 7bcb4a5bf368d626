#include "telehub/ingest/metrics.h"

namespace telehub::ingest {
namespace {

void metric(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name_and_labels, std::uint64_t value) {
  out += name_and_labels;
  out += ' ';
  out += std::to_string(value);
  out += '\n';
}

}  // namespace

std::string prometheus_text(const PipelineCounters& c, const LinkState& link) {
  std::string out;
  metric(out, "telehub_ingest_received_total", "counter", "Messages handed to the ingest pipeline.");
  sample(out, "telehub_ingest_received_total", c.received);
  metric(out, "telehub_ingest_messages_total", "counter", "Messages by outcome.");
  sample(out, "telehub_ingest_messages_total{outcome=\"stored\"}", c.stored_messages);
  sample(out, "telehub_ingest_messages_total{outcome=\"duplicate\"}", c.duplicates);
  sample(out, "telehub_ingest_messages_total{outcome=\"quarantined\"}", c.quarantined);
  metric(out, "telehub_ingest_readings_stored_total", "counter", "Readings committed to storage.");
  sample(out, "telehub_ingest_readings_stored_total", c.stored_readings);
  metric(out, "telehub_ingest_retries_total", "counter",
         "Attempts that could not commit (storage unavailable); those messages were not acknowledged.");
  sample(out, "telehub_ingest_retries_total", c.retries);
  metric(out, "telehub_ingest_quarantined_total", "counter", "Quarantined messages by reason.");
  // Reasons are stable lower_snake_case tokens, safe as label values.
  for (const auto& [reason, n] : c.quarantined_by_reason)
    sample(out, "telehub_ingest_quarantined_total{reason=\"" + reason + "\"}", n);
  metric(out, "telehub_ingest_readings_flagged_total", "counter",
         "Stored readings with a value outside its code's expected range (config/plausibility.json), by code.");
  // Codes come from the code table (LOINC codes and telehub's lower-case codes): safe as label values.
  for (const auto& [code, n] : c.flagged_by_code)
    sample(out, "telehub_ingest_readings_flagged_total{code=\"" + code + "\"}", n);
  metric(out, "telehub_ingest_subjects_unmatched_total", "counter",
         "Stored messages whose payload named a patient the identity vault does not know.");
  sample(out, "telehub_ingest_subjects_unmatched_total", c.subjects_unmatched);
  metric(out, "telehub_ingest_stalled", "gauge",
         "1 while a message cannot be committed and acknowledgements are held back.");
  sample(out, "telehub_ingest_stalled", link.stalled ? 1 : 0);
  metric(out, "telehub_mqtt_connected", "gauge", "1 while the hub is connected to the broker.");
  sample(out, "telehub_mqtt_connected", link.connected ? 1 : 0);
  return out;
}

}  // namespace telehub::ingest
