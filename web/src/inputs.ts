// What the client computes from its ratings before encrypting, and how it ranks what comes
// back: the same formulas as libcryptorec.model.scaled_inputs and CryptoRecClient.recommend.

export interface ModelInputs {
  /** GetModel's ClientInputs, and whether the model's scores are stars (or ranking scores). */
  readonly globalMean: number;
  readonly inputPower: number;
  readonly inputOffset: number;
  readonly ratingWeight: number;
  readonly scaleMin: number;
  readonly scaleMax: number;
  readonly stars: boolean;
}

export interface UserInputs {
  /** (m,) x = (w (r - rbar) + c) / k^alpha on rated items, 0 elsewhere. */
  readonly x: Float64Array;
  /** What is added back to every decrypted value: the user's mean for a stars model, 0 for a
   * ranking model. */
  readonly base: number;
}

/**
 * The (m,) input vector for `ratings` (catalogue position -> rating), computed in float32
 * steps like the model's own code (libcryptorec.model.scaled_inputs) so both clients send the
 * same numbers.
 */
export function userInputs(ratings: Map<number, number>, items: number, m: ModelInputs): UserInputs {
  const f = Math.fround;
  const k = ratings.size;
  let sum = 0;
  for (const r of ratings.values()) sum += f(r);
  const rbar = k ? f(sum / k) : f(m.globalMean);
  const scale = m.inputPower ? f(f(Math.max(k, 1)) ** f(-m.inputPower)) : 1;
  const x = new Float64Array(items);
  for (const [position, r] of ratings) {
    if (position < 0 || position >= items) throw new RangeError(`item position ${position} is outside the catalogue`);
    if (r < m.scaleMin || r > m.scaleMax) throw new RangeError(`ratings must lie in [${m.scaleMin}, ${m.scaleMax}]`);
    let v = f(f(r) - rbar);
    if (m.ratingWeight !== 1) v = f(v * f(m.ratingWeight));
    if (m.inputOffset) v = f(v + f(m.inputOffset));
    x[position] = f(v * scale);
  }
  return { x, base: m.stars ? rbar : 0 };
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

/** A score as shown: predicted stars clamped to the rating scale, a ranking score as it is. */
export function shown(score: number, m: ModelInputs): number {
  return m.stars ? Math.min(Math.max(score, m.scaleMin), m.scaleMax) : score;
}

/**
 * Positions of the `n` best unrated items by shown score, highest first, ties to the lower
 * position (numpy's stable argsort of -score, as the Python client).
 */
export function topN(predictions: Float64Array, rated: Set<number>, n: number, m: ModelInputs): number[] {
  const order = Array.from(predictions.keys()).filter((i) => !rated.has(i));
  order.sort((a, b) => shown(predictions[b], m) - shown(predictions[a], m) || a - b);
  return order.slice(0, n);
}
