#!/usr/bin/env node
// Independent checker of `telehub research export` output (docs/research.md, "Checking an
// export"). Written apart from the exporter: it shares no code with it and reads only the output
// files and an expectations file, so a mistake in the exporter is not repeated here.
//
// Usage: node checker.mjs EXPECTATIONS.json
// EXPECTATIONS (written by the test that made the data):
// {
//   "outputs": [{"name": "a", "dir": "/path/out-a", "k": 5}, ...],  // each export to check
//   "forbidden": ["..."],          // strings that must not occur in any output byte (identifiers)
//   "markers": ["173.37"],         // values only withdrawn / excluded subjects had
//   "same_study": [["a", "a2"]],   // outputs whose pseudonym sets must be equal
//   "different_studies": [["a", "b"]],  // outputs whose pseudonym sets must be disjoint
//   "exposure": [{"column": "env_pm25", "base": 10, "per_hour": 1, "per_region_digit": 100,
//                 "missing_hours": [3]}],
//       // expected value at UTC hour-of-day h in an area whose first digit is d:
//       // base + per_hour*h + per_region_digit*d; empty at a missing hour; a daily row holds the
//       // mean over the day's hours that are not missing. Checked where the region is known.
//   "min_exposure_checked": 10     // at least this many exposure values must have been checked
// }
// Exit status: 0 when every check passes; 1 with one line per violation; 2 on bad usage.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const problems = [];
const problem = (msg) => problems.push(msg);

function usage(msg) {
  process.stderr.write(`checker: ${msg}\nusage: node checker.mjs EXPECTATIONS.json\n`);
  process.exit(2);
}

// RFC 4180 CSV: quoted fields with doubled quotes; returns rows of fields.
function parseCsv(text) {
  const rows = [];
  let row = [], field = '', i = 0, quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i += 2; continue; }
      if (c === '"') { quoted = false; i++; continue; }
      field += c; i++; continue;
    }
    if (c === '"' && field === '') { quoted = true; i++; continue; }
    if (c === ',') { row.push(field); field = ''; i++; continue; }
    if (c === '\r') { i++; continue; }
    if (c === '\n') { row.push(field); rows.push(row); row = []; field = ''; i++; continue; }
    field += c; i++;
  }
  if (field !== '' || row.length) { row.push(field); rows.push(row); }
  return rows;
}

function elevenTest(d) {
  if (d === '000000000') return false;
  let sum = 0;
  for (let k = 0; k < 8; k++) sum += (9 - k) * Number(d[k]);
  sum -= Number(d[8]);
  return sum % 11 === 0;
}

// Runs of exactly 9 digits standing alone (no letter or digit beside them, and not the fraction
// or integer part of a decimal number) that pass the 11-test: what a BSN would look like.
function bsnLike(text) {
  const found = [];
  const re = /[0-9]+/g;
  let m;
  const alnum = (ch) => ch !== undefined && /[A-Za-z0-9]/.test(ch);
  const digit = (ch) => ch !== undefined && /[0-9]/.test(ch);
  while ((m = re.exec(text)) !== null) {
    if (m[0].length !== 9) continue;
    const before = text[m.index - 1], after = text[m.index + 9];
    if (alnum(before) || alnum(after)) continue;
    if (before === '.' && digit(text[m.index - 2])) continue;  // 12.123456782
    if (after === '.' && digit(text[m.index + 10])) continue;  // 123456782.5
    if (elevenTest(m[0])) found.push(m[0]);
  }
  return found;
}

function filesUnder(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

const FORBIDDEN_COLUMNS = ['bsn', 'name', 'given_name', 'family_name', 'birth_date', 'birthdate', 'postcode',
  'address', 'city', 'phone', 'email', 'device', 'device_id', 'serial', 'subject', 'subject_id', 'mrn'];

function near(a, b) { return Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)); }

