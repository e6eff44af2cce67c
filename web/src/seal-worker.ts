// The page's cryptography, in a Web Worker so the page stays responsive: SEAL (node-seal 6,
// Microsoft SEAL 4.1 in WebAssembly) for the CKKS parameter set GetModel names. The secret key
// is made here, kept here and handed to the page only to be stored in IndexedDB; nothing in
// this file talks to the network.
//
// Uploads are seeded: keys from KeyGenerator's *Serializable methods and ciphertexts from
// secret-key encryption carry a 64-byte seed in place of their random half, which the server
// expands when it loads them. That halves the key upload and the query.

import SEAL from "node-seal/throws_wasm_worker_es";
import type { SEALLibrary } from "node-seal/implementation/seal";
import type { Context } from "node-seal/implementation/context";
import type { CKKSEncoder } from "node-seal/implementation/ckks-encoder";
import type { Encryptor } from "node-seal/implementation/encryptor";
import type { Decryptor } from "node-seal/implementation/decryptor";
import type { SecretKey } from "node-seal/implementation/secret-key";
import type { WorkerRequest, WorkerReply, KeyMaterial } from "./worker-protocol";
import { ckksParameters } from "./params";

interface Session {
  seal: SEALLibrary;
  context: Context;
  encoder: CKKSEncoder;
  scale: number;
  slots: number;
  secret?: SecretKey;
  encryptor?: Encryptor;
  decryptor?: Decryptor;
}

let session: Session | undefined;
let sealLibrary: Promise<SEALLibrary> | undefined;

async function open(parameterSet: string): Promise<Session> {
  const p = ckksParameters(parameterSet);
  sealLibrary ??= SEAL();
  const seal = await sealLibrary;
  const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
  parms.setPolyModulusDegree(p.n);
  parms.setCoeffModulus(seal.CoeffModulus.Create(p.n, Int32Array.from(p.primes)));
  const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
  if (!context.parametersSet()) throw new Error(`SEAL refused the parameters of ${parameterSet}`);
  return { seal, context, encoder: seal.CKKSEncoder(context), scale: 2 ** p.inputBits, slots: p.n / 2 };
}

function useSecret(s: Session, secret: SecretKey, publicKeyBytes: Uint8Array): void {
  const publicKey = s.seal.PublicKey();
  publicKey.loadArray(s.context, publicKeyBytes);
  s.secret = secret;
  s.encryptor = s.seal.Encryptor(s.context, publicKey, secret);
  s.decryptor = s.seal.Decryptor(s.context, secret);
}

/** New keys: the secret key and the seeded public and Galois keys for `steps`. */
function generate(s: Session, steps: number[]): KeyMaterial {
  const none = s.seal.ComprModeType.none; // the server refuses compressed blobs
  const keygen = s.seal.KeyGenerator(s.context);
  const secret = keygen.secretKey();
  const publicKey = keygen.createPublicKeySerializable().saveArray(none);
  const rotationKeys = keygen.createGaloisKeysSerializable(Int32Array.from(steps)).saveArray(none);
  useSecret(s, secret, publicKey);
  return { secretKey: secret.saveArray(none), publicKey, rotationKeys };
}

function restore(s: Session, keys: KeyMaterial): void {
  const secret = s.seal.SecretKey();
  secret.loadArray(s.context, keys.secretKey);
  useSecret(s, secret, keys.publicKey);
}

/** Each block of `slots` values encrypted under the secret key, seeded, serialized. */
function encrypt(s: Session, blocks: Float64Array[]): Uint8Array[] {
  if (!s.encryptor) throw new Error("no keys loaded");
  return blocks.map((block) => {
    const plain = s.encoder.encode(block, s.scale) as ReturnType<SEALLibrary["PlainText"]>;
    const blob = s.encryptor!.encryptSymmetricSerializable(plain).saveArray(s.seal.ComprModeType.none);
    plain.delete();
    return blob;
  });
}

/** The first `count` values of the reply ciphertexts, in order. */
function decrypt(s: Session, ciphertexts: Uint8Array[], count: number): Float64Array {
  if (!s.decryptor) throw new Error("no keys loaded");
  const out = new Float64Array(count);
  let at = 0;
  for (const blob of ciphertexts) {
    const ct = s.seal.CipherText();
    ct.loadArray(s.context, blob);
    const plain = s.decryptor.decrypt(ct) as ReturnType<SEALLibrary["PlainText"]>;
    const values = s.encoder.decode(plain) as Float64Array;
    const take = Math.min(values.length, count - at);
    out.set(values.subarray(0, take), at);
    at += take;
    ct.delete();
    plain.delete();
  }
  if (at !== count) throw new Error(`reply held ${at} values, expected ${count}`);
  return out;
}

async function handle(request: WorkerRequest): Promise<WorkerReply> {
  switch (request.op) {
    case "open":
      session = await open(request.parameterSet);
      return { op: "open", slots: session.slots };
    case "generate":
      return { op: "generate", keys: generate(need(), request.rotationSteps) };
    case "restore":
      restore(need(), request.keys);
      return { op: "restore" };
    case "encrypt":
      return { op: "encrypt", ciphertexts: encrypt(need(), request.blocks) };
    case "decrypt":
      return { op: "decrypt", values: decrypt(need(), request.ciphertexts, request.count) };
  }
}

function need(): Session {
  if (!session) throw new Error("open a parameter set first");
  return session;
}

/** A readable message: SEAL's C++ exceptions reach JavaScript as bare numbers. */
async function describe(error: unknown): Promise<string> {
  if (error instanceof Error) return error.message;
  if (typeof error === "number" && sealLibrary) {
    return (await sealLibrary).Exception.safe(error as never).message;
  }
  return String(error);
}

self.onmessage = async (event: MessageEvent<{ id: number; request: WorkerRequest }>) => {
  const { id, request } = event.data;
  try {
    const reply = await handle(request);
    const transfer: Transferable[] = [];
    if (reply.op === "encrypt") transfer.push(...reply.ciphertexts.map((c) => c.buffer));
    if (reply.op === "decrypt") transfer.push(reply.values.buffer);
    (self as unknown as Worker).postMessage({ id, reply }, transfer);
  } catch (error) {
    (self as unknown as Worker).postMessage({ id, error: await describe(error) });
  }
};
