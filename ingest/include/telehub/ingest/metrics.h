// Ingest metrics in the Prometheus text exposition format (version 0.0.4), served by
// `telehub serve` at GET /metrics.
//
// Counters count since the process started (Prometheus handles resets); the quarantine table
// keeps the durable history (`telehub quarantine list`).
//
// Thread-safety: pure function.
#pragma once

#include <string>

#include "telehub/ingest/pipeline.h"

namespace telehub::ingest {

struct LinkState {
  bool connected = false;  // MQTT connection to the broker is up
  bool stalled = false;    // a message cannot be committed; acknowledgements are held back
};

// telehub_ingest_messages_total{outcome="stored|duplicate|quarantined"}, _readings_stored_total,
// _retries_total, telehub_ingest_quarantined_total{reason=...}, telehub_ingest_stalled,
// telehub_mqtt_connected.
std::string prometheus_text(const PipelineCounters& counters, const LinkState& link);

}  // namespace telehub::ingest
