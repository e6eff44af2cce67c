// What the client computes from its ratings before encrypting, and how it ranks what comes
// back: the same formulas as libcryptorec.model.scaled_inputs and CryptoRecClient.recommend.

export interface ModelInputs {
  /** GetModel's ClientInputs. */
  readonly globalMean: number;
  readonly inputPower: number;
  readonly inputOffset: number;
  readonly scaleMin: number;
  readonly scaleMax: number;
}

export interface UserInputs {
  /** (m,) x = (r - rbar + c) / k^alpha on rated items, 0 elsewhere. */
  readonly x: Float64Array;
  /** The user's mean rating, added back to the decrypted values. */
  readonly rbar: number;
}

/**
 * The (m,) input vector and mean for `ratings` (catalogue position -> rating), computed in
 * float32 steps like the model's own code so both clients send the same numbers.
 */
export function userInputs(ratings: Map<number, number>, items: number, m: ModelInputs): UserInputs {
  const f = Math.fround;
  const k = ratings.size;
  let sum = 0;
  for (const r of ratings.values()) sum += f(r);
  const rbar = k ? f(sum / k) : f(m.globalMean);
  const weight = m.inputPower ? f(f(Math.max(k, 1)) ** f(-m.inputPower)) : 1;
  const x = new Float64Array(items);
  for (const [position, r] of ratings) {
    if (position < 0 || position >= items) throw new RangeError(`item position ${position} is outside the catalogue`);
    if (r < m.scaleMin || r > m.scaleMax) throw new RangeError(`ratings must lie in [${m.scaleMin}, ${m.scaleMax}]`);
    x[position] = f(f(f(r) - rbar + f(m.inputOffset)) * weight);
  }
  return { x, rbar };
}

/** Split an (m,) vector into zero-padded blocks of `slots` values: ceil(m / slots) blocks. */
export function blocksOf(v: Float64Array, slots: number): Float64Array[] {
  const out: Float64Array[] = [];
  for (let start = 0; start < v.length; start += slots) {
    const block = new Float64Array(slots);
    block.set(v.subarray(start, Math.min(start + slots, v.length)));
    out.push(block);
  }
  return out;
}

/**
 * Positions of the `n` best unrated items by score clamped to the rating scale, highest
 * first, ties to the lower position (numpy's stable argsort of -score, as the Python client).
 */
export function topN(predictions: Float64Array, rated: Set<number>, n: number, m: ModelInputs): number[] {
  const clamp = (v: number) => Math.min(Math.max(v, m.scaleMin), m.scaleMax);
  const order = Array.from(predictions.keys()).filter((i) => !rated.has(i));
  order.sort((a, b) => clamp(predictions[b]) - clamp(predictions[a]) || a - b);
  return order.slice(0, n);
}
