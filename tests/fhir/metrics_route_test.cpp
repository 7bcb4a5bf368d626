#include <catch2/catch.hpp>

#include "telehub/fhir/router.h"
#include "test_support.h"

using namespace telehub;

TEST_CASE("GET /metrics serves the metrics callback as Prometheus text, and is absent without one", "[fhir][metrics]") {
  testing::TempDir dir;
  auto store = storage::open_sqlite_store({dir.path() / "t.db"}, core::system_clock());
  REQUIRE(store);
  fhir::RouterOptions with;
  int calls = 0;
  with.metrics = [&calls] {
    ++calls;
    return std::string("telehub_up 1\n");
  };
  fhir::Router router(**store, with);
  auto r = router.handle({"GET", "/metrics", {}, "", "", false});
  CHECK(r.status == 200);
  CHECK(r.content_type.rfind("text/plain; version=0.0.4", 0) == 0);
  CHECK(r.body == "telehub_up 1\n");
  CHECK(calls == 1);
  auto post = router.handle({"POST", "/metrics", {}, "", "", false});
  CHECK(post.status == 405);
  CHECK(post.body.find("OperationOutcome") != std::string::npos);

  fhir::Router without(**store, fhir::RouterOptions{});
  auto none = without.handle({"GET", "/metrics", {}, "", "", false});
  CHECK(none.status == 404);
  CHECK(none.body.find("OperationOutcome") != std::string::npos);
}
