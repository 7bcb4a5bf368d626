// Bundle import (bundle_import.h).
//
// Steps:
//   1. parse and check the Bundle and each entry (request, resource, Patient mapping);
//   2. resolve every reference syntactically against the Bundle and the vault, with Patients as
//      placeholders; in a transaction any problem stops here, before anything is stored;
//   3. register the Patients in the vault (and the registry);
//   4. order the other entries so that each comes after the entries it refers to, decide each
//      one's id (dedupe, conditional create), rewrite its references and write: one
//      ResourceStore::write_all for a transaction, one write per entry for a batch.
#include "bundle_import.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "json.h"
#include "patient.h"
#include "telehub/core/bytes.h"
#include "telehub/envelope/json.h"

namespace telehub::fhir {
namespace {

using core::Code;
using rapidjson::Value;

std::string str(const Value& v) { return std::string(v.GetString(), v.GetStringLength()); }

std::string string_at(const Value& o, const char* name) {
  if (!o.IsObject()) return {};
  auto it = o.FindMember(name);
  return it != o.MemberEnd() && it->value.IsString() ? str(it->value) : std::string();
}

std::string serialise(const Value& v) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  v.Accept(w);
  return std::string(buffer.GetString(), buffer.GetSize());
}

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

bool is_pseudonym(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

core::Error entry_error(Code code, std::string reason, std::size_t index, const std::string& what) {
  return core::make_error(code, std::move(reason), "entry[" + std::to_string(index) + "]" + what);
}

struct Entry {
  std::size_t index = 0;
  std::string full_url;
  std::string type;
  std::string resource_id;  // the resource's id in the Bundle (ignored for POST)
  std::string method;
  std::string put_id;        // PUT Type/id
  std::string if_none_exist;  // POST conditional create
  const Value* resource = nullptr;
  bool patient = false;
  std::optional<privacy::Person> person;
  std::optional<core::Error> error;
  // Resolution.
  std::string final_id;  // the stored id / pseudonym once decided
  std::set<std::size_t> deps;
  ImportEntry result;
};

// Where a reference goes.
struct Target {
  enum class Kind { kKeep, kEntry, kFixed } kind = Kind::kKeep;
  std::size_t entry = 0;  // kEntry
  std::string fixed;      // kFixed: the new reference text
};

struct Resolver {
  const ImportContext& ctx;
  std::vector<Entry>& entries;
  std::map<std::string, std::size_t> keys;  // fullUrl / "Type/id" → entry

  // Where `ref` points, or an error naming `path` (never the reference text).
  Result<Target> resolve(std::string ref, const std::string& path) {
    if (ref.starts_with("#")) return Target{};
    if (!ctx.base_url.empty() && ref.starts_with(ctx.base_url + "/")) {
      auto rel = ref.substr(ctx.base_url.size() + 1);
      if (!keys.count(ref)) ref = rel;
    }
    if (auto it = keys.find(ref); it != keys.end()) {
      const Entry& e = entries[it->second];
      if (e.error) return bad(path, "refers to an entry that failed", Code::kInvalidArgument);
      Target t;
      t.kind = Target::Kind::kEntry;
      t.entry = it->second;
      return t;
    }
    if (ref.starts_with("urn:uuid:") || ref.starts_with("urn:oid:"))
      return bad(path, "refers to no entry of this Bundle (unresolved urn reference)", Code::kInvalidArgument);
    if (ref.starts_with("Patient?")) {
      auto subject = conditional_patient(ref.substr(8), path);
      if (!subject) return tl::unexpected(subject.error());
      Target t;
      t.kind = Target::Kind::kFixed;
      t.fixed = "Patient/" + ctx.pseudonymiser.subject(*subject).str();
      return t;
    }
    if (ref.starts_with("Patient/")) {
      const std::string rest = ref.substr(8);
      if (is_pseudonym(rest)) {
        auto found = ctx.vault.find_by_pseudonym(rest);
        if (!found) return tl::unexpected(found.error());
        if (*found) return Target{};
      }
      return bad(path, "refers to a Patient that is neither in this Bundle nor a known pseudonym",
                 Code::kInvalidArgument);
    }
    return Target{};
  }

  // The subject id for "identifier=[system|]value" (one parameter only).
  Result<std::string> conditional_patient(const std::string& query, const std::string& path) {
    if (!query.starts_with("identifier=") || query.find('&') != std::string::npos)
      return bad(path, "a conditional Patient reference must be identifier=system|value", Code::kInvalidArgument);
    std::string token = query.substr(11);
    auto bar = token.find('|');
    if (bar == std::string::npos || bar == 0 || bar + 1 == token.size())
      return bad(path, "a conditional Patient reference needs system|value", Code::kInvalidArgument);
    std::string system = token.substr(0, bar), value = token.substr(bar + 1);
    Result<std::optional<std::string>> found = system == kBsnSystem
                                                   ? ctx.vault.find_by_bsn(value)
                                                   : ctx.vault.find_by_record_number({system, value});
    if (!found) {
      if (found.error().code == Code::kInvalidArgument) return bad(path, "a malformed patient identifier", Code::kInvalidArgument);
      return tl::unexpected(found.error());
    }
    if (!*found) return bad(path, "the conditional Patient reference matches no known patient", Code::kInvalidArgument);
    return **found;
  }

  static tl::unexpected<core::Error> bad(const std::string& path, const std::string& why, Code code) {
    return tl::unexpected(core::make_error(code, "bad_bundle", path + ": " + why));
  }
};

// Calls f(value, path) for every "reference" string member under v.
template <class F>
Status each_reference(Value& v, const std::string& path, F&& f) {
  if (v.IsObject()) {
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
      std::string name(it->name.GetString(), it->name.GetStringLength());
      if (name == "reference" && it->value.IsString()) {
        if (auto s = f(it->value, path + ".reference"); !s) return s;
      } else if (it->value.IsObject() || it->value.IsArray()) {
        if (auto s = each_reference(it->value, path + "." + name, f); !s) return s;
      }
    }
  } else if (v.IsArray()) {
    for (rapidjson::SizeType i = 0; i < v.Size(); ++i)
      if (auto s = each_reference(v[i], path + "[" + std::to_string(i) + "]", f); !s) return s;
  }
  return {};
}

std::string status_of(const core::Error& e) {
  switch (e.code) {
    case Code::kInvalidArgument: return "400 Bad Request";
    case Code::kNotFound: return "404 Not Found";
    case Code::kAlreadyExists: return "409 Conflict";
    case Code::kFailedPrecondition: return "412 Precondition Failed";
    case Code::kUnavailable: return "503 Service Unavailable";
    default: return "500 Internal Server Error";
  }
}

void fail_entry(Entry& e, core::Error error) {
  e.result.outcome = ImportEntry::Outcome::kFailed;
  e.result.status = status_of(error);
  e.error = error;
  e.result.error = std::move(error);
}

// Step 1 for one entry: structure, request and (for a Patient) the Person mapping.
Status check_entry(const Value& raw, Entry& e) {
  const auto i = e.index;
  auto bad = [&](const std::string& what) {
    return tl::unexpected(entry_error(Code::kInvalidArgument, "bad_bundle", i, what));
  };
  if (!raw.IsObject()) return bad(": must be an object");
  if (auto it = raw.FindMember("fullUrl"); it != raw.MemberEnd()) {
    if (!it->value.IsString()) return bad(".fullUrl: must be a string");
    e.full_url = str(it->value);
  }
  auto res = raw.FindMember("resource");
  if (res == raw.MemberEnd() || !res->value.IsObject()) return bad(".resource: missing or not an object");
  e.resource = &res->value;
  e.type = string_at(*e.resource, "resourceType");
  if (e.type.empty() || e.type[0] < 'A' || e.type[0] > 'Z') return bad(".resource.resourceType: missing or malformed");
  e.resource_id = string_at(*e.resource, "id");
  auto req = raw.FindMember("request");
  if (req == raw.MemberEnd() || !req->value.IsObject()) return bad(".request: missing or not an object");
  e.method = string_at(req->value, "method");
  const std::string url = string_at(req->value, "url");
  e.if_none_exist = string_at(req->value, "ifNoneExist");
  if (e.method == "POST") {
    if (url != e.type) return bad(".request.url: must be the resource type for POST");
  } else if (e.method == "PUT") {
    if (!url.starts_with(e.type + "/") || !valid_id(url.substr(e.type.size() + 1)))
      return bad(".request.url: must be " + e.type + "/[id] for PUT");
    e.put_id = url.substr(e.type.size() + 1);
    if (!e.resource_id.empty() && e.resource_id != e.put_id)
      return bad(".resource.id: differs from the id in request.url");
  } else {
    return bad(".request.method: only POST and PUT are supported by this import");
  }
  if (!e.if_none_exist.empty() && e.method != "POST") return bad(".request.ifNoneExist: only with POST");
  if (!e.if_none_exist.empty() && !e.if_none_exist.starts_with("identifier="))
    return bad(".request.ifNoneExist: only identifier=[system|]value is supported");
  if (e.type == "Patient") {
    e.patient = true;
    auto person = person_from_patient(serialise(*e.resource));
    if (!person) return tl::unexpected(entry_error(person.error().code, "bad_bundle", i, ".resource: " + person.error().message));
    if (person->bsn.empty() && person->record_numbers.empty())
      return bad(".resource.identifier: a Patient needs a BSN or a record number to be registered");
    e.person = std::move(*person);
  }
  return {};
}

}  // namespace

