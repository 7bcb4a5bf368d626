// The telehub ingest benchmark driver (scripts/bench.sh runs it after the Release build).
// It starts and times the programs in bench/ and the real `telehub serve`, checks that every
// consumer stored or received exactly what was published, and prints one table: each figure is
// the median of BENCH_RUNS runs with min-max, each ratio is computed within a run, and each
// target of issue [3/8] is printed beside its figure with PASS/FAIL. What each row measures, the
// parameters and the design choices: docs/benchmarks.md.
//
// Node.js built-ins only; the naive Node.js peer (bench/node/) has its own dependencies.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function envInt(name, fallback, min = 1) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    console.error(`bench: ${name} must be an integer >= ${min} (got '${raw}')`);
    process.exit(2);
  }
  return v;
}

const P = {
  runs: envInt('BENCH_RUNS', 3),
  messages: envInt('BENCH_MESSAGES', 50000),
  batchMessages: envInt('BENCH_BATCH_MESSAGES', 2000),
  devices: envInt('BENCH_DEVICES', 200),
  publishers: envInt('BENCH_PUBLISHERS', 1),
  minRate: envInt('BENCH_MIN_RATE', 1000),
  minBatchRate: envInt('BENCH_MIN_BATCH_RATE', 10000),
  publishProtocol: process.env.BENCH_PUBLISH_PROTOCOL || '311',
  skipNode: process.env.BENCH_SKIP_NODE === '1',
  skipNodeReason: process.env.BENCH_SKIP_NODE_REASON || 'BENCH_SKIP_NODE=1',
  // Storage at scale: one run (it takes minutes), readings stored at each checkpoint.
  scaleCheckpoints: (process.env.BENCH_SCALE_CHECKPOINTS || '1000000,10000000,100000000').split(',').map(Number),
  scaleSubjects: envInt('BENCH_SCALE_SUBJECTS', 1000),
  skipScale: process.env.BENCH_SKIP_SCALE === '1',
  // 1 skips the ingest runs (single-reading and batched rows), e.g. to run only the soak.
  skipIngest: process.env.BENCH_SKIP_INGEST === '1',
  // Soak: one run, after the others: BENCH_SOAK_SECONDS at BENCH_SOAK_RATE msg/s over
  // BENCH_SOAK_DEVICES devices enrolled by telehub-bench-enroll.
  soakSeconds: envInt('BENCH_SOAK_SECONDS', 600),
  soakRate: envInt('BENCH_SOAK_RATE', 16700),
  soakDevices: envInt('BENCH_SOAK_DEVICES', 1000000),
  soakConnections: envInt('BENCH_SOAK_CONNECTIONS', 2),
  soakDrainS: envInt('BENCH_SOAK_DRAIN_S', 0, 0),  // 0: 2 × BENCH_SOAK_SECONDS
  skipSoak: process.env.BENCH_SKIP_SOAK === '1',
};
// The issue's soak: 1,000,000 patients sending one message a minute, for 10 minutes.
const SOAK_ISSUE = { devices: 1000000, rate: 16700, seconds: 600 };
const SOAK_WINDOW_S = 10; // the hub's rate is judged over windows of this length
if (!['311', '5'].includes(P.publishProtocol)) {
  console.error('bench: BENCH_PUBLISH_PROTOCOL must be 311 or 5');
  process.exit(2);
}
const BATCH = 60; // readings per batched message: a wearable's hourly upload of minute data
const BUILD = path.resolve(ROOT, process.env.BENCH_BUILD_DIR || 'build-release');
const WORK = path.resolve(process.env.BENCH_WORK_DIR || path.join(BUILD, 'bench-work'));
const BIN = {
  telehub: path.join(BUILD, 'apps', 'telehub'),
  seal: path.join(BUILD, 'bench', 'telehub-bench-seal'),
  publish: path.join(BUILD, 'bench', 'telehub-bench-publish'),
  paho: path.join(BUILD, 'bench', 'telehub-bench-paho-sub'),
  raw: path.join(BUILD, 'bench', 'telehub-bench-raw-sub'),
  append: path.join(BUILD, 'bench', 'telehub-bench-sqlite-append'),
  scale: path.join(BUILD, 'bench', 'telehub-bench-storage-scale'),
  enroll: path.join(BUILD, 'bench', 'telehub-bench-enroll'),
  soakPublish: path.join(BUILD, 'bench', 'telehub-bench-soak-publish'),
  peer: path.join(ROOT, 'bench', 'node', 'peer.mjs'),
};
// A fixed test key-encryption key: the bench's data directories hold only generated test data.
const ENV = { ...process.env, TELEHUB_KEK: 'b3'.repeat(32) };
const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => fs.existsSync(p)) || 'mosquitto';

// ---------------------------------------------------------------- processes

const live = new Set();
function start(cmd, args, opts = {}) {
  const child = spawn(cmd, args, { env: ENV, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  child.out = '';
  child.err = '';
  child.stdout.on('data', (d) => (child.out += d));
  child.stderr.on('data', (d) => (child.err += d));
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (e) => (child.err += `\nspawn failed: ${e.message}`));
  live.add(child);
  child.exited.then(() => live.delete(child));
  return child;
}
function cleanup() {
  for (const c of live) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {}
  }
}
process.on('exit', cleanup);
for (const s of ['SIGINT', 'SIGTERM'])
  process.on(s, () => {
    cleanup();
    process.exit(130);
  });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A timer that does not keep the process alive (for races against a child's exit).
const timeout = (ms) => new Promise((r) => setTimeout(r, ms).unref());

async function waitFor(pred, timeoutMs, stepMs = 50) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return true;
    if (Date.now() >= end) return false;
    await sleep(stepMs);
  }
}

// Waits for the child to exit; after timeoutMs sends SIGTERM, then SIGKILL.
async function finish(child, timeoutMs) {
  const t = await Promise.race([child.exited, timeout(timeoutMs).then(() => null)]);
  if (t) return t;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  const t2 = await Promise.race([child.exited, timeout(10000).then(() => null)]);
  if (t2) return { ...t2, killed: true };
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {}
  return { ...(await child.exited), killed: true };
}

async function stop(child, timeoutMs = 30000) {
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {}
  return finish(child, timeoutMs);
}

