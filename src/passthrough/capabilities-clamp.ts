import { lengthDelimited, readVarint, tag, wireFields, writeVarint } from '../reapi/wire';

const CACHE_CAPABILITIES = 1; // ServerCapabilities.cache_capabilities
const MAX_BATCH_TOTAL_SIZE_BYTES = 4; // CacheCapabilities.max_batch_total_size_bytes

/**
 * Rewrites a ServerCapabilities message so max_batch_total_size_bytes never
 * exceeds what the proxy accepts (clients size their batches by it; the upstream
 * may allow more, or 0 = unlimited). Every other byte is copied as it is.
 * Returns the input unchanged when no edit is needed.
 */
export function clampMaxBatchSize(message: Buffer, limit: number): Buffer {
  const parts: Buffer[] = [];
  let changed = false;
  let sawCache = false;
  for (const f of wireFields(message)) {
    if (f.field === CACHE_CAPABILITIES && f.wireType === 2) {
      sawCache = true;
      const inner = message.subarray(f.valueStart, f.end);
      const edited = clampInner(inner, limit);
      if (edited !== inner) {
        changed = true;
        parts.push(lengthDelimited(CACHE_CAPABILITIES, edited));
        continue;
      }
    }
    parts.push(message.subarray(f.start, f.end));
  }
  // No cache capabilities at all: the server offers no CAS; nothing to clamp.
  if (!changed || !sawCache) return message;
  return Buffer.concat(parts);
}

function clampInner(inner: Buffer, limit: number): Buffer {
  let current = 0;
  const kept: Buffer[] = [];
  for (const f of wireFields(inner)) {
    if (f.field === MAX_BATCH_TOTAL_SIZE_BYTES && f.wireType === 0) {
      current = readVarint(inner, f.valueStart).value;
      continue;
    }
    kept.push(inner.subarray(f.start, f.end));
  }
  if (current > 0 && current <= limit) return inner;
  kept.push(tag(MAX_BATCH_TOTAL_SIZE_BYTES, 0), writeVarint(limit));
  return Buffer.concat(kept);
}
