// Private recommendations from the page: the model's description, keys made and registered
// once, the ratings encrypted in the worker, the query sent whole over gRPC-web, each reply
// chunk verified and decrypted as it arrives, the top-N ranked here. The server sees public
// keys and ciphertexts only.

import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ModelService, type GetModelResponse, type SchemeParameters } from "./gen/cryptorec/v1/model_service_pb";
import { KeyService } from "./gen/cryptorec/v1/key_service_pb";
import { EvaluatorService } from "./gen/cryptorec/v1/evaluator_service_pb";
import { ModelKind, Mode, Scheme } from "./gen/cryptorec/v1/types_pb";
import { chunkChecksum, equalBytes, sha256 } from "./checksum";
import { reasonOf } from "./errors";
import { blocksOf, shown, topN, userInputs, type ModelInputs } from "./inputs";
import { loadKeys, purposeOf, saveKeys, type StoredKeys } from "./keystore";
import type { SealWorker } from "./worker-protocol";

export interface Recommendation {
  readonly itemId: number;
  readonly title: string;
  /** Predicted stars from a stars model; a ranking score (it only orders items) otherwise. */
  readonly score: number;
}

/** What one request cost: seconds per phase and bytes per direction. */
export interface Costs {
  seconds: Record<string, number>;
  bytes: Record<string, number>;
  /** What the server received, blob by blob: what it is and its size (never contents). */
  sent: { name: string; kind: "public key" | "ciphertext"; size: number }[];
}

export interface Result {
  readonly modelVersion: string;
  /** Whether the scores are predicted stars (else ranking scores). */
  readonly stars: boolean;
  readonly keyId: string;
  readonly recommendations: Recommendation[];
  /** (m,) unclamped scores in catalogue order (a stars model's with the user's mean added). */
  readonly predictions: Float64Array;
  readonly costs: Costs;
}

export class ReplyError extends Error {}

/** Whether a model's scores are predicted stars (servers older than API 1.4.0 send no kind:
 * their models are stars models). */
export function isStars(info: GetModelResponse): boolean {
  return info.kind !== ModelKind.RANKING;
}

function requestIds(): Interceptor {
  return (next) => async (req) => {
    req.header.set("x-request-id", crypto.randomUUID().replaceAll("-", ""));
    return next(req);
  };
}

function bearer(token: () => string): Interceptor {
  return (next) => async (req) => {
    const t = token();
    if (t) req.header.set("authorization", `Bearer ${t}`);
    return next(req);
  };
}

const now = () => performance.now() / 1000;

export class PrivateRecommender {
  private readonly models: Client<typeof ModelService>;
  private readonly keys: Client<typeof KeyService>;
  private readonly evaluator: Client<typeof EvaluatorService>;
  private modelInfo?: Promise<GetModelResponse>;
  private opened?: string;
  /** Key sets known registered in this page's life (checked once, then trusted). */
  private readonly registeredHere = new Set<string>();

  /** `baseUrl`: where the gRPC-web front listens; `token`: the bearer token, if needed. */
  constructor(baseUrl: string, private readonly worker: SealWorker, token: () => string = () => "") {
    const transport = createGrpcWebTransport({
      baseUrl,
      useBinaryFormat: true,
      interceptors: [requestIds(), bearer(token)],
    });
    this.models = createClient(ModelService, transport);
    this.keys = createClient(KeyService, transport);
    this.evaluator = createClient(EvaluatorService, transport);
  }

  /** The newest ranking model, or the current model of a deployment without one (GetModel,
   * once per page once it succeeds). */
  model(): Promise<GetModelResponse> {
    this.modelInfo ??= this.models.getModel({ kind: ModelKind.RANKING }).catch((error: unknown) => {
      if (error instanceof ConnectError && error.code === Code.NotFound) return this.models.getModel({});
      throw error;
    }).catch((error: unknown) => {
      this.modelInfo = undefined; // a failure is not kept: the next call asks again
      throw error;
    });
    return this.modelInfo;
  }

