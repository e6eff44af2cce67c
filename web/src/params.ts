// The SEAL parameter sets the page can encrypt for, by the names GetModel publishes. Like the
// servers, the page never takes a context from the network: it builds one from this
// allow-list (libcryptorec/he/params.py; tests/test_web.py checks the two agree).

export interface CkksParameterSet {
  /** Polynomial modulus degree; n/2 slots. */
  readonly n: number;
  /** Bit sizes of q0, q1 and the special prime (SEAL's CoeffModulus.Create). */
  readonly primes: readonly number[];
  /** log2 of the scale the inputs are encoded at. */
  readonly inputBits: number;
}

export const CKKS_PARAMETER_SETS: Readonly<Record<string, CkksParameterSet>> = {
  "ckks-8192-fast": { n: 8192, primes: [60, 40, 60], inputBits: 40 },
};

// HomomorphicEncryption.org security standard, Table 1 (128-bit, ternary secrets): the largest
// total modulus bits per degree. Checked again here so an edited table cannot weaken keys.
const MAX_LOG_Q_128: Readonly<Record<number, number>> = {
  1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881,
};

/** The parameter set called `name`, refused unless it is inside the 128-bit table. */
export function ckksParameters(name: string): CkksParameterSet {
  const p = CKKS_PARAMETER_SETS[name];
  if (!p) throw new Error(`this page cannot encrypt for parameter set '${name}'`);
  const total = p.primes.reduce((a, b) => a + b, 0);
  if (!(p.n in MAX_LOG_Q_128) || total > MAX_LOG_Q_128[p.n]) {
    throw new Error(`${name}: ${total} modulus bits are outside the 128-bit table for n=${p.n}`);
  }
  return p;
}
