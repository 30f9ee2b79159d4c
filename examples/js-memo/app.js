// The memo example in JavaScript: ten concurrent get-or-set callers per key, one computation.
import { getOrSet, get } from 'wasi:keyvalue/cache@0.1.0';
import { poll } from 'wasi:io/poll@0.2.3';

const CALLERS = 10;
const KEYS = [2000, 3000, 4000];
const TTL_MS = 60000;

function nthPrime(n) {
  let found = 0, candidate = 1;
  while (found < n) {
    candidate += 1;
    let prime = true;
    for (let d = 2; d * d <= candidate; d++) if (candidate % d === 0) { prime = false; break; }
    if (prime) found += 1;
  }
  return candidate;
}

function memo(key, n) {
  let computations = 0, waited = 0;
  const values = new Set();
  const pending = new Map(Array.from({ length: CALLERS }, (_, i) => [i, getOrSet(key)]));
  while (pending.size > 0) {
    const indices = [...pending.keys()];
    const pollables = indices.map((i) => pending.get(i).listenToFutureGetOrSetResult());
    const ready = poll(pollables);
    for (const p of pollables) p[Symbol.dispose]();
    for (const r of ready) {
      const i = indices[r];
      const future = pending.get(i);
      pending.delete(i);
      const result = future.futureGetOrSetResultGet();
      future[Symbol.dispose]();
      if (result === undefined || result.tag !== 'ok') throw new Error(`get-or-set failed: ${JSON.stringify(result)}`);
      const entry = result.val;
      if (entry.tag === 'vacant') {
        const vacancy = entry.val;
        const value = new TextEncoder().encode(String(nthPrime(n)));
        computations += 1;
        const outgoing = vacancy.vacancyFill(TTL_MS);
        outgoing.outgoingValueWriteBodySync(value);
        outgoing[Symbol.dispose]();
        vacancy[Symbol.dispose]();
        values.add(new TextDecoder().decode(value));
      } else {
        const incoming = entry.val;
        values.add(new TextDecoder().decode(incoming.incomingValueConsumeSync()));
        waited += 1;
      }
    }
  }
  if (values.size !== 1) throw new Error(`different values: ${[...values]}`);
  console.log(`${key}: ${CALLERS} callers, ${computations} computation, ${waited} waited (${[...values][0]})`);
}

export const run = {
  run() {
    for (const n of KEYS) memo(`nth-prime:${n}`, n);
    const future = get('nth-prime:2000');
    const pollable = future.listenToFutureGetResult();
    pollable.block();
    pollable[Symbol.dispose]();
    const result = future.futureGetResultGet();
    future[Symbol.dispose]();
    console.log(`get nth-prime:2000: ${result?.tag === 'ok' && result.val ? 'hit' : 'miss'}`);
  },
};