function lastJson(text) {
  const lines = text.trim().split('\n').reverse();
  for (const l of lines) {
    try {
      return JSON.parse(l);
    } catch {}
  }
  return null;
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { env: ENV, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

function sql(db, query) {
  const r = spawnSync('sqlite3', ['-batch', '-cmd', '.timeout 5000', db, query], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 ${db}: ${r.stderr}`);
  return r.stdout.trim().split('|').map((x) => (x === '' ? null : Number(x)));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

// ---------------------------------------------------------------- set-up

async function serve(dataDir) {
  const tlsPort = await freePort();
  let plainPort = await freePort();
  while (plainPort === tlsPort) plainPort = await freePort();
  const child = start(BIN.telehub, ['serve', '--data', dataDir, '--http-port', '0', '--broker-port', String(tlsPort),
    '--plaintext-port', String(plainPort),
    // Plain HTTP on loopback, and the local care setting so /metrics answers without a token
    // (docs/security.md, "Development mode"): the bench measures ingest, not TLS or tokens.
    '--insecure-http', '--care-local']);
  const up = await waitFor(() => child.out.includes('telehub: serving') || child.exitCode !== null, 30000);
  if (!up || !child.out.includes('telehub: serving')) {
    await stop(child);
    throw new Error(`telehub serve did not start:\n${child.err.slice(-2000)}`);
  }
  return { child, tlsPort, plainPort };
}

// The data directory every hub run starts from: hub.json, the development CA and the pseudonym
// key from one start of `serve`, then BENCH_DEVICES enrolled devices. No broker state.
async function makeTemplate() {
  const dir = path.join(WORK, 'template');
  const data = path.join(dir, 'data');
  fs.rmSync(WORK, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const s = await serve(data);
  await stop(s.child);
  for (let i = 0; i < P.devices; ++i) run(BIN.telehub, ['device', 'enroll', '--subject', `bench-patient-${i}`, '--data', data]);
  fs.rmSync(path.join(data, 'broker', 'mosquitto.db'), { force: true });
  const prov = path.join(data, 'provisioning');
  const single = JSON.parse(run(BIN.seal, ['--provisioning', prov, '--messages', String(P.messages), '--readings', '1',
    '--out', path.join(dir, 'single.bin')]));
  const batch = JSON.parse(run(BIN.seal, ['--provisioning', prov, '--messages', String(P.batchMessages), '--readings',
    String(BATCH), '--out', path.join(dir, 'batch.bin'), '--rows', path.join(dir, 'batch.rows')]));
  return { dir, data, prov, single, batch };
}

function copyData(tpl, runDir) {
  const data = path.join(runDir, 'data');
  fs.rmSync(runDir, { recursive: true, force: true });
  fs.mkdirSync(runDir, { recursive: true });
  fs.cpSync(tpl.data, data, { recursive: true });
  return data;
}

// Runs BENCH_PUBLISHERS lean publishers over the message file; resolves with the combined result.
async function publish(file, port, timeoutS) {
  const kids = [];
  for (let i = 0; i < P.publishers; ++i)
    kids.push(start(BIN.publish, ['--port', String(port), '--in', file, '--part', String(i), '--parts',
      String(P.publishers), '--protocol', P.publishProtocol, '--timeout-s', String(timeoutS)]));
  const results = [];
  for (const k of kids) {
    await finish(k, (timeoutS + 30) * 1000);
    const j = lastJson(k.out);
    if (!j) throw new Error(`publisher failed: ${k.err.slice(-1000)}`);
    results.push(j);
  }
  const sum = (f) => results.reduce((a, r) => a + r[f], 0);
  const elapsed = Math.max(...results.map((r) => r.elapsed_s));
  return { published: sum('published'), acked: sum('acked'), refused: sum('refused'), elapsed_s: elapsed,
    rate: elapsed > 0 ? sum('acked') / elapsed : 0 };
}

// ---------------------------------------------------------------- phases

// The real hub: `telehub serve` on a fresh copy of the template (so a fresh broker and session),
// subscribed over TLS; the messages are published to its broker's plaintext listener.
async function hubPhase(tpl, runDir, file, messages, readings, deadlineS) {
  const data = copyData(tpl, runDir);
  const db = path.join(data, 'telehub.db');
  const s = await serve(data);
  const t0 = Date.now();
  const pub = await publish(file, s.plainPort, deadlineS);
  let stored = 0;
  await waitFor(() => {
    [stored] = sql(db, 'SELECT count(*) FROM messages');
    return stored >= messages;
  }, Math.max(0, t0 + deadlineS * 1000 - Date.now()), 250);
  const end = await stop(s.child, 60000);
  const m = /stopped cleanly: (\d+) readings stored, (\d+) duplicates, (\d+) quarantined/.exec(s.child.err);
  const [msgs, distinct, first, last] = sql(db,
    'SELECT count(*), count(DISTINCT device_id || \':\' || sequence), min(received_ms), max(received_ms) FROM messages');
  const [obs] = sql(db, 'SELECT coalesce(sum(readings), 0) FROM messages');
  const [quarantined] = sql(db, 'SELECT count(*) FROM quarantine');
  const seconds = (last - first) / 1000;
  const r = {
    published: pub.acked,
    stored: msgs,
    readings: obs,
    rate: seconds > 0 ? (msgs - 1) / seconds : 0,
    readingRate: seconds > 0 ? ((obs * (msgs - 1)) / msgs) / seconds : 0,
    publisherRate: pub.rate,
    duplicates: m ? Number(m[2]) : null,
    quarantined,
    problems: [],
    log: s.child.err,
  };
  if (pub.acked !== messages || pub.refused) r.problems.push(`published ${pub.acked - pub.refused} of ${messages}`);
  if (msgs < messages)
    r.problems.push(`incomplete: stored ${stored} of ${messages} within the ${deadlineS} s deadline (${msgs} when stopped)`);
  if (msgs > messages || distinct !== msgs) r.problems.push(`stored ${msgs} messages for ${messages} published`);
  if (msgs === messages && obs !== readings) r.problems.push(`stored ${obs} readings of ${readings}`);
  if (quarantined) r.problems.push(`${quarantined} quarantined`);
  if (!m) r.problems.push(`no clean stop (exit ${end.code ?? end.signal})`);
  else if (Number(m[2]) !== 0) r.problems.push(`${m[2]} duplicates`);
  return r;
}

// The same broker (the embedded Mosquitto's configuration as `serve` wrote it, TLS listener,
// ACL and plaintext listener) started on its own with no persisted state, one per consumer, so
// every consumer starts with a fresh session and queue and nothing else subscribed.
async function withBroker(hubData, fn) {
  const conf = path.join(hubData, 'broker', 'mosquitto.conf');
  fs.rmSync(path.join(hubData, 'broker', 'mosquitto.db'), { force: true });
  const text = fs.readFileSync(conf, 'utf8');
  const ports = [...text.matchAll(/^listener (\d+)/gm)].map((x) => Number(x[1]));
  const broker = start(MOSQUITTO, ['-c', conf]);
  try {
    const up = await waitFor(async () => (await accepts(ports[0])) && (await accepts(ports[1])), 10000);
    if (!up) throw new Error(`mosquitto did not start: ${broker.err.slice(-1000)}`);
    return await fn({ tlsPort: ports[0], plainPort: ports[1] });
  } finally {
    await stop(broker, 20000);
  }
}

// A counting subscriber (or the Node.js peer): started, "ready" awaited, then the publisher.
async function subscriberPhase(cmd, args, plainPort, file, messages, deadlineS) {
  const sub = start(cmd, [...args, '--timeout-s', String(deadlineS)]);
  const ready = await waitFor(() => sub.out.includes('ready') || sub.exitCode !== null, 20000);
  if (!ready || !sub.out.includes('ready')) {
    await stop(sub);
    throw new Error(`${path.basename(cmd)} did not subscribe: ${sub.err.slice(-1000)}`);
  }
  const pub = await publish(file, plainPort, deadlineS);
  await finish(sub, (deadlineS + 30) * 1000);
  const j = lastJson(sub.out) || { received: 0, rate: 0 };
  const r = { published: pub.acked, received: j.received, rate: j.rate, publisherRate: pub.rate, problems: [], raw: j };
  if (pub.acked !== messages || pub.refused) r.problems.push(`published ${pub.acked - pub.refused} of ${messages}`);
  if (j.received < messages) r.problems.push(`incomplete: received ${j.received} of ${messages} within ${deadlineS} s`);
  if (j.received > messages) r.problems.push(`received ${j.received} for ${messages} published`);
  return r;
}

async function runOnce(tpl, n) {
  const runDir = path.join(WORK, `run-${n}`);
  const single = path.join(tpl.dir, 'single.bin');
  const batch = path.join(tpl.dir, 'batch.bin');
  const deadline = Math.ceil(10 + P.messages / P.minRate);
  const batchDeadline = Math.ceil(10 + (P.batchMessages * BATCH) / P.minBatchRate);
  const res = {};
  const logs = {};
  const started = Date.now();
  const step = (name) => process.stderr.write(`bench: run ${n}/${P.runs} (+${((Date.now() - started) / 1000).toFixed(1)} s): ${name}\n`);

  step('hub, single-reading messages');
  const hubDir = path.join(runDir, 'hub-single');
  res.hub = await hubPhase(tpl, hubDir, single, P.messages, P.messages, deadline);
  logs['hub-single-serve'] = res.hub.log;
  delete res.hub.log;
  const hubData = path.join(hubDir, 'data');

  step('bare Paho subscriber, plaintext');
  res.pahoPlain = await withBroker(hubData, (b) => subscriberPhase(BIN.paho,
    ['--uri', `tcp://127.0.0.1:${b.plainPort}`, '--expect', String(P.messages)], b.plainPort, single, P.messages, deadline));
  step('bare Paho subscriber, TLS');
  res.pahoTls = await withBroker(hubData, (b) => subscriberPhase(BIN.paho,
    ['--uri', `ssl://127.0.0.1:${b.tlsPort}`, '--expect', String(P.messages),
      '--ca', path.join(hubData, 'ca', 'ca.pem'), '--cert', path.join(hubData, 'tls', 'hub.pem'),
      '--key', path.join(hubData, 'tls', 'hub.key')], b.plainPort, single, P.messages, deadline));
  step('raw libmosquitto subscriber');
  res.raw = await withBroker(hubData, (b) => subscriberPhase(BIN.raw,
    ['--port', String(b.plainPort), '--expect', String(P.messages)], b.plainPort, single, P.messages, deadline));
  if (!P.skipNode) {
    step('Node.js peer');
    const db = path.join(runDir, 'node-peer.db');
    res.node = await withBroker(hubData, (b) => subscriberPhase('node',
      [BIN.peer, '--port', String(b.plainPort), '--provisioning', tpl.prov, '--db', db, '--expect', String(P.messages)],
      b.plainPort, single, P.messages, deadline));
    const [rows, distinct] = sql(db, 'SELECT count(*), count(DISTINCT device_id || \':\' || sequence) FROM readings');
    res.node.stored = rows;
    if (rows !== P.messages) res.node.problems.push(`stored ${rows} of ${P.messages}`);
    if (distinct !== rows) res.node.problems.push(`${rows - distinct} duplicates`);
    if (res.node.raw.failed) res.node.problems.push(`${res.node.raw.failed} messages failed to open`);
  }

  step('hub, batched messages');
  res.hubBatch = await hubPhase(tpl, path.join(runDir, 'hub-batch'), batch, P.batchMessages, P.batchMessages * BATCH,
    batchDeadline);
  logs['hub-batch-serve'] = res.hubBatch.log;
  delete res.hubBatch.log;
  step('bare Paho subscriber, TLS, batched messages');
  const batchData = path.join(runDir, 'hub-batch', 'data');
  res.pahoBatch = await withBroker(batchData, (b) => subscriberPhase(BIN.paho,
    ['--uri', `ssl://127.0.0.1:${b.tlsPort}`, '--expect', String(P.batchMessages),
      '--ca', path.join(batchData, 'ca', 'ca.pem'), '--cert', path.join(batchData, 'tls', 'hub.pem'),
      '--key', path.join(batchData, 'tls', 'hub.key')], b.plainPort, batch, P.batchMessages, batchDeadline));
  res.pahoBatch.readingRate = res.pahoBatch.rate * BATCH;
  for (const sync of ['FULL', 'NORMAL']) {
    step(`SQLite raw append, synchronous=${sync}`);
    const db = path.join(runDir, `append-${sync.toLowerCase()}.db`);
    const j = JSON.parse(run(BIN.append, ['--rows', path.join(tpl.dir, 'batch.rows'), '--db', db, '--synchronous', sync]));
    res[`append${sync}`] = { rate: j.rate, stored: j.stored, problems: j.stored === P.batchMessages * BATCH ? [] :
      [`stored ${j.stored} of ${P.batchMessages * BATCH}`] };
  }
  // Keep the data directories and logs of a run that failed a check, for a look afterwards.
  if (Object.values(res).every((r) => r.problems.length === 0)) fs.rmSync(runDir, { recursive: true, force: true });
  else {
    for (const [name, child] of Object.entries(logs)) fs.writeFileSync(path.join(runDir, `${name}.log`), child);
    process.stderr.write(`bench: run ${n} failed a check; its files are kept in ${runDir}\n`);
  }
  return res;
}

// ---------------------------------------------------------------- soak

// Resident set size of a process in KiB (VmRSS), or null once it is gone.
function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// User + system CPU seconds of a process so far (/proc/<pid>/stat, clock ticks of 1/100 s).
function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return null;
  }
}

// The whole machine's CPU time so far in s, all cores summed (/proc/stat "cpu" line, 1/100 s
// ticks): busy (user, nice, system, irq, softirq, steal), iowait, idle.
function machineCpu() {
  try {
    const f = /^cpu\s+(.*)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))[1].split(/\s+/).map(Number);
    const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
    return { busy: (user + nice + system + irq + softirq + (steal || 0)) / 100, iowait: iowait / 100, idle: idle / 100 };
  } catch {
    return null;
  }
}

