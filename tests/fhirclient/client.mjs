// Drives a running telehub with fhir-kit-client (a FHIR client library from npm), as a hospital
// system would (issue [7/8], "Done when"). Usage:
//   node client.mjs BASE_URL TOKEN PATIENT OUT_DIR STEP[,STEP...]
// Steps: metadata (read the CapabilityStatement), search (Observation?patient=&_count=, then
// next links to the last page), everything (Patient/<id>/$everything, all pages), export
// (Patient/$export with Prefer: respond-async, poll the status URL, fetch every NDJSON file).
// HTTPS trust comes from NODE_EXTRA_CA_CERTS (the hub's development CA). Every response body is
// written to OUT_DIR/NNN-<step>.json (NDJSON lines one file each) for the validator; stdout gets
// one JSON summary line. Exits 1 with a message on the first failure.
import { Client } from 'fhir-kit-client';
import fs from 'node:fs';
import path from 'node:path';

const [base, token, patient, outDir, stepList] = process.argv.slice(2);
if (!base || !token || !patient || !outDir || !stepList) {
  console.error('usage: node client.mjs BASE_URL TOKEN PATIENT OUT_DIR STEP[,STEP...]');
  process.exit(2);
}
fs.mkdirSync(outDir, { recursive: true });
let written = 0;
const save = (step, resource) => {
  fs.writeFileSync(path.join(outDir, `${String(++written).padStart(4, '0')}-${step}.json`), JSON.stringify(resource));
};
const fail = (message) => {
  console.error(`fhirclient: ${message}`);
  process.exit(1);
};

const client = new Client({ baseUrl: base, bearerToken: token });
const summary = {};

async function allPages(step, first) {
  let bundle = first;
  let pages = 0;
  let entries = 0;
  const ids = new Set();
  for (;;) {
    if (bundle.resourceType !== 'Bundle') fail(`${step}: not a Bundle: ${JSON.stringify(bundle).slice(0, 200)}`);
    save(step, bundle);
    pages += 1;
    for (const e of bundle.entry || []) {
      if (e.search && e.search.mode === 'outcome') continue;
      entries += 1;
      ids.add(`${e.resource.resourceType}/${e.resource.id}`);
    }
    const next = (bundle.link || []).find((l) => l.relation === 'next');
    if (!next) break;
    if (pages > 10000) fail(`${step}: more than 10,000 pages`);
    bundle = await client.nextPage({ bundle });
  }
  if (ids.size !== entries) fail(`${step}: ${entries - ids.size} entries repeated across pages`);
  return { pages, entries };
}

for (const step of stepList.split(',')) {
  if (step === 'metadata') {
    const cs = await client.capabilityStatement();
    if (cs.resourceType !== 'CapabilityStatement' || cs.fhirVersion !== '4.0.1') fail('metadata: not an R4 CapabilityStatement');
    save(step, cs);
    summary.metadata = { resources: (cs.rest?.[0]?.resource || []).map((r) => r.type) };
  } else if (step === 'search') {
    const first = await client.search({ resourceType: 'Observation', searchParams: { patient, _count: 50 } });
    summary.search = await allPages(step, first);
  } else if (step === 'everything') {
    const first = await client.operation({ name: '$everything', resourceType: 'Patient', id: patient, method: 'get' });
    summary.everything = await allPages(step, first);
  } else if (step === 'export') {
    const kick = await fetch(`${base}/Patient/$export`, {
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/fhir+json', Prefer: 'respond-async' },
    });
    if (kick.status !== 202) fail(`export: kick-off answered ${kick.status}: ${(await kick.text()).slice(0, 300)}`);
    const status = kick.headers.get('content-location');
    if (!status) fail('export: no Content-Location');
    let manifest = null;
    for (let i = 0; i < 600 && !manifest; i++) {
      const r = await fetch(status, { headers: { Authorization: `Bearer ${token}` } });
      if (r.status === 200) manifest = await r.json();
      else if (r.status === 202) await new Promise((ok) => setTimeout(ok, 100));
      else fail(`export: status answered ${r.status}`);
    }
    if (!manifest) fail('export: not complete after 60 s');
    let lines = 0;
    for (const output of manifest.output || []) {
      const r = await fetch(output.url, { headers: { Authorization: `Bearer ${token}`, Accept: 'application/fhir+ndjson' } });
      if (r.status !== 200) fail(`export: file ${output.url} answered ${r.status}`);
      for (const line of (await r.text()).split('\n')) {
        if (!line) continue;
        const resource = JSON.parse(line);
        if (resource.resourceType !== output.type) fail(`export: a ${resource.resourceType} in the ${output.type} file`);
        save('export', resource);
        lines += 1;
      }
    }
    summary.export = { files: (manifest.output || []).length, resources: lines };
  } else {
    fail(`unknown step ${step}`);
  }
}
console.log(JSON.stringify(summary));
