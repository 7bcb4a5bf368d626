#!/usr/bin/env node
// An independent checker of published aggregate tables (docs/research.md, "Aggregate
// queries"). It shares no code with the C++ aggregator: it reads only the published JSON and
// tries what a reader of the table could do.
//
//   node aggregate_checker.mjs TABLE.json...
//
// For each table it checks:
//   - shape: one cell per (group or "*") x (period or "*");
//   - no shown cell describes 1..min_subjects-1 subjects; a suppressed cell carries no number;
//   - nothing suppressed can be recomputed from the published numbers: readings and value sums
//     (mean x readings) add up along every row and column to its total, so it repeatedly solves
//     every line with exactly one unknown cell (which then becomes known) until nothing changes;
//     any suppressed cell solved that way is a leak.
// Exit 0 when every table passes, 1 with one line per problem otherwise.
import { readFileSync } from 'node:fs';

const problems = [];
const say = (file, text) => problems.push(`${file}: ${text}`);

for (const file of process.argv.slice(2)) {
  const t = JSON.parse(readFileSync(file, 'utf8'));
  const rows = [...t.groups, '*'];
  const cols = [...t.periods, '*'];
  const byKey = new Map();
  for (const c of t.cells) byKey.set(`${c.group}\u0000${c.period}`, c);
  if (t.cells.length !== rows.length * cols.length) say(file, `expected ${rows.length * cols.length} cells, found ${t.cells.length}`);
  const cell = (r, c) => byKey.get(`${rows[r]}\u0000${cols[c]}`);
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < cols.length; c++) {
      const x = cell(r, c);
      if (!x) { say(file, `no cell for group ${rows[r]}, period ${cols[c]}`); continue; }
      if (x.suppressed) {
        for (const k of Object.keys(x)) {
          if (!['group', 'period', 'suppressed', 'reason'].includes(k)) say(file, `suppressed cell ${rows[r]}/${cols[c]} still carries ${k}`);
        }
      } else if (x.subjects > 0 && x.subjects < t.min_subjects) {
        say(file, `cell ${rows[r]}/${cols[c]} is shown with ${x.subjects} subjects, below ${t.min_subjects}`);
      }
    }
  }
  // Recomputation by peeling lines with one unknown.
  for (const measure of ['readings', 'sum']) {
    const known = rows.map((_, r) => cols.map((_, c) => {
      const x = cell(r, c);
      if (!x || x.suppressed) return null;
      if (measure === 'readings') return x.readings;
      return x.readings > 0 ? x.mean * x.readings : 0;
    }));
    let changed = true;
    while (changed) {
      changed = false;
      const lines = [];
      for (let r = 0; r < rows.length; r++) lines.push(cols.map((_, c) => [r, c]));
      for (let c = 0; c < cols.length; c++) lines.push(rows.map((_, r) => [r, c]));
      for (const line of lines) {
        const unknown = line.filter(([r, c]) => known[r][c] === null);
        if (unknown.length !== 1) continue;
        const [ur, uc] = unknown[0];
        const total = line[line.length - 1];
        const parts = line.slice(0, -1);
        let value;
        if (ur === total[0] && uc === total[1]) value = parts.reduce((s, [r, c]) => s + known[r][c], 0);
        else value = known[total[0]][total[1]] - parts.filter(([r, c]) => !(r === ur && c === uc)).reduce((s, [r, c]) => s + known[r][c], 0);
        known[ur][uc] = value;
        changed = true;
        const x = cell(ur, uc);
        if (x && x.suppressed) {
          say(file, `suppressed cell ${rows[ur]}/${cols[uc]} can be recomputed from the published ${measure}: ${value}`);
        }
      }
    }
  }
}

if (problems.length) {
  for (const p of problems) console.log(p);
  process.exit(1);
}
console.log('aggregate tables pass');