// The hub's own counters from GET /metrics (ingest/include/telehub/ingest/metrics.h), or null.
async function hubCounters(url) {
  try {
    const text = await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text();
    const get = (re) => Number((re.exec(text) || [])[1] ?? NaN);
    return {
      stored: get(/^telehub_ingest_messages_total\{outcome="stored"\} (\d+)/m),
      duplicates: get(/^telehub_ingest_messages_total\{outcome="duplicate"\} (\d+)/m),
      quarantined: get(/^telehub_ingest_messages_total\{outcome="quarantined"\} (\d+)/m),
    };
  } catch {
    return null;
  }
}

// Keeps only the first and last `keep` characters of a chatty child's stderr in child.err (a
// hub that cannot keep up may log a line per message: gigabytes over a soak), and counts its
// WARN and ERROR lines by message (timestamp stripped).
function capStderr(child, keep = 1 << 18) {
  child.stderr.removeAllListeners('data');
  child.logLines = { WARN: 0, ERROR: 0, messages: new Map() };
  let head = child.err, tail = '', carry = '', bytes = child.err.length;
  child.stderr.on('data', (d) => {
    const text = carry + d;
    const lines = text.split('\n');
    carry = lines.pop();
    for (const l of lines) {
      const m = /^\S+ (WARN|ERROR) (.*)$/.exec(l);
      if (!m) continue;
      ++child.logLines[m[1]];
      const key = `${m[1]} ${m[2]}`;
      if (child.logLines.messages.has(key) || child.logLines.messages.size < 20)
        child.logLines.messages.set(key, (child.logLines.messages.get(key) || 0) + 1);
    }
    bytes += d.length;
    if (head.length < keep) head += d;
    else tail = (tail + d).slice(-keep);
    child.err = tail ? `${head}\n[... ${bytes - head.length - tail.length} bytes left out ...]\n${tail}` : head;
  });
}

