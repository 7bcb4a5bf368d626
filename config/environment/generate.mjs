#!/usr/bin/env node
// Generates the SYNTHETIC environment samples of config/environment/ (docs/environment.md).
// Nothing here is measured data: values follow a made-up daily pattern plus deterministic noise.
//
//   node generate.mjs                      rewrite sample.csv and the lml/ sample here
//   node generate.mjs --csv FROM DAYS      print a telehub CSV of DAYS days from FROM (a date,
//                                          YYYY-MM-DD, UTC) for areas 3500..3519 (the demo's)
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const AREAS = Array.from({ length: 20 }, (_, i) => 3500 + i);

// A small deterministic generator (LCG), so the files are the same on every run.
let seed = 20261128;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const r1 = (x) => Math.round(x * 10) / 10;

function row(area, t) {
  const h = t.getUTCHours();
  const rush = Math.exp(-((h - 8) ** 2) / 6) + Math.exp(-((h - 17) ** 2) / 6);
  const a = area - 3500;
  const no2 = r1(12 + 25 * rush + a * 0.6 + rand() * 5);
  const pm25 = r1(6 + 8 * rush + a * 0.2 + rand() * 3);
  const pm10 = r1(pm25 * 1.6 + rand() * 3);
  const o3 = r1(Math.max(2, 45 - 20 * rush + 15 * Math.sin(((h - 14) / 24) * 2 * Math.PI) + rand() * 5));
  const temperature = r1(6 + 4 * Math.sin(((h - 9) / 24) * 2 * Math.PI) + rand());
  const humidity = r1(Math.min(100, 80 - 12 * Math.sin(((h - 9) / 24) * 2 * Math.PI) + rand() * 4));
  return { no2, pm25, pm10, o3, temperature, humidity };
}

function csv(from, days) {
  const lines = ['area,time,pm25,pm10,no2,o3,temperature,humidity'];
  const start = Date.parse(`${from}T00:00:00Z`);
  for (let hour = 0; hour < days * 24; hour++) {
    const t = new Date(start + hour * 3600_000);
    for (const area of AREAS) {
      const v = row(area, t);
      lines.push(`${area},${t.toISOString().replace('.000Z', 'Z')},${v.pm25},${v.pm10},${v.no2},${v.o3},${v.temperature},${v.humidity}`);
    }
  }
  return lines.join('\n') + '\n';
}

// The RIVM open-data layout: metadata lines, then Component;Bep.periode;Eenheid;Begindatumtijd;
// Einddatumtijd;<station codes>, times YYYYMMDD HH:MM in UTC+1, decimal comma.
const STATIONS = [
  ['NL99901', 'Synthetic Noord', 52.115, 5.105],
  ['NL99902', 'Synthetic Centrum', 52.090, 5.121],
  ['NL99903', 'Synthetic Zuid', 52.060, 5.140],
];
function lml(component, from, days) {
  const codes = STATIONS.map((s) => s[0]);
  const lines = [
    `Synthetic sample in the layout of the RIVM Luchtmeetnet open data (not measured data);${codes.map(() => '').join(';')}`,
    `Component;${component};${codes.map(() => '').join(';')}`,
    `Component;Bep.periode;Eenheid;Begindatumtijd;Einddatumtijd;${codes.join(';')}`,
  ];
  const start = Date.parse(`${from}T00:00:00Z`);
  const fmt = (ms) => {
    const d = new Date(ms + 3600_000);  // local UTC+1
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())} ${p(d.getUTCHours())}:00`;
  };
  for (let hour = 0; hour < days * 24; hour++) {
    const ms = start + hour * 3600_000;
    const values = STATIONS.map((s, i) => {
      if (i === 2 && hour % 37 === 5) return '';  // a missing hour at one station
      const v = row(3500 + i * 7, new Date(ms));
      return String(component === 'NO2' ? v.no2 : v.pm10).replace('.', ',');
    });
    lines.push(`${component};Uur;ug/m3;${fmt(ms)};${fmt(ms + 3600_000)};${values.join(';')}`);
  }
  return lines.join('\n') + '\n';
}

if (process.argv[2] === '--csv') {
  process.stdout.write(csv(process.argv[3], Number(process.argv[4] || 1)));
} else {
  writeFileSync(join(here, 'sample.csv'), csv('2026-11-26', 3));
  writeFileSync(join(here, 'lml', '2026_11_NO2.csv'), lml('NO2', '2026-11-26', 3));
  writeFileSync(join(here, 'lml', '2026_11_PM10.csv'), lml('PM10', '2026-11-26', 3));
  writeFileSync(join(here, 'lml', 'stations.csv'),
    'station,name,lat,lon\n' + STATIONS.map((s) => s.join(',')).join('\n') + '\n');
  // Area centroids: synthetic points around Utrecht, plus one far away (no station within 25 km).
  const areas = AREAS.map((a, i) => `${a},${(52.05 + (i % 5) * 0.018).toFixed(3)},${(5.08 + Math.floor(i / 5) * 0.025).toFixed(3)}`);
  areas.push('9999,53.300,6.900');
  writeFileSync(join(here, 'lml', 'areas.csv'), 'area,lat,lon\n' + areas.join('\n') + '\n');
}
