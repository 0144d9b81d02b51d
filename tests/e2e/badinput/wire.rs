//! Hand-made protobuf and gRPC framing: the bytes a careless or hostile
//! client can put on the wire that prost would never encode.

/// Protobuf wire types.
pub const VARINT: u8 = 0;
pub const I64: u8 = 1;
pub const LEN: u8 = 2;
pub const START_GROUP: u8 = 3;
pub const END_GROUP: u8 = 4;
pub const I32: u8 = 5;

pub fn push_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn key(field: u32, wire_type: u8) -> Vec<u8> {
    let mut out = Vec::new();
    push_varint((u64::from(field) << 3) | u64::from(wire_type), &mut out);
    out
}

/// A length-delimited field (string, bytes or nested message).
pub fn len_field(field: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = key(field, LEN);
    push_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// A field with the given wire type and a well-formed payload of that type,
/// so that the only fault is the wire type itself.
pub fn field_of_wire_type(field: u32, wire_type: u8) -> Vec<u8> {
    let mut out = key(field, wire_type);
    match wire_type {
        VARINT => out.push(1),
        I64 => out.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]),
        LEN => out.extend_from_slice(&[1, b'x']),
        I32 => out.extend_from_slice(&[1, 0, 0, 0]),
        START_GROUP => out.extend(key(field, END_GROUP)),
        _ => {}
    }
    out
}

/// The wire type a field is declared with, and one it is not.
pub fn wrong_wire_types(declared: u8) -> [u8; 2] {
    match declared {
        LEN => [VARINT, I32],
        _ => [LEN, I64],
    }
}

/// Byte sequences that are not UTF-8, each with what is wrong with it.
pub const INVALID_UTF8: [(&str, &[u8]); 5] = [
    ("a lone continuation byte", b"\x80"),
    ("a 0xFF byte", b"ab\xFF"),
    ("a truncated sequence", b"V\xE1\xBA"),
    ("an overlong NUL", b"\xC0\x80"),
    ("a UTF-16 surrogate", b"\xED\xA0\x80"),
];

/// Protobuf that no message decodes, whatever its fields.
pub fn garbage() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("field number 0", vec![0x02, 0x00]),
        ("wire type 6", vec![0x0E, 0x01]),
        ("wire type 7", vec![0x0F, 0x01]),
        ("an unterminated varint key", vec![0xFF]),
        ("a varint longer than ten bytes", {
            let mut bytes = key(15, VARINT);
            bytes.extend_from_slice(&[0xFF; 11]);
            bytes
        }),
        ("a length past the end", {
            let mut bytes = key(15, LEN);
            push_varint(1 << 40, &mut bytes);
            bytes.extend_from_slice(b"short");
            bytes
        }),
        ("an end-group without a start", key(15, END_GROUP)),
        ("a start-group never closed", key(15, START_GROUP)),
        ("a truncated fixed64", {
            let mut bytes = key(15, I64);
            bytes.extend_from_slice(&[1, 2, 3]);
            bytes
        }),
    ]
}

/// Where each top-level field of an encoded message starts and ends.
pub fn field_spans(bytes: &[u8]) -> Vec<(u32, usize, usize)> {
    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        let mut shift = 0;
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return value;
            }
            shift += 7;
        }
    }
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let key = varint(bytes, &mut at);
        match (key & 7) as u8 {
            VARINT => {
                varint(bytes, &mut at);
            }
            I64 => at += 8,
            LEN => {
                let length = varint(bytes, &mut at) as usize;
                at += length;
            }
            I32 => at += 4,
            other => panic!("prost does not encode wire type {other}"),
        }
        spans.push(((key >> 3) as u32, start, at));
    }
    spans
}

/// One gRPC length-prefixed message: flag byte, declared length, payload.
pub fn frame(flag: u8, declared_length: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&declared_length.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