// Linear interpolation of a sampled counter at time t (s); samples sorted by t.
function valueAt(samples, t, field) {
  const xs = samples.filter((x) => x[field] !== null && !Number.isNaN(x[field]));
  if (!xs.length || t < xs[0].t || t > xs[xs.length - 1].t) return null;
  let i = 1;
  while (i < xs.length && xs[i].t < t) ++i;
  if (i >= xs.length) return xs[xs.length - 1][field];
  const a = xs[i - 1], b = xs[i];
  return b.t === a.t ? b[field] : a[field] + ((b[field] - a[field]) * (t - a.t)) / (b.t - a.t);
}

// The soak (issue [3/8]): BENCH_SOAK_DEVICES devices enrolled by telehub-bench-enroll into a
// fresh data directory, one `telehub serve`, and telehub-bench-soak-publish offering
// BENCH_SOAK_RATE msg/s for BENCH_SOAK_SECONDS. Every second the hub's RSS (and its broker's)
// and its stored count (/metrics) are sampled; after publishing stops the hub drains its
// backlog, then stops, and its database is checked: stored = published, 0 duplicates, 0
// quarantined.
async function soak() {
  const dir = path.join(WORK, 'soak');
  const data = path.join(dir, 'data');
  const keys = path.join(dir, 'devices.keys');
  const S = P.soakSeconds, R = P.soakRate, D = P.soakDevices;
  const drainS = P.soakDrainS || 2 * S;
  const started = Date.now();
  const step = (name) => process.stderr.write(`bench: soak (+${((Date.now() - started) / 1000).toFixed(1)} s): ${name}\n`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const first = await serve(data);  // hub.json, CA, TLS files
  await stop(first.child);

  step(`enrolling ${D.toLocaleString('en-US')} devices (telehub-bench-enroll)`);
  const e = spawnSync(BIN.enroll, ['--data', data, '--devices', String(D), '--keys', keys],
    { env: ENV, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (e.status !== 0) throw new Error(`telehub-bench-enroll failed (exit ${e.status ?? e.signal})`);
  const enrol = lastJson(e.stdout);
  fs.rmSync(path.join(data, 'broker', 'mosquitto.db'), { force: true });

  step('starting the hub');
  const s = await serve(data);
  capStderr(s.child);
  const hubPid = s.child.pid;
  const base = /FHIR API at (http:\/\/\S+)\/fhir\/metadata/.exec(s.child.out)?.[1];
  const brokerPid = Number(/mosquitto pid (\d+)/.exec(s.child.err)?.[1]) || null;
  const metricsUrl = `${base}/metrics`;
  // {at (performance.now() ms), rss, brokerRss, cpu, brokerCpu, pubCpu, machine, driverCpu, stored, duplicates, quarantined}
  const samples = [];
  let pubPid = null;
  let sampling = true;
  const sampler = (async () => {
    let next = performance.now();
    while (sampling) {
      const at = performance.now();
      const c = await hubCounters(metricsUrl);
      samples.push({ at, rss: rssKiB(hubPid), brokerRss: brokerPid ? rssKiB(brokerPid) : null, cpu: cpuSeconds(hubPid),
        brokerCpu: brokerPid ? cpuSeconds(brokerPid) : null, pubCpu: pubPid ? cpuSeconds(pubPid) : null, machine: machineCpu(),
        driverCpu: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
        stored: c ? c.stored : null, duplicates: c ? c.duplicates : null, quarantined: c ? c.quarantined : null });
      next += 1000;
      await sleep(Math.max(0, next - performance.now()));
    }
  })();
  await sleep(5000);  // the idle hub, subscribed, before any load

  step(`publishing ${R.toLocaleString('en-US')} msg/s for ${S} s (telehub-bench-soak-publish)`);
  const pub = start(BIN.soakPublish, ['--port', String(s.plainPort), '--keys', keys, '--rate', String(R), '--seconds',
    String(S), '--devices', String(D), '--connections', String(P.soakConnections), '--interval-s', String(SOAK_WINDOW_S)]);
  pubPid = pub.pid;
  let t0 = null;  // performance.now() when the publisher started publishing
  let progress = 0;
  pub.stdout.on('data', () => {
    if (t0 === null && pub.out.includes('"event":"start"')) t0 = performance.now();
    const lines = pub.out.split('\n').filter((l) => l.startsWith('{"interval"'));
    for (; progress < lines.length; ++progress) {
      const j = JSON.parse(lines[progress]);
      const last = samples[samples.length - 1];
      process.stderr.write(`bench: soak: ${j.t_s.toFixed(0)} s: published ${j.published} (${fmtRate(j.rate)}/s), hub stored ` +
        `${last?.stored ?? '?'}, hub RSS ${last?.rss ? (last.rss / 1024).toFixed(0) : '?'} MiB\n`);
    }
  });
  await finish(pub, (S + 300) * 1000);
  const pubEnd = performance.now();
  const pubResult = lastJson(pub.out);
  const intervals = pub.out.split('\n').filter((l) => l.startsWith('{"interval"')).map((l) => JSON.parse(l));
  // Acknowledged by the broker: these must all be stored. A publisher that gave up may also have
  // sent some without a PUBACK (QoS 1: the broker may or may not have them).
  const published = pubResult ? pubResult.acked : 0;
  const unacked = pubResult ? Math.max(0, pubResult.published - pubResult.acked) : 0;

  step(`publisher done; waiting up to ${drainS} s for the hub to store everything`);
  let drainedAt = null;
  let stalled = false;
  let lastGain = { stored: -1, at: performance.now() };
  await waitFor(async () => {
    const c = await hubCounters(metricsUrl);
    if (c && c.stored >= published) drainedAt = performance.now();
    if (c && c.stored > lastGain.stored) lastGain = { stored: c.stored, at: performance.now() };
    stalled = performance.now() - lastGain.at > 60000;  // no progress for a minute: stop waiting
    return drainedAt !== null || stalled;
  }, drainS * 1000, 500);
  await sleep(2000);  // a sample or two after the drain
  sampling = false;
  await sampler;
  const end = await stop(s.child, 120000);
  const log = s.child.err;
  const m = /stopped cleanly: (\d+) readings stored, (\d+) duplicates, (\d+) quarantined/.exec(log);

  step('checking the database');
  const db = path.join(data, 'telehub.db');
  const [msgs] = sql(db, 'SELECT count(*) FROM messages');
  const [distinct] = sql(db, 'SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY device_id, sequence)');
  const [obs] = sql(db, 'SELECT coalesce(sum(readings), 0) FROM messages');
  const [quarantined] = sql(db, 'SELECT count(*) FROM quarantine');

  // Times in s from the first publish.
  const zero = t0 ?? pubEnd - S * 1000;
  const xs = samples.map((x) => ({ ...x, t: (x.at - zero) / 1000 }));
  const during = xs.filter((x) => x.t >= 0 && x.t <= S + 0.5 && x.rss !== null);
  const before = xs.filter((x) => x.t < 0 && x.rss !== null);
  const nearest = (t) => during.reduce((best, x) => (!best || Math.abs(x.t - t) < Math.abs(best.t - t) ? x : best), null);
  const refS = Math.min(60, S / 2);  // "one minute in" (half-way for a soak shorter than two minutes)
  const rss = {
    start: before.length ? before[before.length - 1].rss : null,
    refS,
    ref: nearest(refS)?.rss ?? null,
    peak: during.length ? Math.max(...during.map((x) => x.rss)) : null,
    end: nearest(S)?.rss ?? null,
    afterDrain: xs.length ? xs[xs.length - 1].rss : null,
  };
  const brokerDuring = during.filter((x) => x.brokerRss !== null);
  const brokerRss = {
    start: before.length ? before[before.length - 1].brokerRss : null,
    peak: brokerDuring.length ? Math.max(...brokerDuring.map((x) => x.brokerRss)) : null,
    end: nearest(S)?.brokerRss ?? null,
  };
  // The hub's commit rate per window of SOAK_WINDOW_S over the publishing time.
  const windows = [];
  for (let a = 0; a + SOAK_WINDOW_S <= S + 1e-9; a += SOAK_WINDOW_S) {
    const x = valueAt(xs, a, 'stored'), y = valueAt(xs, a + SOAK_WINDOW_S, 'stored');
    windows.push({ from_s: a, rate: x === null || y === null ? null : (y - x) / SOAK_WINDOW_S });
  }
  const measured = windows.filter((w) => w.rate !== null);
  const hubMinRate = measured.length ? Math.min(...measured.map((w) => w.rate)) : null;
  const storedAtEnd = valueAt(xs, S, 'stored');
  // Share of one core each process used while publishing: first to last sample in [0, S].
  const cpuShare = (field) => {
    const ys = xs.filter((x) => x[field] !== null && x.t >= 0 && x.t <= S + 0.5);
    if (ys.length < 2) return null;
    const a = ys[0], b = ys[ys.length - 1];
    return (b[field] - a[field]) / (b.t - a.t);
  };
  const cpu = { hub: cpuShare('cpu'), broker: cpuShare('brokerCpu'), publisher: cpuShare('pubCpu'),
    driver: cpuShare('driverCpu'), machine: null };
  // The whole machine over the same time, as shares of all its cores (others' work included).
  const ms = xs.filter((x) => x.machine && x.t >= 0 && x.t <= S + 0.5);
  if (ms.length >= 2) {
    const a = ms[0].machine, b = ms[ms.length - 1].machine;
    const total = b.busy + b.iowait + b.idle - (a.busy + a.iowait + a.idle);
    if (total > 0) cpu.machine = { busy: (b.busy - a.busy) / total, iowait: (b.iowait - a.iowait) / total };
  }

  const r = {
    params: { devices: D, rate: R, seconds: S, connections: P.soakConnections, drain_s: drainS },
    enrol,
    publisher: pubResult,
    intervals,
    published,
    unacked,
    stored: msgs,
    readings: obs,
    duplicates: m ? Number(m[2]) : null,
    quarantined,
    hubMinRate,
    windows,
    backlogAtEnd: storedAtEnd === null ? null : Math.max(0, published - storedAtEnd),
    drainS: drainedAt === null ? null : Math.max(0, (drainedAt - zero) / 1000 - S),
    rss,
    brokerRss,
    cpu,
    hubLog: s.child.logLines ? { warn: s.child.logLines.WARN, error: s.child.logLines.ERROR,
      messages: [...s.child.logLines.messages].sort((a, b) => b[1] - a[1]).map(([text, n]) => ({ n, text })) } : null,
    samples: xs.map(({ at, ...x }) => x),
    problems: [],
    publisherProblems: [],
  };
  if (!pubResult) r.publisherProblems.push(`publisher failed: ${pub.err.slice(-500)}`);
  else {
    if (pubResult.published !== R * S || pubResult.acked !== pubResult.published || pubResult.refused || pubResult.timed_out)
      r.publisherProblems.push(`published ${pubResult.published}, acknowledged ${pubResult.acked} of ${R * S}` +
        `${pubResult.refused ? `, ${pubResult.refused} refused` : ''}${pubResult.timed_out ? ', timed out' : ''}`);
    if (pubResult.min_interval_rate < 0.99 * R)
      r.publisherProblems.push(`publisher fell behind: ${fmtRate(pubResult.min_interval_rate)} msg/s in its slowest ` +
        `${SOAK_WINDOW_S}-s interval`);
  }
  if (drainedAt === null)
    r.problems.push(stalled ? 'not drained: the hub stored nothing for a minute' : `not drained within ${drainS} s of the end of publishing`);
  if (msgs < published || msgs > published + unacked)
    r.problems.push(`stored ${msgs} of ${published}` + (unacked ? ` acknowledged (+ ${unacked} sent without a PUBACK)` : ''));
  if (distinct !== msgs) r.problems.push(`${msgs - distinct} (device, sequence) stored twice`);
  if (obs !== msgs) r.problems.push(`${obs} readings for ${msgs} messages`);
  if (quarantined) r.problems.push(`${quarantined} quarantined`);
  if (!m) r.problems.push(`no clean stop (exit ${end.code ?? end.signal})`);
  else if (Number(m[2]) !== 0) r.problems.push(`${m[2]} duplicates`);

  // Keep the data directory (and the hub's log) of a soak that failed a check; it can be large.
  if (r.problems.length === 0 && r.publisherProblems.length === 0) fs.rmSync(dir, { recursive: true, force: true });
  else {
    fs.writeFileSync(path.join(dir, 'serve.log'), log);
    fs.writeFileSync(path.join(dir, 'publisher.out'), pub.out + pub.err);
    process.stderr.write(`bench: the soak failed a check; its files are kept in ${dir}\n`);
  }
  return r;
}

// ---------------------------------------------------------------- table

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const fmtRate = (v) => (v >= 100 ? Math.round(v).toLocaleString('en-US') : v.toFixed(1));
const fmtRatio = (v) => (v >= 10 ? v.toFixed(1) : v.toFixed(2));

function stat(values, fmt) {
  if (values.some((v) => v === undefined || v === null || Number.isNaN(v))) return ['n/a', ''];
  return [fmt(median(values)), `${fmt(Math.min(...values))}–${fmt(Math.max(...values))}`];
}

function checks(runs, key, okText) {
  const bad = runs.map((r, i) => (r[key].problems.length ? `run ${i + 1}: ${r[key].problems.join(', ')}` : null)).filter(Boolean);
  return bad.length ? { text: bad.join('; '), ok: false } : { text: `${runs.length}/${runs.length} runs: ${okText}`, ok: true };
}

// The soak's rows (one run). Targets are judged only at the issue's size (SOAK_ISSUE); a
// shorter or smaller soak shows its figures with '—' as result. stored = published is judged
// always.
function soakRows(rows, section, o) {
  const fmt = (x) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : Math.round(x).toLocaleString('en-US'));
  const mib = (kib) => (kib === null || kib === undefined ? 'n/a' : (kib / 1024).toFixed(0));
  const { devices: D, rate: R, seconds: S, connections: C } = o.params;
  const full = D >= SOAK_ISSUE.devices && R >= SOAK_ISSUE.rate && S >= SOAK_ISSUE.seconds;
  const short = full ? '' : `short soak: judged only at ${fmt(SOAK_ISSUE.devices)} devices, ${fmt(SOAK_ISSUE.rate)} msg/s, ${SOAK_ISSUE.seconds} s`;
  const judge = (ok) => (full ? (ok ? 'PASS' : 'FAIL') : '—');
  const join = (...xs) => xs.filter(Boolean).join('; ');
  const pub = o.publisher;
  section(`Soak (issue [3/8]): 1 run, ${S} s at ${fmt(R)} msg/s offered, round robin over ${fmt(D)} enrolled devices ` +
    `(one sealed heart rate per message, ${C} publisher connections), into one telehub serve; hub RSS and stored count sampled every second`);
  if (o.enrol)
    rows.push(['enrol the devices (telehub-bench-enroll: Registry::add_device, group commit)', 'file', `${o.enrol.elapsed_s.toFixed(1)} s`, '', '', '',
      `${fmt(o.enrol.rate)} devices/s, ${o.enrol.threads} threads, synchronous=${o.enrol.synchronous}`]);
  rows.push(['publisher: offered rate (slowest 10-s interval)', 'plaintext', pub ? `${fmt(pub.min_interval_rate)} msg/s` : 'n/a', '', '',
    o.publisherProblems.length ? 'FAIL' : '',
    o.publisherProblems.length ? o.publisherProblems.join('; ') : `${fmt(o.published)} published, every PUBACK received; most late message ${pub.max_lag_ms.toFixed(0)} ms`]);
  const held = o.hubMinRate === null ? null : o.hubMinRate / R;
  rows.push([`hub rate held: slowest ${SOAK_WINDOW_S}-s window / offered`, 'TLS', held === null ? 'n/a' : `${held.toFixed(2)}×`, '', '>= 95 %',
    judge(held !== null && held >= 0.95 && !o.publisherProblems.length),
    join(`slowest window ${fmt(o.hubMinRate)} msg/s (stored count from /metrics)`, short)]);
  rows.push(['hub backlog when publishing stopped (published − stored)', '', `${fmt(o.backlogAtEnd)} msgs`, '', '(info)', '',
    o.drainS !== null ? `drained ${o.drainS.toFixed(1)} s after publishing stopped` : o.problems.find((p) => p.startsWith('not drained'))]);
  const ref = o.rss.refS === 60 ? '1 min in' : `${o.rss.refS} s in`;
  rows.push([`hub RSS: start / ${ref} / peak / end`, '', `${mib(o.rss.start)} / ${mib(o.rss.ref)} / ${mib(o.rss.peak)} / ${mib(o.rss.end)} MiB`, '', '', '',
    `VmRSS of telehub serve; ${mib(o.rss.afterDrain)} MiB after the drain`]);
  const flat = o.rss.end && o.rss.ref ? o.rss.end / o.rss.ref : null;
  rows.push([`hub RSS end / ${ref}`, '', flat === null ? 'n/a' : `${flat.toFixed(2)}×`, '', '<= 1.1×', judge(flat !== null && flat <= 1.1), short]);
  rows.push(['broker RSS: start / peak / end (embedded Mosquitto)', '', `${mib(o.brokerRss.start)} / ${mib(o.brokerRss.peak)} / ${mib(o.brokerRss.end)} MiB`, '',
    '(info)', '', 'it queues what the hub has not taken yet']);
  const pct = (x) => (x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(0)} %`);
  rows.push(['CPU while publishing: hub / broker / publisher / this driver (% of one core)', '',
    `${pct(o.cpu.hub)} / ${pct(o.cpu.broker)} / ${pct(o.cpu.publisher)} / ${pct(o.cpu.driver)}`, '',
    '(info)', '', o.cpu.machine ? `the machine's ${os.cpus().length} cores (everything on it): ${pct(o.cpu.machine.busy)} busy, ` +
      `${pct(o.cpu.machine.iowait)} waiting for I/O` : `${os.cpus().length} cores`]);
  if (o.hubLog) {
    const top = o.hubLog.messages[0];
    rows.push(['hub log: WARN / ERROR lines', '', `${fmt(o.hubLog.warn)} / ${fmt(o.hubLog.error)}`, '', '(info)', '',
      top ? `most frequent (${fmt(top.n)}×): ${top.text}` : '']);
  }
  // With a publisher that gave up, up to `unacked` more may be stored (the broker had them, the
  // PUBACK did not arrive before the publisher disconnected).
  const extra = o.unacked ? `; ${fmt(o.unacked)} more sent without a PUBACK, ${fmt(Math.max(0, o.stored - o.published))} of them stored` : '';
  rows.push(['stored = published (acknowledged), after the drain', 'file', `${fmt(o.stored)} of ${fmt(o.published)}`, '', 'nothing lost',
    o.problems.length || !o.published ? 'FAIL' : 'PASS',
    (o.problems.length ? o.problems.join('; ') : '0 duplicates, 0 quarantined, clean stop') + extra]);
}

