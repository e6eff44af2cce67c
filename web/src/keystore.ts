// The page's keys in IndexedDB, one record per (server origin, parameter set, rotation steps):
// the secret key never leaves this browser, and a reload finds the keys and their key id.

import type { KeyMaterial } from "./worker-protocol";

export interface StoredKeys extends KeyMaterial {
  /** What the keys are for: parameter set and rotation steps. */
  readonly purpose: string;
  /** The key service's id for the registered public part. */
  keyId: string;
  readonly created: number;
}

const DB = "cryptorec";
const STORE = "keys";

function database(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: "purpose" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run<T>(mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await database();
  try {
    return await new Promise<T>((resolve, reject) => {
      const request = work(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

export function purposeOf(parameterSet: string, rotationSteps: number[]): string {
  return `${parameterSet}/${rotationSteps.join(",")}`;
}

export const loadKeys = (purpose: string) => run<StoredKeys | undefined>("readonly", (s) => s.get(purpose));
export const saveKeys = (keys: StoredKeys) => run("readwrite", (s) => s.put(keys));
export const allKeys = () => run<StoredKeys[]>("readonly", (s) => s.getAll());
/** Forget every key this page holds (new ones are made at the next request). */
export const forgetKeys = () => run("readwrite", (s) => s.clear());
