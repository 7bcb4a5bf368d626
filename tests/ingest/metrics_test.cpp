#include <catch2/catch.hpp>

#include "telehub/ingest/metrics.h"

using namespace telehub;

TEST_CASE("ingest metrics render as Prometheus text", "[ingest][metrics]") {
  ingest::PipelineCounters c;
  c.received = 10;
  c.stored_messages = 6;
  c.stored_readings = 14;
  c.duplicates = 1;
  c.quarantined = 3;
  c.retries = 2;
  c.quarantined_by_reason = {{"bad_seal", 2}, {"unknown_device", 1}};
  auto text = ingest::prometheus_text(c, {true, false});
  CHECK(text.find("# TYPE telehub_ingest_messages_total counter\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_messages_total{outcome=\"stored\"} 6\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_readings_stored_total 14\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_quarantined_total{reason=\"bad_seal\"} 2\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_quarantined_total{reason=\"unknown_device\"} 1\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_retries_total 2\n") != std::string::npos);
  CHECK(text.find("telehub_ingest_stalled 0\n") != std::string::npos);
  CHECK(text.find("telehub_mqtt_connected 1\n") != std::string::npos);
  CHECK(ingest::prometheus_text(c, {false, true}).find("telehub_ingest_stalled 1\n") != std::string::npos);
}