function table(runs, tpl, scale, soakRes) {
  const rows = [];
  const head = ['figure', 'link', 'median', 'min–max', 'target', 'result', 'check (every run)'];
  const section = (t) => rows.push({ section: t });
  const figure = (name, link, key, field, okText, unit = '/s') => {
    const [med, range] = stat(runs.map((r) => r[key][field]), fmtRate);
    const c = checks(runs, key, okText);
    rows.push([name, link, `${med} ${unit}`, range, '', c.ok ? '' : 'FAIL', c.text]);
    return c.ok;
  };
  const ratio = (name, num, den, target, note = '') => {
    const values = runs.map((r) => (r[num[0]] && r[den[0]] && r[den[0]][den[1]] > 0 ? r[num[0]][num[1]] / r[den[0]][den[1]] : NaN));
    const [med, range] = stat(values, fmtRatio);
    const complete = runs.every((r) => r[num[0]]?.problems.length === 0 && r[den[0]]?.problems.length === 0);
    let result = '';
    if (target !== null) result = med === 'n/a' ? 'FAIL' : median(values) >= target && complete ? 'PASS' : 'FAIL';
    const t = target === null ? '(info)' : `>= ${target >= 1 ? `${target}×` : `${Math.round(target * 100)} %`}`;
    rows.push([name, '', `${med}×`, range, t, result, complete ? note : `${note}${note ? '; ' : ''}a run was incomplete (see above)`]);
  };
  const notMeasured = (name, target, why = 'storage-at-scale / soak: a later session') =>
    rows.push([name, '', 'not measured yet', '', target, '—', why]);

  if (!runs.length) section('Ingest, single-reading and batched messages: not measured (BENCH_SKIP_INGEST=1)');
  else {
    section(`Ingest, single-reading messages: ${P.messages.toLocaleString('en-US')} sealed messages (QoS 1, one blood-pressure panel, ${tpl.single.avg_bytes} B) from ${tpl.single.devices} enrolled devices; rate = first to last message received/stored`);
    figure('hub: telehub serve (readings stored)', 'TLS', 'hub', 'rate', 'stored = published, 0 duplicates, 0 quarantined', 'msg/s');
    figure('bare Paho MQTT C++ subscriber (counts)', 'plaintext', 'pahoPlain', 'rate', 'received = published', 'msg/s');
    figure('bare Paho MQTT C++ subscriber (counts)', 'TLS', 'pahoTls', 'rate', 'received = published', 'msg/s');
    figure('raw libmosquitto subscriber (counts)', 'plaintext', 'raw', 'rate', 'received = published', 'msg/s');
    if (!P.skipNode) figure('naive Node.js peer (MQTT.js + better-sqlite3)', 'plaintext', 'node', 'rate', 'stored = published, 0 duplicates', 'msg/s');
    else rows.push(['naive Node.js peer (MQTT.js + better-sqlite3)', 'plaintext', 'not measured', '', '', 'FAIL', `not measured: ${P.skipNodeReason}`]);
    figure('lean publisher into the broker, during the raw run', 'plaintext', 'raw', 'publisherRate', `${P.publishers} libmosquitto process(es), MQTT ${P.publishProtocol === '5' ? '5' : '3.1.1'}, every PUBACK received`, 'msg/s');
    ratio('hub / bare Paho (same link: TLS)', ['hub', 'rate'], ['pahoTls', 'rate'], 0.8);
    ratio('hub / bare Paho (plaintext)', ['hub', 'rate'], ['pahoPlain', 'rate'], null);
    ratio('hub / raw subscriber (broker limit)', ['hub', 'rate'], ['raw', 'rate'], null);
    if (!P.skipNode) ratio('hub / naive Node.js peer', ['hub', 'rate'], ['node', 'rate'], 5);
    else rows.push(['hub / naive Node.js peer', '', 'n/a', '', '>= 5×', 'FAIL', 'Node.js peer not measured']);

    section(`Ingest, batched messages: ${P.batchMessages.toLocaleString('en-US')} messages × ${BATCH} heart-rate readings (${tpl.batch.avg_bytes} B) = ${(P.batchMessages * BATCH).toLocaleString('en-US')} readings`);
    figure('hub: telehub serve', 'TLS', 'hubBatch', 'readingRate', 'stored = published, 0 duplicates, 0 quarantined', 'readings/s');
    figure('bare Paho MQTT C++ subscriber (counts; messages × 60)', 'TLS', 'pahoBatch', 'readingRate', 'received = published', 'readings/s');
    figure('SQLite raw append, same rows (WAL, synchronous=FULL, 1,000 rows/txn)', 'file', 'appendFULL', 'rate', 'all rows stored', 'rows/s');
    figure('SQLite raw append, same rows (WAL, synchronous=NORMAL, 1,000 rows/txn)', 'file', 'appendNORMAL', 'rate', 'all rows stored', 'rows/s');
    ratio('hub / raw append (synchronous=FULL, the hub\'s durability)', ['hubBatch', 'readingRate'], ['appendFULL', 'rate'], 0.5);
    ratio('hub / raw append (synchronous=NORMAL)', ['hubBatch', 'readingRate'], ['appendNORMAL', 'rate'], null);
    ratio('hub / bare Paho (TLS), batched messages', ['hubBatch', 'readingRate'], ['pahoBatch', 'readingRate'], null);
  }

  if (!scale) {
    section('Storage at scale (issue [3/8]): not measured (BENCH_SKIP_SCALE=1)');
    notMeasured('insert rate at 100 M / at 1 M stored readings', '>= 80 %');
    notMeasured('bytes per stored reading (regular minute series)', '<= 8 B');
    notMeasured('range read of one patient-year of minute data', '< 100 ms');
  } else {
    const fmt = (x) => Math.round(x).toLocaleString('en-US');
    const check = scale.stored === scale.expected ? `stored = appended (${fmt(scale.stored)})` : `stored ${scale.stored} of ${scale.expected}`;
    section(`Storage at scale (issue [3/8]): telehub-bench-storage-scale, 1 run, through storage::Store (synchronous=NORMAL); ${P.scaleSubjects} subjects uploading 60 minute readings per message, plus one patient-year`);
    for (const c of scale.checkpoints)
      rows.push([`insert rate at ${fmt(c.readings)} stored readings (last 1,000,000)`, 'file', `${fmt(c.rate)} readings/s`, '', '', '', check]);
    const first = scale.checkpoints[0], last = scale.checkpoints[scale.checkpoints.length - 1];
    const r = last.rate / first.rate;
    const reached100M = last.readings >= 100e6;
    rows.push([`insert rate at ${fmt(last.readings)} / at ${fmt(first.readings)}`, '', `${r.toFixed(2)}×`, '', '>= 80 % (at 100 M)',
      reached100M && r >= 0.8 ? 'PASS' : 'FAIL', reached100M ? '' : 'largest checkpoint below 100 M (BENCH_SCALE_CHECKPOINTS)']);
    rows.push(['bytes per stored reading (regular minute series, indexes included)', 'file', `${scale.bytes_per_reading.toFixed(1)} B`, '',
      '<= 8 B', scale.bytes_per_reading <= 8 ? 'PASS' : 'FAIL', `${fmt(scale.bytes)} bytes for ${fmt(scale.stored)} readings`]);
    rows.push(['range read of one patient-year of minute data (pages of 1,000)', 'file', `${scale.year_read_ms.toFixed(0)} ms`, '',
      '< 100 ms', scale.year_read_ms < 100 && scale.year_points === 525600 ? 'PASS' : 'FAIL', `${fmt(scale.year_points)} readings read back; median of 3`]);
  }
  if (!soakRes) {
    section('Soak (issue [3/8]): not measured (BENCH_SKIP_SOAK=1)');
    notMeasured('hub RSS, 10 min at 16,700 msg/s (end / 1 min in)', '<= 1.1×, nothing lost', 'BENCH_SKIP_SOAK=1');
  } else soakRows(rows, section, soakRes);

  const widths = head.map((h, i) => Math.max(h.length, ...rows.filter((r) => !r.section).map((r) => String(r[i]).length)));
  widths[6] = Math.min(widths[6], 80);
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`];
  for (const r of rows) out.push(r.section ? `| **${r.section}**` : line(r));
  return out.join('\n');
}

// ---------------------------------------------------------------- main

for (const [name, file] of Object.entries(BIN)) {
  if (!fs.existsSync(file)) {
    console.error(`bench: ${name} not found at ${file}; build with scripts/bench.sh`);
    process.exit(2);
  }
}
const tpl = P.skipIngest ? null : await makeTemplate();  // (re)creates WORK
fs.mkdirSync(WORK, { recursive: true });
const runs = [];
if (!P.skipIngest) for (let n = 1; n <= P.runs; ++n) runs.push(await runOnce(tpl, n));
let scale = null;
if (!P.skipScale) {
  process.stderr.write(`bench: storage at scale, checkpoints ${P.scaleCheckpoints.join(', ')} readings\n`);
  const db = path.join(WORK, 'scale.db');
  fs.rmSync(db, { force: true });
  scale = JSON.parse(run(BIN.scale, ['--db', db, '--checkpoints', P.scaleCheckpoints.join(','), '--subjects', String(P.scaleSubjects), '--window', '1000000']));
  fs.rmSync(db, { force: true });
}
// The soak runs once, after everything else (it takes about half an hour at full size).
let soakRes = null;
if (!P.skipSoak) {
  process.stderr.write(`bench: soak, ${P.soakSeconds} s at ${P.soakRate} msg/s over ${P.soakDevices} devices\n`);
  soakRes = await soak();
}
fs.writeFileSync(path.join(WORK, 'results.json'), JSON.stringify({ params: P, runs, scale, soak: soakRes }, null, 1));

const commit = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
const cpu = os.cpus()[0]?.model ?? '?';
const text = [
  `telehub ingest benchmark — ${new Date().toISOString()} — commit ${commit || '?'} — ${os.cpus().length} × ${cpu}`,
  `${P.skipIngest ? 'ingest runs skipped (BENCH_SKIP_INGEST=1)' : `runs ${P.runs} (median, min–max)`}; BENCH_MESSAGES=${P.messages} BENCH_BATCH_MESSAGES=${P.batchMessages} ` +
    `BENCH_DEVICES=${P.devices} BENCH_PUBLISHERS=${P.publishers} BENCH_PUBLISH_PROTOCOL=${P.publishProtocol} BENCH_MIN_RATE=${P.minRate} BENCH_MIN_BATCH_RATE=${P.minBatchRate}; ` +
    `publishers send concurrently with consumption; links: TLS = client certificate on the broker's TLS listener, ` +
    `plaintext = its loopback plaintext listener (publishers always use it)` +
    (P.skipSoak ? '' : `; BENCH_SOAK_SECONDS=${P.soakSeconds} BENCH_SOAK_RATE=${P.soakRate} BENCH_SOAK_DEVICES=${P.soakDevices} ` +
      `BENCH_SOAK_CONNECTIONS=${P.soakConnections}`),
  '',
  table(runs, tpl, scale, soakRes),
].join('\n');
fs.writeFileSync(path.join(WORK, 'table.txt'), `${text}\n`);
console.log(text);