std::size_t ImportResult::stored() const {
  return static_cast<std::size_t>(std::count_if(entries.begin(), entries.end(), [](const ImportEntry& e) {
    return e.outcome == ImportEntry::Outcome::kCreated || e.outcome == ImportEntry::Outcome::kUpdated;
  }));
}
std::size_t ImportResult::existing() const {
  return static_cast<std::size_t>(std::count_if(entries.begin(), entries.end(), [](const ImportEntry& e) {
    return e.outcome == ImportEntry::Outcome::kExisting || e.outcome == ImportEntry::Outcome::kUnchanged;
  }));
}
std::size_t ImportResult::failed() const {
  return static_cast<std::size_t>(std::count_if(
      entries.begin(), entries.end(), [](const ImportEntry& e) { return e.outcome == ImportEntry::Outcome::kFailed; }));
}

Result<ImportResult> import_bundle(std::string_view bundle_json, const ImportContext& ctx) {
  auto bad = [](std::string what) { return core::fail(Code::kInvalidArgument, "bad_bundle", std::move(what)); };
  static_assert(kMaxBundleBytes == 64u << 20, "the message below states the limit");
  if (bundle_json.size() > kMaxBundleBytes) return bad("Bundle: larger than 64 MiB");
  rapidjson::Document doc;
  if (auto s = envelope::parse_json(bundle_json, doc); !s) {
    std::string reason = s.error().message;
    if (reason.starts_with("payload: ")) reason.erase(0, 9);
    return bad("Bundle: not valid JSON: " + reason);
  }
  if (!doc.IsObject() || string_at(doc, "resourceType") != "Bundle") return bad("Bundle.resourceType: must be Bundle");
  const std::string type = string_at(doc, "type");
  if (type != "transaction" && type != "batch") return bad("Bundle.type: must be transaction or batch");
  ImportResult result;
  result.transaction = type == "transaction";
  const bool tx = result.transaction;
  auto entry_it = doc.FindMember("entry");
  if (entry_it != doc.MemberEnd() && !entry_it->value.IsArray()) return bad("Bundle.entry: must be an array");
  const rapidjson::SizeType n = entry_it == doc.MemberEnd() ? 0 : entry_it->value.Size();
  static_assert(kMaxBundleEntries == 10'000, "the message below states the limit");
  if (n > kMaxBundleEntries) return bad("Bundle.entry: more than 10000 entries");

  // 1. Entries.
  std::vector<Entry> entries(n);
  for (rapidjson::SizeType i = 0; i < n; ++i) {
    Entry& e = entries[i];
    e.index = i;
    if (auto s = check_entry(entry_it->value[i], e); !s) {
      if (tx) return tl::unexpected(s.error());
      fail_entry(e, s.error());
    }
    e.result.index = i;
    e.result.resource_type = e.type;
    if (!e.error && e.method == "PUT" && !e.patient) e.final_id = e.put_id;
  }

  // 2. Reference keys and syntactic resolution.
  Resolver resolver{ctx, entries, {}};
  for (auto& e : entries) {
    if (e.type.empty()) continue;
    if (!e.full_url.empty()) resolver.keys.emplace(e.full_url, e.index);
    const std::string& own = e.method == "PUT" ? e.put_id : e.resource_id;
    if (!own.empty()) resolver.keys.emplace(e.type + "/" + own, e.index);
  }
  for (auto& e : entries) {
    if (e.error || e.patient) continue;
    const std::string path = "entry[" + std::to_string(e.index) + "].resource";
    auto s = each_reference(*const_cast<Value*>(e.resource), path, [&](Value& ref, const std::string& p) -> Status {
      auto t = resolver.resolve(str(ref), p);
      if (!t) return tl::unexpected(t.error());
      if (t->kind == Target::Kind::kEntry && !entries[t->entry].patient && entries[t->entry].method == "POST" &&
          t->entry != e.index)
        e.deps.insert(t->entry);
      return {};
    });
    if (!s) {
      if (tx) return tl::unexpected(s.error());
      fail_entry(e, s.error());
    }
  }
  // In a batch, a failure makes the entries that refer to it fail too.
  if (!tx) {
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& e : entries) {
        if (e.error) continue;
        for (auto d : e.deps) {
          if (entries[d].error) {
            fail_entry(e, entry_error(Code::kInvalidArgument, "bad_bundle", e.index,
                                      ".resource: refers to an entry that failed"));
            changed = true;
            break;
          }
        }
      }
    }
  }

  // 3. Patients into the vault.
  std::set<std::string> seen_patients;
  for (auto& e : entries) {
    if (e.error || !e.patient) continue;
    auto fail = [&](const core::Error& err) -> Status {
      auto wrapped = entry_error(err.code, err.reason, e.index, ".resource: " + err.message);
      if (tx) return tl::unexpected(wrapped);
      fail_entry(e, wrapped);
      return {};
    };
    auto reg = ctx.vault.register_person(*e.person);
    if (!reg) {
      if (auto s = fail(reg.error()); !s) return tl::unexpected(s.error());
      continue;
    }
    const auto pseudonym = ctx.pseudonymiser.subject(reg->subject_id);
    Status s = ctx.vault.link_pseudonym(reg->subject_id, pseudonym.str());
    if (s) s = ctx.vault.put_document(reg->subject_id, "patient", serialise(*e.resource));
    if (s) s = ctx.registry.add_subject(pseudonym);
    if (!s) {
      if (auto f = fail(s.error()); !f) return tl::unexpected(f.error());
      continue;
    }
    e.final_id = pseudonym.str();
    e.result.id = e.final_id;
    e.result.outcome = reg->created ? ImportEntry::Outcome::kCreated : ImportEntry::Outcome::kExisting;
    e.result.status = reg->created ? "201 Created" : "200 OK";
    e.result.location = "Patient/" + e.final_id;
    if (seen_patients.insert(e.final_id).second) result.patients.push_back({e.final_id, reg->created});
  }
  // A batch entry referring to a Patient entry that failed fails too.
  if (!tx) {
    for (auto& e : entries) {
      if (e.error || e.patient) continue;
      auto s = each_reference(*const_cast<Value*>(e.resource), "", [&](Value& ref, const std::string&) -> Status {
        auto it = resolver.keys.find(str(ref));
        if (it != resolver.keys.end() && entries[it->second].error)
          return core::fail(Code::kInvalidArgument, "bad_bundle", "");
        return {};
      });
      if (!s)
        fail_entry(e, entry_error(Code::kInvalidArgument, "bad_bundle", e.index, ".resource: refers to an entry that failed"));
    }
  }

  // 4. Order: each entry after the POST entries it refers to (Kahn); cycles get fresh ids.
  std::vector<std::size_t> order;
  {
    std::vector<std::size_t> pending;
    for (auto& e : entries)
      if (!e.error && !e.patient) pending.push_back(e.index);
    std::set<std::size_t> done;
    bool progress = true;
    while (!pending.empty() && progress) {
      progress = false;
      std::vector<std::size_t> rest;
      for (auto i : pending) {
        bool ready = std::all_of(entries[i].deps.begin(), entries[i].deps.end(),
                                 [&](std::size_t d) { return done.count(d) || entries[d].error; });
        if (ready) {
          order.push_back(i);
          done.insert(i);
          progress = true;
        } else {
          rest.push_back(i);
        }
      }
      pending = std::move(rest);
    }
    for (auto i : pending) {  // cycles
      auto random = core::random_bytes(16);
      if (!random) return tl::unexpected(random.error());
      entries[i].final_id = core::to_hex(*random);
      entries[i].deps.clear();
      order.push_back(i);
    }
  }

  std::vector<clinical::ResourceWrite> writes;
  std::vector<std::size_t> write_entry;
  for (auto i : order) {
    Entry& e = entries[i];
    if (e.error) continue;
    auto fail = [&](const core::Error& err) -> Status {
      if (tx) return tl::unexpected(err);
      fail_entry(e, err);
      return {};
    };
    // Rewrite references on a copy of the resource.
    rapidjson::Document copy;
    copy.CopyFrom(*e.resource, copy.GetAllocator());
    if (auto it = copy.FindMember("id"); it != copy.MemberEnd()) copy.EraseMember(it);
    const std::string path = "entry[" + std::to_string(i) + "].resource";
    auto s = each_reference(copy, path, [&](Value& ref, const std::string& p) -> Status {
      auto t = resolver.resolve(str(ref), p);
      if (!t) return tl::unexpected(t.error());
      std::string text;
      if (t->kind == Target::Kind::kFixed) {
        text = t->fixed;
      } else if (t->kind == Target::Kind::kEntry) {
        const Entry& target = entries[t->entry];
        if (target.error || target.final_id.empty())
          return core::fail(Code::kInvalidArgument, "bad_bundle", p + ": refers to an entry that failed");
        text = target.type + "/" + target.final_id;
      } else {
        return {};
      }
      ref.SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()), copy.GetAllocator());
      return {};
    });
    if (!s) {
      if (auto f = fail(s.error()); !f) return tl::unexpected(f.error());
      continue;
    }
    const std::string json = serialise(copy);
    clinical::ResourceWrite w;
    w.type = e.type;
    w.json = json;
    if (e.method == "PUT") {
      w.mode = clinical::ResourceWrite::Mode::kUpdate;
      w.id = e.put_id;
      e.final_id = e.put_id;
    } else if (!e.if_none_exist.empty()) {
      std::string token = e.if_none_exist.substr(11);
      clinical::Query q;
      q.type = e.type;
      auto bar = token.find('|');
      if (bar == std::string::npos) q.tokens = {{"identifier", "", token}};
      else q.tokens = {{"identifier", token.substr(0, bar), token.substr(bar + 1)}};
      if (q.tokens[0].code.empty()) {
        if (auto f = fail(entry_error(Code::kInvalidArgument, "bad_bundle", i, ".request.ifNoneExist: no value")); !f)
          return tl::unexpected(f.error());
        continue;
      }
      q.limit = 2;
      auto page = ctx.store.search(q);
      if (!page) return tl::unexpected(page.error());
      if (page->resources.size() > 1) {
        if (auto f = fail(entry_error(Code::kFailedPrecondition, "bad_bundle", i,
                                      ".request.ifNoneExist: matches more than one resource"));
            !f)
          return tl::unexpected(f.error());
        continue;
      }
      if (page->resources.size() == 1) {
        const auto& r = page->resources[0];
        e.final_id = r.id;
        e.result.outcome = ImportEntry::Outcome::kExisting;
        e.result.id = r.id;
        e.result.status = "200 OK";
        e.result.location = e.type + "/" + r.id + "/_history/" + std::to_string(r.version);
        e.result.etag = "W/\"" + std::to_string(r.version) + "\"";
        e.result.last_modified = core::format_rfc3339(r.last_updated);
        continue;
      }
    }
    if (e.method == "POST") {
      auto same = ctx.store.find_identical(e.type, json);
      if (!same) {
        auto err = same.error();
        err.message = "entry[" + std::to_string(i) + "]: " + err.message;
        if (auto f = fail(err); !f) return tl::unexpected(f.error());
        continue;
      }
      if (*same) {
        e.final_id = (*same)->id;
        e.result.outcome = ImportEntry::Outcome::kExisting;
        e.result.id = (*same)->id;
        e.result.status = "200 OK";
        e.result.location = e.type + "/" + (*same)->id + "/_history/" + std::to_string((*same)->version);
        e.result.etag = "W/\"" + std::to_string((*same)->version) + "\"";
        e.result.last_modified = core::format_rfc3339((*same)->last_updated);
        continue;
      }
      if (e.final_id.empty()) {
        auto random = core::random_bytes(16);
        if (!random) return tl::unexpected(random.error());
        e.final_id = core::to_hex(*random);
      }
      w.id = e.final_id;
    }
    if (tx) {
      writes.push_back(std::move(w));
      write_entry.push_back(i);
    } else {
      auto r = ctx.store.write(w);
      if (!r) {
        auto err = r.error();
        err.message = "entry[" + std::to_string(i) + "]: " + err.message;
        fail_entry(e, err);
        continue;
      }
      e.result.outcome = r->outcome == clinical::WriteOutcome::kCreated   ? ImportEntry::Outcome::kCreated
                         : r->outcome == clinical::WriteOutcome::kUpdated ? ImportEntry::Outcome::kUpdated
                         : r->outcome == clinical::WriteOutcome::kExisting ? ImportEntry::Outcome::kExisting
                                                                           : ImportEntry::Outcome::kUnchanged;
      e.final_id = r->id;
      e.result.id = r->id;
      e.result.status = r->outcome == clinical::WriteOutcome::kCreated ? "201 Created" : "200 OK";
      e.result.location = e.type + "/" + r->id + "/_history/" + std::to_string(r->version);
      e.result.etag = "W/\"" + std::to_string(r->version) + "\"";
      e.result.last_modified = core::format_rfc3339(r->last_updated);
    }
  }

  if (tx && !writes.empty()) {
    auto r = ctx.store.write_all(writes);
    if (!r) {
      // "write[k]: ..." → "entry[i]: ..."
      auto err = r.error();
      if (err.message.starts_with("write[")) {
        auto close = err.message.find(']');
        std::size_t k = write_entry.size();
        std::from_chars(err.message.data() + 6, err.message.data() + close, k);
        if (k < write_entry.size()) err.message = "entry[" + std::to_string(write_entry[k]) + "]" + err.message.substr(close + 1);
      }
      return tl::unexpected(err);
    }
    for (std::size_t k = 0; k < r->size(); ++k) {
      Entry& e = entries[write_entry[k]];
      const auto& w = (*r)[k];
      e.result.outcome = w.outcome == clinical::WriteOutcome::kCreated   ? ImportEntry::Outcome::kCreated
                         : w.outcome == clinical::WriteOutcome::kUpdated ? ImportEntry::Outcome::kUpdated
                         : w.outcome == clinical::WriteOutcome::kExisting ? ImportEntry::Outcome::kExisting
                                                                          : ImportEntry::Outcome::kUnchanged;
      e.result.id = w.id;
      e.result.status = w.outcome == clinical::WriteOutcome::kCreated ? "201 Created" : "200 OK";
      e.result.location = e.type + "/" + w.id + "/_history/" + std::to_string(w.version);
      e.result.etag = "W/\"" + std::to_string(w.version) + "\"";
      e.result.last_modified = core::format_rfc3339(w.last_updated);
    }
  }
  for (auto& e : entries) result.entries.push_back(std::move(e.result));
  return result;
}

