// Gnuboard's spoken captcha in the page: the same exact matching as audio.py, over the same facts
// (the package's voices.json: per voice set, where to probe and each clip's size, sha256 and probe bytes).
// The mp3 is one set's digit clips end to end, so it is read by walking it clip by clip: the probe bytes
// name the only clip that can start at an offset and its sha256 proves it. Pure and synchronous (our own
// sha256: crypto.subtle is async and missing outside secure contexts); no DOM, so Node tests it as is.

const DIGITS = '0123456789';
const HOW_TO_ADD =
  'if the site uses its own voice, learn it from its clips (plugin/kcaptcha/mp3/<set>/0.mp3 ... 9.mp3) ' +
  'with: kcaptcha voices add DIR --name NAME';

/** Raised when the bytes are not exactly one known voice set's clips; says where matching stopped. */
export class AudioError extends Error {
  constructor(message, { offset = null, digits = '', voice = null } = {}) {
    super(message);
    this.name = 'AudioError';
    this.offset = offset;
    this.digits = digits;
    this.voice = voice;
  }
}

// -- sha256 (FIPS 180-4), over a Uint8Array, synchronous -----------------------------------------------

const PRIMES = [];
for (let k = 2; PRIMES.length < 64; k++) if (PRIMES.every((p) => k % p !== 0)) PRIMES.push(k);
const frac32 = (x) => ((x - Math.floor(x)) * 2 ** 32) >>> 0; // first 32 bits of the fractional part
// Int32Array, not Uint32Array: V8 keeps int32 arithmetic in registers, while uint32 values above 2^31
// become doubles (1.5x slower in Node 20).
const K = Int32Array.from(PRIMES, (p) => frac32(Math.cbrt(p)));
const H0 = Int32Array.from(PRIMES.slice(0, 8), (p) => frac32(Math.sqrt(p)));
const W = new Int32Array(64);