function checkOutput(out, expect, stats) {
  const tag = `[${out.name}]`;
  const { dir } = out;
  if (!existsSync(dir)) { problem(`${tag} output directory missing`); return null; }
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) { problem(`${tag} manifest.json missing`); return null; }
  let manifest;
  try { manifest = JSON.parse(readFileSync(manifestPath, 'utf8')); } catch (e) { problem(`${tag} manifest.json is not JSON`); return null; }
  const format = manifest.format;
  const dataName = format === 'csv' ? 'data.csv' : format === 'ndjson' ? 'data.ndjson' : null;
  if (!dataName) { problem(`${tag} manifest format is neither csv nor ndjson`); return null; }
  for (const f of [dataName, 'subjects.csv'])
    if (!existsSync(join(dir, f))) { problem(`${tag} ${f} missing`); return null; }

  // --- bytes: no identifier, no BSN, no marker of a withdrawn subject
  for (const file of filesUnder(dir)) {
    const text = readFileSync(file, 'latin1');
    const lower = text.toLowerCase();
    for (const s of expect.forbidden || [])
      if (s && lower.includes(String(s).toLowerCase())) problem(`${tag} ${file}: contains a forbidden identifier (${s.length} chars, starts ${JSON.stringify(String(s).slice(0, 2))})`);
    for (const s of expect.markers || [])
      if (s && text.includes(s)) problem(`${tag} ${file}: contains the marker value ${s} of a withdrawn or excluded subject`);
    for (const b of bsnLike(text)) problem(`${tag} ${file}: contains a 9-digit number passing the 11-test (a BSN?) ending ${b.slice(-3)}`);
  }

  // --- subjects.csv and k
  const subjRows = parseCsv(readFileSync(join(dir, 'subjects.csv'), 'utf8'));
  const header = subjRows.shift() || [];
  if (header[0] !== 'pseudonym') problem(`${tag} subjects.csv: first column is not pseudonym`);
  for (const h of header) if (FORBIDDEN_COLUMNS.includes(h.toLowerCase())) problem(`${tag} subjects.csv: identifying column ${h}`);
  const subjects = new Map();
  for (const r of subjRows) {
    if (r.length !== header.length) { problem(`${tag} subjects.csv: a row has ${r.length} fields, header ${header.length}`); continue; }
    if (!/^[0-9a-f]{32}$/.test(r[0])) problem(`${tag} subjects.csv: pseudonym is not 32 hex`);
    if (subjects.has(r[0])) problem(`${tag} subjects.csv: pseudonym listed twice`);
    const qi = {};
    header.slice(1).forEach((h, i) => { qi[h] = r[i + 1]; });
    subjects.set(r[0], qi);
  }
  const classes = new Map();
  for (const qi of subjects.values()) {
    const key = JSON.stringify(header.slice(1).map((h) => qi[h]));
    classes.set(key, (classes.get(key) || 0) + 1);
  }
  const k = out.k;
  for (const [key, size] of classes)
    if (size < k) problem(`${tag} k-anonymity broken: class ${key} holds ${size} subject(s) < k=${k}`);
  if (typeof manifest.k !== 'number' || manifest.k < k) problem(`${tag} manifest k ${manifest.k} below the expected ${k}`);

  // --- data rows
  const dataText = readFileSync(join(dir, dataName), 'utf8');
  const rows = [];
  if (format === 'csv') {
    const d = parseCsv(dataText);
    const h = d.shift() || [];
    for (const c of h) if (FORBIDDEN_COLUMNS.includes(c.toLowerCase())) problem(`${tag} data.csv: identifying column ${c}`);
    for (const r of d) {
      if (r.length !== h.length) { problem(`${tag} data.csv: a row has ${r.length} fields, header ${h.length}`); continue; }
      const o = {};
      h.forEach((c, i) => { o[c] = r[i]; });
      rows.push(o);
    }
  } else {
    for (const line of dataText.split('\n')) {
      if (!line) continue;
      let o;
      try { o = JSON.parse(line); } catch (e) { problem(`${tag} data.ndjson: a line is not JSON`); continue; }
      for (const c of Object.keys(o)) if (FORBIDDEN_COLUMNS.includes(c.toLowerCase())) problem(`${tag} data.ndjson: identifying field ${c}`);
      for (const [c, v] of Object.entries(o))
        if (c.startsWith('env_') && v !== null && typeof v !== 'number') problem(`${tag} data.ndjson: ${c} is not a number or null`);
      for (const v of o.values || [])
        for (const f of ['value', 'mean', 'min', 'max'])
          if (f in v && typeof v[f] !== 'number') problem(`${tag} data.ndjson: values[].${f} is not a number`);
      rows.push(o);
    }
  }
  for (const r of rows)
    if (!subjects.has(r.pseudonym)) { problem(`${tag} a data row's pseudonym is not in subjects.csv`); break; }

  // --- manifest counts against the files
  const c = manifest.counts || {};
  if (c.included !== subjects.size) problem(`${tag} manifest included ${c.included} != ${subjects.size} subjects in subjects.csv`);
  if (c.rows !== rows.length) problem(`${tag} manifest rows ${c.rows} != ${rows.length} data rows`);
  if (c.candidates !== c.included + c.suppressed + c.excluded_no_consent + c.excluded_inclusion)
    problem(`${tag} manifest counts do not add up to the candidates`);
  const manifestSizes = (manifest.equivalence_classes || []).map((e) => e.size).sort((a, b) => a - b);
  const fileSizes = [...classes.values()].sort((a, b) => a - b);
  if (JSON.stringify(manifestSizes) !== JSON.stringify(fileSizes)) problem(`${tag} manifest classes do not match subjects.csv`);
  if (fileSizes.length) {
    const risk = manifest.risk || {};
    if (!near(risk.prosecutor_max, 1 / fileSizes[0])) problem(`${tag} manifest prosecutor risk ${risk.prosecutor_max} != 1/${fileSizes[0]}`);
    if (!near(risk.average, fileSizes.length / subjects.size)) problem(`${tag} manifest average risk is not classes/included`);
  }

  // --- exposure join (shift mode: whole-day shifts keep the UTC hour of day)
  if (manifest.dates === 'shift') {
    for (const ex of expect.exposure || []) {
      const missing = new Set(ex.missing_hours || []);
      const at = (h, d) => (missing.has(h) ? null : ex.base + ex.per_hour * h + ex.per_region_digit * d);
      for (const r of rows) {
        const region = (subjects.get(r.pseudonym) || {}).region;
        if (!region || !/^[0-9]/.test(region)) continue;  // region not known to the checker
        const d = Number(region[0]);
        const m = /T([0-9]{2}):/.exec(r.time || '');
        if (!m) { problem(`${tag} a data row has no RFC 3339 time`); continue; }
        const h = Number(m[1]);
        let expected;
        if (r.aggregation === 'daily') {
          if (h !== 0) problem(`${tag} a daily row does not start at 00:00`);
          const vals = [];
          for (let hh = 0; hh < 24; hh++) { const v = at(hh, d); if (v !== null) vals.push(v); }
          expected = vals.length ? vals.reduce((a, b) => a + b, 0) / vals.length : null;
        } else {
          expected = at(h, d);
        }
        const raw = r[ex.column];
        const got = raw === '' || raw === null || raw === undefined ? null : Number(raw);
        stats.exposure++;
        if (expected === null ? got !== null : got === null || !near(got, expected))
          problem(`${tag} ${ex.column} at hour ${h} in region ${region}: got ${raw}, expected ${expected}`);
      }
    }
  }
  stats.rows += rows.length;
  return new Set(subjects.keys());
}

