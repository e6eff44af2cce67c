// The checksum each prediction chunk carries (services/rpc/checksum.py): sha256 over
// ">iii"(chunk_index, first_item, count), the model version, and each ciphertext prefixed by
// its length as ">Q".

export async function chunkChecksum(
  chunkIndex: number, firstItem: number, count: number, modelVersion: string, ciphertexts: Uint8Array[],
): Promise<Uint8Array> {
  const version = new TextEncoder().encode(modelVersion);
  const total = 12 + version.length + ciphertexts.reduce((a, c) => a + 8 + c.length, 0);
  const buf = new Uint8Array(total);
  const view = new DataView(buf.buffer);
  view.setInt32(0, chunkIndex);
  view.setInt32(4, firstItem);
  view.setInt32(8, count);
  buf.set(version, 12);
  let at = 12 + version.length;
  for (const c of ciphertexts) {
    view.setBigUint64(at, BigInt(c.length));
    buf.set(c, at + 8);
    at += 8 + c.length;
  }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf as Uint8Array<ArrayBuffer>));
}

/** sha256 of `data`. */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
