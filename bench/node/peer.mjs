// The naive Node.js ingest peer: the baseline the hub is compared against. It does the hub's job
// the simple way: MQTT.js subscribes (MQTT 5, QoS 1, persistent session, as the hub does), and
// for each message it opens the envelope (AES-256-GCM with the device key from the provisioning
// files, docs/protocol.md section 3), parses the payload JSON, and stores each reading with one
// INSERT OR IGNORE (autocommit: one transaction per message) through better-sqlite3 into a table
// with UNIQUE(device_id, sequence, idx). Database in WAL mode with synchronous=NORMAL, the usual
// better-sqlite3 setup: unlike the hub it does not fsync each message before acknowledging it.
//
//   node peer.mjs --port P --provisioning DIR --db FILE --expect N [--timeout-s 120]
//
// Prints "ready" once subscribed, then, when N messages were handled or the timeout (from
// "ready") passed, one JSON line {"received":N,"stored":S,"failed":F,"elapsed_s":T,"rate":R}:
// elapsed from the first message received to the last stored, rate = (received - 1) / elapsed.
// It ends its session (session expiry 0) before exiting.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';

const opt = { timeoutS: 120 };
for (let i = 2; i + 1 < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, '');
  opt[name.replace(/-(.)/g, (_, c) => c.toUpperCase())] = process.argv[i + 1];
}
for (const required of ['port', 'provisioning', 'db', 'expect']) {
  if (!(required in opt)) {
    console.error(`peer.mjs: missing --${required}`);
    process.exit(2);
  }
}
const expect = Number(opt.expect);

const keys = new Map();
for (const f of fs.readdirSync(opt.provisioning)) {
  if (!f.endsWith('.json')) continue;
  const p = JSON.parse(fs.readFileSync(path.join(opt.provisioning, f), 'utf8'));
  keys.set(p.device_id, Buffer.from(p.key, 'hex'));
}

const db = new Database(opt.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec(`CREATE TABLE IF NOT EXISTS readings(
  id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, sequence INTEGER NOT NULL, idx INTEGER NOT NULL,
  code TEXT NOT NULL, value REAL, unit TEXT, time_ms INTEGER NOT NULL, components TEXT,
  received_ms INTEGER NOT NULL, UNIQUE(device_id, sequence, idx))`);
const insert = db.prepare(`INSERT OR IGNORE INTO readings
  (device_id, sequence, idx, code, value, unit, time_ms, components, received_ms) VALUES (?,?,?,?,?,?,?,?,?)`);

// Envelope v1: magic "TH", version 1, L, device id, key id (4), sequence (8) | ciphertext | tag (16).
function open(buf) {
  if (buf.length < 33 || buf[0] !== 0x54 || buf[1] !== 0x48 || buf[2] !== 1) throw new Error('not_envelope');
  const l = buf[3];
  const header = buf.subarray(0, 16 + l);
  const device = buf.toString('latin1', 4, 4 + l);
  const key = keys.get(device);
  if (!key) throw new Error('unknown_device');
  const d = crypto.createDecipheriv('aes-256-gcm', key, buf.subarray(4 + l, 16 + l));
  d.setAAD(header);
  d.setAuthTag(buf.subarray(buf.length - 16));
  const plain = Buffer.concat([d.update(buf.subarray(16 + l, buf.length - 16)), d.final()]);
  return { device, sequence: buf.readBigUInt64BE(8 + l), payload: JSON.parse(plain.toString('utf8')) };
}

let received = 0;
let stored = 0;
let failed = 0;
let first = 0n;
let last = 0n;
let finished = false;

const client = mqtt.connect(`mqtt://127.0.0.1:${opt.port}`, {
  protocolVersion: 5,
  clean: false,
  clientId: opt.clientId ?? `bench-node-${process.pid}`,
  keepalive: 20,
  reconnectPeriod: 0,
  properties: { sessionExpiryInterval: 7 * 24 * 3600 },
});

function finish() {
  if (finished) return;
  finished = true;
  const elapsed = received > 0 ? Number(last - first) / 1e9 : 0;
  console.log(JSON.stringify({ received, stored, failed, elapsed_s: elapsed, rate: elapsed > 0 ? (received - 1) / elapsed : 0 }));
  client.end(false, { properties: { sessionExpiryInterval: 0 } }, () => {
    db.close();
    process.exit(received === expect && failed === 0 ? 0 : 1);
  });
  setTimeout(() => process.exit(1), 5000).unref();
}

// MQTT.js sends the PUBACK after this handler returns; the inserts are synchronous.
client.on('message', (_topic, buf) => {
  const now = process.hrtime.bigint();
  if (received === 0) first = now;
  ++received;
  try {
    const m = open(buf);
    const receivedMs = Date.now();
    m.payload.readings.forEach((r, idx) => {
      const components = r.components ? r.components.map((c) => `${c.code}|${c.value}|${c.unit}`).join(';') : null;
      stored += insert.run(m.device, m.sequence, idx, r.code, r.value ?? null, r.unit ?? null, Date.parse(r.time),
        components, receivedMs).changes;
    });
  } catch (e) {
    ++failed;
  }
  last = process.hrtime.bigint();
  if (received >= expect) finish();
});
client.on('error', (e) => {
  if (finished) return; // the broker closing the socket after our DISCONNECT
  console.error(`peer.mjs: ${e.message}`);
  process.exit(1);
});
client.on('connect', () => {
  client.subscribe('telehub/v1/devices/+/readings', { qos: 1 }, (err, granted) => {
    if (err || granted[0].qos !== 1) {
      console.error('peer.mjs: subscription refused');
      process.exit(1);
    }
    console.log('ready');
    setTimeout(finish, Number(opt.timeoutS) * 1000).unref();
  });
});
