import { isUtf8 } from 'node:buffer';
import protobuf from 'protobufjs';

/**
 * A strict check of protobuf wire form against a message type, run before
 * protobufjs decodes client data. protobufjs decodes leniently: a string whose
 * length runs past the end is cut short, a known field with the wrong wire
 * type is read as if it had the right one, invalid UTF-8 becomes U+FFFD. The
 * proxy would then scan something other than what the upstream (Go, Java,
 * Rust: all strict) and the executor see. This check refuses what a strict
 * decoder refuses: truncation, unknown wire types and groups, a known field
 * with the wrong wire type, invalid UTF-8 in a string field, and nesting
 * deeper than `maxDepth`. Unknown fields pass (they are forwarded untouched).
 * Pure; linear in the input; iterative over fields, recursive only per nested
 * message (bounded by maxDepth).
 */

export const DEFAULT_MAX_DEPTH = 32;

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

const VARINT_TYPES = new Set(['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'bool']);
const I64_TYPES = new Set(['fixed64', 'sfixed64', 'double']);
const I32_TYPES = new Set(['fixed32', 'sfixed32', 'float']);

class WireProblem extends Error {}

/** Returns what is wrong with `bytes` as a `type` message, or undefined when a strict decoder would accept it. */
export function wireFormProblem(
  type: protobuf.Type,
  bytes: Uint8Array,
  maxDepth = DEFAULT_MAX_DEPTH,
): string | undefined {
  try {
    check(type, bytes, 0, bytes.length, maxDepth, type.name);
    return undefined;
  } catch (err) {
    if (err instanceof WireProblem) return err.message;
    throw err;
  }
}

/** Decodes `bytes` as `type` after the strict check; throws an Error saying what is wrong. */
export function decodeStrict(type: protobuf.Type, bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): protobuf.Message {
  const problem = wireFormProblem(type, bytes, maxDepth);
  if (problem !== undefined) throw new Error(problem);
  return type.decode(bytes);
}

function check(
  type: protobuf.Type,
  buf: Uint8Array,
  start: number,
  end: number,
  depthLeft: number,
  where: string,
): void {
  let pos = start;
  while (pos < end) {
    const tagAt = pos;
    const tag = varint(buf, pos, end, where);
    pos = tag.next;
    const number = Math.floor(tag.value / 8);
    const wire = tag.value % 8;
    if (number === 0 || number > 536_870_911)
      throw new WireProblem(`${where}: invalid field number ${number} at byte ${tagAt}`);
    const field = type.fieldsById[number];
    const label = field ? `${where}.${snake(field.name)}` : `${where} field ${number}`;
    let valueStart = pos;
    let valueEnd: number;
    switch (wire) {
      case VARINT:
        valueEnd = varint(buf, pos, end, label).next;
        break;
      case I64:
        valueEnd = pos + 8;
        break;
      case LEN: {
        const len = varint(buf, pos, end, label);
        valueStart = len.next;
        valueEnd = len.next + len.value;
        break;
      }
      case I32:
        valueEnd = pos + 4;
        break;
      case 3:
      case 4:
        throw new WireProblem(`${label}: group wire type ${wire} at byte ${tagAt} (groups are not part of this API)`);
      default:
        throw new WireProblem(`${label}: invalid wire type ${wire} at byte ${tagAt}`);
    }
    if (valueEnd > end) throw new WireProblem(`${label}: value at byte ${tagAt} runs past the end of the message`);
    if (field) checkField(field, wire, buf, valueStart, valueEnd, depthLeft, label, tagAt);
    pos = valueEnd;
  }
}

function checkField(
  field: protobuf.Field,
  wire: number,
  buf: Uint8Array,
  start: number,
  end: number,
  depthLeft: number,
  label: string,
  at: number,
): void {
  const expect = (wanted: number): void => {
    if (wire !== wanted) throw new WireProblem(`${label}: wire type ${wire} at byte ${at} where ${wanted} is expected`);
  };
  if (field.map) return expect(LEN);
  field.resolve();
  const resolved = field.resolvedType;
  if (resolved instanceof protobuf.Type) {
    expect(LEN);
    if (depthLeft <= 0) throw new WireProblem(`${label}: messages nested too deeply`);
    check(resolved, buf, start, end, depthLeft - 1, label);
    return;
  }
  if (field.type === 'string') {
    expect(LEN);
    if (!isUtf8(buf.subarray(start, end))) throw new WireProblem(`${label}: string at byte ${at} is not valid UTF-8`);
    return;
  }
  if (field.type === 'bytes') return expect(LEN);
  const scalarWire =
    resolved instanceof protobuf.Enum || VARINT_TYPES.has(field.type)
      ? VARINT
      : I64_TYPES.has(field.type)
        ? I64
        : I32_TYPES.has(field.type)
          ? I32
          : undefined;
  if (scalarWire === undefined) return;
  if (field.repeated && wire === LEN) {
    // Packed: the payload must be whole values.
    if (scalarWire === I64 && (end - start) % 8 !== 0)
      throw new WireProblem(`${label}: packed fixed64 values at byte ${at} are cut short`);
    if (scalarWire === I32 && (end - start) % 4 !== 0)
      throw new WireProblem(`${label}: packed fixed32 values at byte ${at} are cut short`);
    if (scalarWire === VARINT) for (let p = start; p < end;) p = varint(buf, p, end, label).next;
    return;
  }
  expect(scalarWire);
}

function varint(buf: Uint8Array, pos: number, end: number, label: string): { value: number; next: number } {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new WireProblem(`${label}: varint cut short at byte ${pos}`);
    const b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    scale *= 128;
    if ((b & 0x80) === 0) return { value, next: pos };
  }
  throw new WireProblem(`${label}: varint longer than 10 bytes at byte ${pos - 10}`);
}

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}