// ---------------------------------------------------------------- FHIR API (issue [7/8])
// A separate step after the ingest table (it changes nothing above): telehub-bench-fhir, one
// default run, its figure lines printed as they are. BENCH_SKIP_FHIR=1 skips it.
if (process.env.BENCH_SKIP_FHIR !== '1') {
  const fhirBin = path.join(BUILD, 'bench', 'telehub-bench-fhir');
  console.log('\nFHIR API (issue [7/8]): telehub-bench-fhir, plain HTTP on 127.0.0.1 (docs/benchmarks.md, "FHIR API")');
  if (!fs.existsSync(fhirBin)) {
    console.log(`not measured: ${fhirBin} not found; build with scripts/bench.sh`);
  } else {
    process.stderr.write('bench: FHIR API (telehub-bench-fhir)\n');
    const r = spawnSync(fhirBin, ['--shared', path.resolve(ROOT, '..', 'shared')], { env: ENV, encoding: 'utf8', maxBuffer: 1 << 26 });
    const lines = (r.stdout || '').trim().split('\n').filter((l) => l);
    const figures = r.status === 0 ? lastJson(r.stdout) : null;
    if (!figures) {
      console.log(`not measured: telehub-bench-fhir failed (exit ${r.status}): ${(r.stderr || String(r.error)).trim().split('\n').slice(-3).join(' / ')}`);
    } else {
      const fhirText = lines.filter((l) => !l.startsWith('{')).join('\n');
      console.log(fhirText);
      fs.writeFileSync(path.join(WORK, 'fhir.txt'), `${fhirText}\n`);
      fs.writeFileSync(path.join(WORK, 'fhir.json'), JSON.stringify(figures, null, 1));
    }
  }
}