  private static fastCkks(info: GetModelResponse): SchemeParameters {
    const spec = info.schemes.find((s) => s.scheme === Scheme.CKKS && s.mode === Mode.FAST);
    if (!spec) throw new Error(`model ${info.version} offers no CKKS fast mode`);
    return spec;
  }

  /** The worker ready with keys for `spec`: stored ones if still registered, else new ones. */
  private async ensureKeys(spec: SchemeParameters, costs: Costs): Promise<StoredKeys> {
    if (this.opened !== spec.parameterSet) {
      const t0 = now();
      await this.worker.call({ op: "open", parameterSet: spec.parameterSet });
      costs.seconds["load SEAL"] = now() - t0; // WebAssembly start and the SEAL context
      this.opened = spec.parameterSet;
    }
    const purpose = purposeOf(spec.parameterSet, spec.rotationSteps);
    let keys = await loadKeys(purpose);
    if (keys) {
      await this.worker.call({ op: "restore", keys });
      if (this.registeredHere.has(keys.keyId) || (await this.registered(keys.keyId))) {
        this.registeredHere.add(keys.keyId);
        return keys;
      }
    } else {
      const t0 = now();
      const made = (await this.worker.call({ op: "generate", rotationSteps: [...spec.rotationSteps] })).keys;
      costs.seconds.keygen = now() - t0;
      keys = { ...made, purpose, keyId: "", created: Date.now() };
    }
    const t0 = now();
    keys.keyId = await this.register(spec, keys, costs);
    costs.seconds.register = now() - t0;
    await saveKeys(keys);
    this.registeredHere.add(keys.keyId);
    return keys;
  }

  private async registered(keyId: string): Promise<boolean> {
    try {
      await this.keys.getKeyInfo({ keyId });
      return true;
    } catch {
      return false; // expired or unknown: registering the same public keys gives the same id
    }
  }

  private async register(spec: SchemeParameters, keys: StoredKeys, costs: Costs): Promise<string> {
    const blobs: [string, Uint8Array][] = [
      ["public_key", keys.publicKey],
      ["rotation_keys", keys.rotationKeys],
    ];
    const joined = new Uint8Array(blobs.reduce((a, [, b]) => a + b.length, 0));
    let at = 0;
    for (const [, b] of blobs) {
      joined.set(b, at);
      at += b.length;
    }
    const header = {
      scheme: Scheme.CKKS,
      mode: Mode.FAST,
      parameterSet: spec.parameterSet,
      rotationSteps: spec.rotationSteps,
      blobs: await Promise.all(
        blobs.map(async ([name, b]) => ({ name, size: BigInt(b.length), sha256: await sha256(b) })),
      ),
    };
    const reply = await this.keys.registerKeysWhole({ header, keys: joined });
    costs.bytes.keys = joined.length;
    costs.sent.push(...blobs.map(([name, b]) => ({ name, kind: "public key" as const, size: b.length })));
    return reply.keyId;
  }

  /** Top-`n` unrated items for `ratings` (item id -> rating), computed on ciphertexts. */
  async recommend(ratings: Map<number, number>, n = 10): Promise<Result> {
    try {
      return await this.recommendOnce(ratings, n);
    } catch (error) {
      // The key set expired on the server since it was checked: register it again, once.
      if (!(reasonOf(error) === "KEY_NOT_FOUND" && this.registeredHere.size)) throw error;
      this.registeredHere.clear();
      return this.recommendOnce(ratings, n);
    }
  }

