// Messages between the page and its SEAL worker (seal-worker.ts).

/** What the page keeps in IndexedDB: SEAL's own serializations, uncompressed. */
export interface KeyMaterial {
  readonly secretKey: Uint8Array;
  /** Seeded public key, as registered. */
  readonly publicKey: Uint8Array;
  /** Seeded Galois keys for the model's rotation steps, as registered. */
  readonly rotationKeys: Uint8Array;
}

export type WorkerRequest =
  | { op: "open"; parameterSet: string }
  | { op: "generate"; rotationSteps: number[] }
  | { op: "restore"; keys: KeyMaterial }
  | { op: "encrypt"; blocks: Float64Array[] }
  | { op: "decrypt"; ciphertexts: Uint8Array[]; count: number };

export type WorkerReply =
  | { op: "open"; slots: number }
  | { op: "generate"; keys: KeyMaterial }
  | { op: "restore" }
  | { op: "encrypt"; ciphertexts: Uint8Array[] }
  | { op: "decrypt"; values: Float64Array };

type ReplyOf<R extends WorkerRequest> = Extract<WorkerReply, { op: R["op"] }>;

/** The worker as promises: one call per request, answered in any order. */
export class SealWorker {
  private readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, { resolve: (r: WorkerReply) => void; reject: (e: Error) => void }>();

  constructor(url: string) {
    this.worker = new Worker(url, { type: "module" });
    this.worker.onmessage = (event: MessageEvent<{ id: number; reply?: WorkerReply; error?: string }>) => {
      const { id, reply, error } = event.data;
      const waiting = this.pending.get(id);
      this.pending.delete(id);
      if (error !== undefined || !reply) waiting?.reject(new Error(error ?? "no reply"));
      else waiting?.resolve(reply);
    };
  }

  call<R extends WorkerRequest>(request: R, transfer: Transferable[] = []): Promise<ReplyOf<R>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (r: WorkerReply) => void, reject });
      this.worker.postMessage({ id, request }, transfer);
    });
  }
}