function compress(H, m, at) {
  for (let i = 0, j = at; i < 16; i++, j += 4) W[i] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15];
    const y = W[i - 2];
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = H[0];
  let b = H[1];
  let c = H[2];
  let d = H[3];
  let e = H[4];
  let f = H[5];
  let g = H[6];
  let h = H[7];
  for (let i = 0; i < 64; i++) {
    const s1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + s1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const s0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (s0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  H[0] += a;
  H[1] += b;
  H[2] += c;
  H[3] += d;
  H[4] += e;
  H[5] += f;
  H[6] += g;
  H[7] += h;
}

/** The sha256 of `bytes` (a Uint8Array) as 64 lowercase hex digits. */
export function sha256(bytes) {
  const H = H0.slice();
  const whole = bytes.length - (bytes.length % 64);
  for (let at = 0; at < whole; at += 64) compress(H, bytes, at);
  const rest = bytes.length - whole; // the last partial block, then 0x80, zeros and the length in bits
  const tail = new Uint8Array(rest < 56 ? 64 : 128);
  tail.set(bytes.subarray(whole));
  tail[rest] = 0x80;
  const tailView = new DataView(tail.buffer);
  tailView.setUint32(tail.length - 8, Math.floor(bytes.length / 2 ** 29));
  tailView.setUint32(tail.length - 4, (bytes.length * 8) >>> 0);
  for (let at = 0; at < tail.length; at += 64) compress(H, tail, at);
  let hex = '';
  for (const word of H) hex += (word >>> 0).toString(16).padStart(8, '0');
  return hex;
}

/**
 * Hash 64 KB of zeros so the engine compiles sha256 before the first real file: call it once the page is
 * idle. In Node 20 the first 80 KB mp3 then takes about 1 ms instead of 20-40 ms.
 */
export function warmUp() {
  sha256(new Uint8Array(65536));
}

// -- voice sets --------------------------------------------------------------------------------------

const hex = (bytes, from, to) => {
  let s = '';
  for (let i = from; i < to; i++) s += (bytes[i] < 16 ? '0' : '') + bytes[i].toString(16);
  return s;
};
const prepared = new WeakMap(); // facts document -> [{name, probeAt, probeWidth, index, shortest}]

function voiceSets(facts) {
  if (!prepared.has(facts)) {
    const sets = Object.entries(facts.voices).map(([name, v]) => {
      const clips = DIGITS.split('').map((digit) => ({ digit, ...v.clips[digit] }));
      return {
        name,
        probeAt: v.probe_at,
        probeWidth: v.probe_width,
        index: new Map(clips.map((c) => [c.probe, c])),
        shortest: Math.min(...clips.map((c) => c.size)),
      };
    });
    prepared.set(facts, sets);
  }
  return prepared.get(facts);
}

/** Cheap sniff: an ID3v2 tag or an MPEG audio frame header at byte 0 (as audio.py's looks_like_mp3). */
export function looksLikeMp3(bytes) {
  if (bytes.length >= 3 && bytes[0] === 0x49 && bytes[1] === 0x44 && bytes[2] === 0x33) return true;
  return bytes.length >= 2 && bytes[0] === 0xff && (bytes[1] & 0xe0) === 0xe0 &&
    (bytes[1] & 0x18) !== 0x08 && (bytes[1] & 0x06) !== 0;
}

const probe = (set, bytes, pos) =>
  set.index.get(hex(bytes, pos + set.probeAt, Math.min(bytes.length, pos + set.probeAt + set.probeWidth)));
const commas = (x) => x.toLocaleString('en-US');

function walk(set, bytes) {
  const digits = [];
  const stop = (pos, problem, clip = null) => ({ set, digits: digits.join(''), offset: pos, problem, clip });
  let pos = 0;
  while (pos < bytes.length) {
    const clip = probe(set, bytes, pos);
    if (clip === undefined) {
      if (bytes.length - pos < set.probeAt + set.probeWidth) {
        return stop(pos, `the last ${commas(bytes.length - pos)} bytes are too few for any of its clips ` +
          `(${commas(set.shortest)} bytes or more): truncated, or bytes added at the end`);
      }
      return stop(pos, `no clip of this set starts there; ${HOW_TO_ADD}`);
    }
    const end = pos + clip.size;
    if (end > bytes.length) {
      return stop(pos, `the file ends ${commas(end - bytes.length)} bytes before the end of what starts as clip ` +
        `${clip.digit} (${commas(clip.size)} bytes): a truncated download?`, clip);
    }
    if (sha256(bytes.subarray(pos, end)) !== clip.sha256) {
      return stop(pos, `the next ${commas(clip.size)} bytes start like clip ${clip.digit} but differ from it: ` +
        'altered or re-encoded', clip);
    }
    digits.push(clip.digit);
    pos = end;
  }
  return stop(pos, null);
}

/**
 * The digits a Gnuboard mp3 speaks and its voice set: `{text, voice}`. `bytes` is a Uint8Array, `facts`
 * the parsed voices.json. Throws AudioError unless exactly one set explains every byte.
 */
export function readAudio(bytes, facts) {
  if (bytes.length === 0) throw new AudioError('the audio file is empty (0 bytes)', { offset: 0 });
  const sets = voiceSets(facts);
  const walks = sets.map((set) => walk(set, bytes));
  const whole = walks.filter((w) => w.problem === null);
  if (whole.length === 1) return { text: whole[0].digits, voice: whole[0].set.name };
  if (whole.length > 1) {
    const readings = whole.map((w) => `'${w.set.name}' reads ${w.digits}`).join(', ');
    throw new AudioError(`the audio is an exact concatenation of more than one voice set (${readings}); ` +
      'remove the learned set that copies another', { offset: 0 });
  }
  // The set that explains the most; at equal length, one whose clip nearly matched.
  const best = walks.reduce((a, b) =>
    b.offset > a.offset || (b.offset === a.offset && b.clip && !a.clip) ? b : a);
  if (best.offset === 0 && !best.clip) {
    const start = hex(bytes, 0, Math.min(4, bytes.length)).replace(/(..)(?!$)/g, '$1 ');
    const kind = looksLikeMp3(bytes) ? 'an mp3' : `not an mp3: it starts with ${start}`;
    throw new AudioError(`the audio (${commas(bytes.length)} bytes, ${kind}) does not start with a clip of any known ` +
      `voice set (${sets.map((s) => s.name).join(', ')}): another voice, a re-encoded recording or not ` +
      `Gnuboard's; ${HOW_TO_ADD}`, { offset: 0 });
  }
  const done = best.digits ? ` read ${best.digits} (bytes 0-${commas(best.offset - 1)}), then` : '';
  let problem = best.problem;
  if (!best.clip) { // a clip of another set there means two voices in one file
    for (const other of sets) {
      const clip = other === best.set ? undefined : probe(other, bytes, best.offset);
      if (clip) {
        problem = `what starts there is clip ${clip.digit} of voice '${other.name}': the file mixes two voice ` +
          'sets, which Gnuboard never does';
        break;
      }
    }
  }
  throw new AudioError(`voice '${best.set.name}'${done} at byte ${commas(best.offset)}: ${problem}`,
    { offset: best.offset, digits: best.digits, voice: best.set.name });
}
