// The page's keys and ratings in IndexedDB, keys one record per (parameter set, rotation
// steps): the secret key and the ratings never leave this browser, and a reload finds them.

import type { KeyMaterial } from "./worker-protocol";

export interface StoredKeys extends KeyMaterial {
  /** What the keys are for: parameter set and rotation steps. */
  readonly purpose: string;
  /** The key service's id for the registered public part. */
  keyId: string;
  readonly created: number;
}

const DB = "cryptorec";
const KEYS = "keys";
const RATINGS = "ratings";

function database(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    // Version 2 added the ratings beside version 1's keys.
    const request = indexedDB.open(DB, 2);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(KEYS)) db.createObjectStore(KEYS, { keyPath: "purpose" });
      if (!db.objectStoreNames.contains(RATINGS)) db.createObjectStore(RATINGS);
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run<T>(
  mode: IDBTransactionMode, work: (store: IDBObjectStore) => IDBRequest<T>, store = KEYS,
): Promise<T> {
  const db = await database();
  try {
    return await new Promise<T>((resolve, reject) => {
      const request = work(db.transaction(store, mode).objectStore(store));
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

/** The ratings this page kept (item id -> stars), empty if none. */
export async function loadRatings(): Promise<Map<number, number>> {
  const kept = await run<[number, number][] | undefined>("readonly", (s) => s.get("all"), RATINGS);
  return new Map(kept ?? []);
}

/** Keep `ratings` (item id -> stars) for the next visit. */
export const saveRatings = (ratings: Map<number, number>) =>
  run("readwrite", (s) => s.put([...ratings], "all"), RATINGS);
