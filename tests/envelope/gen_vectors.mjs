// Generates the envelope v1 test vectors in docs/protocol.md and tests/envelope/envelope_test.cpp
// with an implementation independent of telehub's C++ code (Node.js built-in crypto).
//
//   node tests/envelope/gen_vectors.mjs
//
// Builds each envelope straight from the byte layout in docs/protocol.md:
//   "TH" | 0x01 | L | device id | key id (u32 BE) | sequence (u64 BE) | ciphertext | tag
// with AAD = the 16+L header bytes and nonce = key id (u32 BE) || sequence (u64 BE).
import { createCipheriv } from 'node:crypto';

const range = (from, n) => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));

const vectors = [
  {
    name: 'heart rate, one reading',
    key: range(0x00, 32),
    deviceId: 'dev-0001',
    keyId: 1,
    sequence: 1n,
    plaintext: '{"v":1,"readings":[{"code":"8867-4","value":72,"unit":"/min","time":"2026-11-28T10:15:00.000Z"}]}',
  },
  {
    name: 'blood pressure panel and temperature, 64-bit sequence',
    key: range(0x80, 32),
    deviceId: 'bp-cuff.A7-x',
    keyId: 7,
    sequence: 4294967297n,
    plaintext:
      '{"v":1,"readings":[{"code":"85354-9","time":"2026-11-28T07:30:05.250Z","components":[' +
      '{"code":"8480-6","value":128,"unit":"mm[Hg]"},{"code":"8462-4","value":82,"unit":"mm[Hg]"}]},' +
      '{"code":"8310-5","value":37.2,"unit":"Cel","time":"2026-11-28T07:31:00.000Z"}]}',
  },
  {
    name: 'shortest device id, short plaintext, extreme key id and sequence',
    key: Buffer.alloc(32, 0xa5),
    deviceId: 'a',
    keyId: 0xffffffff,
    sequence: 0xfffffffffffffffen,
    plaintext: '{}',
  },
];

for (const v of vectors) {
  const id = Buffer.from(v.deviceId, 'ascii');
  const header = Buffer.alloc(16 + id.length);
  header.write('TH', 0, 'ascii');
  header[2] = 0x01;
  header[3] = id.length;
  id.copy(header, 4);
  header.writeUInt32BE(v.keyId, 4 + id.length);
  header.writeBigUInt64BE(v.sequence, 8 + id.length);

  const nonce = Buffer.alloc(12);
  nonce.writeUInt32BE(v.keyId, 0);
  nonce.writeBigUInt64BE(v.sequence, 4);

  const cipher = createCipheriv('aes-256-gcm', v.key, nonce, { authTagLength: 16 });
  cipher.setAAD(header);
  const ciphertext = Buffer.concat([cipher.update(Buffer.from(v.plaintext, 'utf8')), cipher.final()]);
  const tag = cipher.getAuthTag();

  console.log(`# ${v.name}`);
  console.log(`key        ${v.key.toString('hex')}`);
  console.log(`device id  ${v.deviceId}`);
  console.log(`key id     ${v.keyId}`);
  console.log(`sequence   ${v.sequence}`);
  console.log(`plaintext  ${v.plaintext}`);
  console.log(`nonce      ${nonce.toString('hex')}`);
  console.log(`header     ${header.toString('hex')}`);
  console.log(`tag        ${tag.toString('hex')}`);
  console.log(`sealed     ${Buffer.concat([header, ciphertext, tag]).toString('hex')}`);
  console.log();
}
