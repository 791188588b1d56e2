/**
 * Just enough of the protobuf wire format to edit one field of a message while
 * copying every other byte as it is (unknown fields survive, nothing is
 * re-encoded). Pure.
 */
export interface WireField {
  field: number;
  wireType: number;
  /** Offset of the tag. */
  start: number;
  /** Offset of the value (for LEN: of the payload, after the length). */
  valueStart: number;
  end: number;
}

export function readVarint(buf: Uint8Array, pos: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return { value, next: pos };
    shift += 7;
  }
  throw new Error('varint too long');
}

export function writeVarint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) b |= 0x80;
    bytes.push(b);
  } while (v > 0);
  return Buffer.from(bytes);
}

export function* wireFields(buf: Uint8Array): Generator<WireField> {
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const tag = readVarint(buf, pos);
    pos = tag.next;
    const field = Math.floor(tag.value / 8);
    const wireType = tag.value & 7;
    let valueStart = pos;
    switch (wireType) {
      case 0:
        pos = readVarint(buf, pos).next;
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const len = readVarint(buf, pos);
        valueStart = len.next;
        pos = len.next + len.value;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
    if (pos > buf.length) throw new Error('truncated field');
    yield { field, wireType, start, valueStart, end: pos };
  }
}

export function tag(field: number, wireType: number): Buffer {
  return writeVarint(field * 8 + wireType);
}

export function lengthDelimited(field: number, payload: Uint8Array): Buffer {
  return Buffer.concat([tag(field, 2), writeVarint(payload.length), payload]);
}
