import protobuf from 'protobufjs';

/**
 * Protobuf bytes written and read at the wire level, for tests that must see
 * exactly which bytes arrive (unknown fields included). Independent of the
 * proxy's own wire code, so a bug there cannot hide behind a shared helper.
 */

/**
 * Fields no current REAPI message defines, as a future client or server might
 * send them: a varint, a length-delimited string and a fixed64, in field
 * numbers far above any in use.
 */
export function unknownFields(tagText: string): Buffer {
  const w = protobuf.Writer.create();
  w.uint32((9001 << 3) | 0).uint64(1234567890123);
  w.uint32((9002 << 3) | 2).string(`future field ${tagText}`);
  w.uint32((9003 << 3) | 1).fixed64(0xdeadbeef);
  return Buffer.from(w.finish());
}

/** `message` followed by unknown fields (protobuf parsers must keep or skip them, never fail). */
export function withUnknownFields(message: Uint8Array, tagText: string): Buffer {
  return Buffer.concat([Buffer.from(message), unknownFields(tagText)]);
}

export interface RequestMetadataFields {
  toolName: string;
  toolVersion?: string;
  actionId?: string;
  toolInvocationId?: string;
  correlatedInvocationsId?: string;
  actionMnemonic?: string;
  targetId?: string;
}

/**
 * build.bazel.remote.execution.v2.RequestMetadata (tool_details=1 {tool_name=1,
 * tool_version=2}, action_id=2, tool_invocation_id=3, correlated_invocations_id=4,
 * action_mnemonic=5, target_id=6), plus an unknown field, as clients send it in
 * the requestmetadata-bin header.
 */
export function requestMetadataBytes(fields: RequestMetadataFields): Buffer {
  const tool = protobuf.Writer.create();
  tool.uint32((1 << 3) | 2).string(fields.toolName);
  if (fields.toolVersion) tool.uint32((2 << 3) | 2).string(fields.toolVersion);
  const w = protobuf.Writer.create();
  w.uint32((1 << 3) | 2).bytes(tool.finish());
  const strings: Array<[number, string | undefined]> = [
    [2, fields.actionId],
    [3, fields.toolInvocationId],
    [4, fields.correlatedInvocationsId],
    [5, fields.actionMnemonic],
    [6, fields.targetId],
  ];
  for (const [field, value] of strings) if (value) w.uint32((field << 3) | 2).string(value);
  return withUnknownFields(w.finish(), 'request metadata');
}

/** The raw (tag, value bytes) pairs of a message, in order. Value bytes exclude the tag and, for wire type 2, the length. */
export function topLevelFields(
  message: Uint8Array,
): Array<{ field: number; wireType: number; value: Buffer; raw: Buffer }> {
  const reader = protobuf.Reader.create(message);
  const out: Array<{ field: number; wireType: number; value: Buffer; raw: Buffer }> = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tagValue = reader.uint32();
    const wireType = tagValue & 7;
    const valueStart = reader.pos;
    let value: Buffer;
    if (wireType === 2) {
      value = Buffer.from(reader.bytes());
    } else {
      reader.skipType(wireType);
      value = Buffer.from(message.subarray(valueStart, reader.pos));
    }
    out.push({ field: tagValue >>> 3, wireType, value, raw: Buffer.from(message.subarray(start, reader.pos)) });
  }
  return out;
}