std::string response_bundle_json(const ImportResult& result, std::string_view base_url) {
  JsonBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  write_member(w, "resourceType", "Bundle");
  write_member(w, "type", result.transaction ? "transaction-response" : "batch-response");
  write_key(w, "entry");
  w.StartArray();
  for (const auto& e : result.entries) {
    w.StartObject();
    if (e.outcome != ImportEntry::Outcome::kFailed && !base_url.empty() && !e.id.empty())
      write_member(w, "fullUrl", std::string(base_url) + "/" + e.resource_type + "/" + e.id);
    write_key(w, "response");
    w.StartObject();
    write_member(w, "status", e.status);
    if (!e.location.empty()) write_member(w, "location", e.location);
    if (!e.etag.empty()) write_member(w, "etag", e.etag);
    if (!e.last_modified.empty()) write_member(w, "lastModified", e.last_modified);
    if (e.error) {
      write_key(w, "outcome");
      w.StartObject();
      write_member(w, "resourceType", "OperationOutcome");
      write_key(w, "issue");
      w.StartArray();
      w.StartObject();
      write_member(w, "severity", "error");
      write_member(w, "code", e.error->code == Code::kInvalidArgument    ? "invalid"
                              : e.error->code == Code::kNotFound         ? "not-found"
                              : e.error->code == Code::kFailedPrecondition ? "conflict"
                              : e.error->code == Code::kAlreadyExists    ? "duplicate"
                                                                         : "exception");
      write_member(w, "diagnostics", e.error->message);
      w.EndObject();
      w.EndArray();
      w.EndObject();
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return to_string(buffer);
}

}  // namespace telehub::fhir