  private async recommendOnce(ratings: Map<number, number>, n: number): Promise<Result> {
    const costs: Costs = { seconds: {}, bytes: {}, sent: [] };
    const started = now();
    const info = await this.model(); // fetched when the page loaded
    const spec = PrivateRecommender.fastCkks(info);
    const keys = await this.ensureKeys(spec, costs);

    const items = info.catalogue.length;
    const position = new Map(info.catalogue.map((c, i) => [Number(c.itemId), i]));
    const byPosition = new Map<number, number>();
    for (const [item, r] of ratings) {
      const p = position.get(item);
      if (p !== undefined) byPosition.set(p, r);
    }
    if (!byPosition.size) throw new Error("none of the rated items is in the model's catalogue");
    const m = info.inputs!;
    const stars = isStars(info);
    const inputs: ModelInputs = {
      globalMean: m.globalMean, inputPower: m.inputPower, inputOffset: m.inputOffset,
      // Servers older than API 1.4.0 send no kind and no weight: their models are stars, w = 1.
      ratingWeight: info.kind === ModelKind.UNSPECIFIED ? 1 : m.ratingWeight,
      scaleMin: m.scaleMin, scaleMax: m.scaleMax, stars,
    };
    const { x, base } = userInputs(byPosition, items, inputs);

    let t0 = now();
    const blocks = blocksOf(x, spec.slots);
    const { ciphertexts } = await this.worker.call({ op: "encrypt", blocks }, blocks.map((b) => b.buffer));
    costs.seconds.encrypt = now() - t0;
    costs.bytes.query = ciphertexts.reduce((a, c) => a + c.length, 0);
    costs.sent.push(...ciphertexts.map((c, i) => ({ name: `ratings, block ${i}`, kind: "ciphertext" as const, size: c.length })));

    t0 = now();
    const { values, received, decryptSeconds } = await this.evaluate(info, keys.keyId, ciphertexts);
    costs.seconds.evaluate = now() - t0 - decryptSeconds;
    costs.seconds.decrypt = decryptSeconds;
    costs.bytes.reply = received;

    const predictions = values.map((v) => v + base);
    const order = topN(predictions, new Set(byPosition.keys()), n, inputs);
    const recommendations = order.map((i) => ({
      itemId: Number(info.catalogue[i].itemId), title: info.catalogue[i].title, score: shown(predictions[i], inputs),
    }));
    costs.seconds.total = now() - started;
    return { modelVersion: info.version, stars, keyId: keys.keyId, recommendations, predictions, costs };
  }

  /** Send the query whole; check and decrypt each reply chunk as it arrives. */
  private async evaluate(
    info: GetModelResponse, keyId: string, ciphertexts: Uint8Array[],
  ): Promise<{ values: Float64Array; received: number; decryptSeconds: number }> {
    const version = info.version;
    const items = info.catalogue.length;
    const header = {
      modelVersion: version, keyId, scheme: Scheme.CKKS, mode: Mode.FAST,
      ciphertextCount: ciphertexts.length, inputOffset: info.inputs!.inputOffset,
      // The kind read from GetModel: a ranking model refuses a query that does not name it.
      modelKind: info.kind,
    };
    const values = new Float64Array(items);
    const covered = new Uint8Array(items);
    let expected = 0, total: number | undefined, received = 0, decryptSeconds = 0;
    for await (const r of this.evaluator.predictWhole({ header, ciphertexts })) {
      if (r.chunkIndex !== expected) throw new ReplyError(`chunk ${r.chunkIndex} arrived where ${expected} was due`);
      if (r.modelVersion !== version) throw new ReplyError(`chunk from model ${r.modelVersion}, expected ${version}`);
      total ??= r.totalChunks;
      const end = r.firstItem + r.count;
      if (r.totalChunks !== total || !(0 <= r.firstItem && r.firstItem < end && end <= items)) {
        throw new ReplyError("chunks do not tile the catalogue");
      }
      if (covered.subarray(r.firstItem, end).some((c) => c)) throw new ReplyError(`chunk ${r.chunkIndex} repeats items`);
      const sum = await chunkChecksum(r.chunkIndex, r.firstItem, r.count, r.modelVersion, r.ciphertexts);
      if (!equalBytes(sum, r.checksum)) throw new ReplyError(`chunk ${r.chunkIndex}: checksum mismatch`);
      const t0 = now();
      const part = await this.worker.call({ op: "decrypt", ciphertexts: r.ciphertexts, count: r.count });
      decryptSeconds += now() - t0;
      values.set(part.values, r.firstItem);
      covered.fill(1, r.firstItem, end);
      received += r.ciphertexts.reduce((a, c) => a + c.length, 0);
      expected += 1;
    }
    if (total === undefined || expected !== total || covered.some((c) => !c)) {
      throw new ReplyError(`reply incomplete: ${expected} of ${total} chunks`);
    }
    return { values, received, decryptSeconds };
  }
}