const file = process.argv[2];
if (!file) usage('name the expectations file');
let expect;
try { expect = JSON.parse(readFileSync(file, 'utf8')); } catch (e) { usage('cannot read the expectations file as JSON'); }
if (!Array.isArray(expect.outputs) || !expect.outputs.length) usage('expectations name no outputs');

const stats = { rows: 0, exposure: 0 };
const sets = new Map();
for (const out of expect.outputs) sets.set(out.name, checkOutput(out, expect, stats));
for (const [a, b] of expect.same_study || []) {
  const A = sets.get(a), B = sets.get(b);
  if (!A || !B) continue;
  if (A.size !== B.size || [...A].some((p) => !B.has(p))) problem(`[${a}] [${b}] the same study gave different pseudonyms`);
}
for (const [a, b] of expect.different_studies || []) {
  const A = sets.get(a), B = sets.get(b);
  if (!A || !B) continue;
  if (!A.size || !B.size) problem(`[${a}] [${b}] an output is empty: unlinkability not shown`);
  if ([...A].some((p) => B.has(p))) problem(`[${a}] [${b}] two studies share a pseudonym (linkable)`);
}
if ((expect.min_exposure_checked || 0) > stats.exposure)
  problem(`only ${stats.exposure} exposure value(s) could be checked, expected at least ${expect.min_exposure_checked}`);

if (problems.length) {
  for (const p of problems) process.stdout.write(`VIOLATION ${p}\n`);
  process.exit(1);
}
process.stdout.write(`ok: ${expect.outputs.length} output(s), ${stats.rows} data row(s), ${stats.exposure} exposure value(s) checked\n`);
