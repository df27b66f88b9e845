//! Fluvio's record-set and SmartModule wire format (`fluvio-protocol` 0.50.1),
//! encoded and decoded with bulk copies.
//!
//! `fluvio-protocol` writes record values one byte per call; inside a wasm
//! SmartModule with fuel metering that costs more than the mapping itself. The
//! format is small and stable, so the SmartModule and the host both use this
//! codec, and its tests prove it byte-identical to `fluvio-protocol`'s.

/// A record as it travels to and from a SmartModule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireRecord<'a> {
    /// Record attributes (unused by Fluvio today; kept as sent).
    pub attributes: i8,
    /// Milliseconds after the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Position after the batch's base offset.
    pub offset_delta: i64,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: &'a [u8],
    /// Header count (always 0 in Fluvio today).
    pub headers: i64,
}

/// The SmartModule ABI version this codec reads without falling back.
pub const INPUT_VERSION: i16 = 22;

/// Appends `num` as Fluvio's zig-zag varint, quirks included (its zig-zag uses
/// a 31-bit shift and its loop tests only the low 32 bits). Where Fluvio's own
/// encoder never terminates (values whose zig-zag is negative, far outside any
/// length, offset or time delta) this one still does.
pub fn encode_varint(out: &mut Vec<u8>, num: i64) {
    let mut v = zigzag(num);
    while (v & 0xffff_ff80) != 0 {
        out.push(((v & 0x7f) | 0x80) as u8);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(num: i64) -> u64 {
    ((num << 1) ^ (num >> 31)) as u64
}

/// Bytes [`encode_varint`] writes for `num`.
pub fn varint_len(num: i64) -> usize {
    let mut v = zigzag(num);
    let mut len = 1;
    while (v & 0xffff_ff80) != 0 {
        len += 1;
        v >>= 7;
    }
    len
}

/// Reads a varint at `*pos`; `None` on truncated or over-long input.
pub fn decode_varint(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut num: i64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if shift > 63 {
            return None;
        }
        num |= i64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    Some((num >> 1) ^ -(num & 1))
}

fn record_body_len(record: &WireRecord<'_>) -> usize {
    let key = match record.key {
        Some(key) => 1 + varint_len(key.len() as i64) + key.len(),
        None => 1,
    };
    1 + varint_len(record.timestamp_delta)
        + varint_len(record.offset_delta)
        + key
        + varint_len(record.value.len() as i64)
        + record.value.len()
        + varint_len(record.headers)
}

/// Appends one record (length-prefixed) as `Record::encode` does.
pub fn encode_record(out: &mut Vec<u8>, record: &WireRecord<'_>) {
    let body = record_body_len(record);
    out.reserve(body + 5);
    encode_varint(out, body as i64);
    out.push(record.attributes as u8);
    encode_varint(out, record.timestamp_delta);
    encode_varint(out, record.offset_delta);
    match record.key {
        Some(key) => {
            out.push(1);
            encode_varint(out, key.len() as i64);
            out.extend_from_slice(key);
        }
        None => out.push(0),
    }
    encode_varint(out, record.value.len() as i64);
    out.extend_from_slice(record.value);
    encode_varint(out, record.headers);
}

/// Appends a record set (`Vec<Record>`): a big-endian u32 count, then the records.
pub fn encode_records<'a, I>(out: &mut Vec<u8>, records: I)
where
    I: ExactSizeIterator<Item = WireRecord<'a>>,
{
    out.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        encode_record(out, &record);
    }
}

/// Reads a record set written by [`encode_records`] (or by Fluvio), borrowing
/// keys and values; `None` when the bytes are not a well-formed record set.
pub fn decode_records(bytes: &[u8]) -> Option<Vec<WireRecord<'_>>> {
    let count = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let mut pos = 4;
    let mut records = Vec::with_capacity(count.min(bytes.len() / 4));
    for _ in 0..count {
        let len = usize::try_from(decode_varint(bytes, &mut pos)?).ok()?;
        let end = pos.checked_add(len)?;
        let body = bytes.get(pos..end)?;
        records.push(decode_record_body(body)?);
        pos = end;
    }
    Some(records)
}

fn decode_record_body(body: &[u8]) -> Option<WireRecord<'_>> {
    let attributes = *body.first()? as i8;
    let mut pos = 1;
    let timestamp_delta = decode_varint(body, &mut pos)?;
    let offset_delta = decode_varint(body, &mut pos)?;
    let key = match *body.get(pos)? {
        0 => {
            pos += 1;
            None
        }
        1 => {
            pos += 1;
            Some(read_bytes(body, &mut pos)?)
        }
        _ => return None,
    };
    let value = read_bytes(body, &mut pos)?;
    let headers = decode_varint(body, &mut pos)?;
    (pos == body.len()).then_some(WireRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

fn read_bytes<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(bytes, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let slice = bytes.get(*pos..end)?;
    *pos = end;
    Some(slice)
}

/// What a SmartModule transform receives, at [`INPUT_VERSION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input<'a> {
    /// Base offset of the batch.
    pub base_offset: i64,
    /// The encoded record set.
    pub records: &'a [u8],
    /// Base timestamp of the batch.
    pub base_timestamp: i64,
}

/// Reads a `SmartModuleInput`. Only version 22 with the default (empty)
/// per-call parameters is read; anything else returns `None` so the caller
/// uses Fluvio's own decoder.
pub fn decode_input(bytes: &[u8], version: i16) -> Option<Input<'_>> {
    if version != INPUT_VERSION {
        return None;
    }
    let mut pos = 0;
    let base_offset = i64::from_be_bytes(take(bytes, &mut pos, 8)?.try_into().ok()?);
    let records_len = u32::from_be_bytes(take(bytes, &mut pos, 4)?.try_into().ok()?) as usize;
    let records = take(bytes, &mut pos, records_len)?;
    // Deprecated per-call params: an empty map and no lookback.
    if take(bytes, &mut pos, 3)? != [0, 0, 0] {
        return None;
    }
    let join_len = u32::from_be_bytes(take(bytes, &mut pos, 4)?.try_into().ok()?) as usize;
    take(bytes, &mut pos, join_len)?;
    let base_timestamp = i64::from_be_bytes(take(bytes, &mut pos, 8)?.try_into().ok()?);
    (pos == bytes.len()).then_some(Input {
        base_offset,
        records,
        base_timestamp,
    })
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, len: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(len)?;
    let slice = bytes.get(*pos..end)?;
    *pos = end;
    Some(slice)
}

/// Starts a successful `SmartModuleOutput` with `count` records to follow.
pub fn begin_output(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&(count as u32).to_be_bytes());
}

/// Overwrites the record count that [`begin_output`] wrote at `at`, for output
/// written before its count is known.
pub fn set_output_count(out: &mut [u8], at: usize, count: usize) {
    out[at..at + 4].copy_from_slice(&(count as u32).to_be_bytes());
}

/// Ends a successful `SmartModuleOutput` (no runtime error).
pub fn end_output(out: &mut Vec<u8>) {
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_smartmodule::dataplane::core::EncoderVarInt;
    use fluvio_smartmodule::dataplane::core::{Decoder, Encoder};
    use fluvio_smartmodule::dataplane::smartmodule::{SmartModuleInput, SmartModuleOutput};
    use fluvio_smartmodule::{Record, RecordData};
    use proptest::prelude::*;

    const VERSION: i16 = INPUT_VERSION;

    fn fluvio_record(r: &WireRecord<'_>) -> Record {
        let mut record = match r.key {
            Some(k) => Record::new_key_value(RecordData::from(k.to_vec()), RecordData::from(r.value.to_vec())),
            None => Record::new(RecordData::from(r.value.to_vec())),
        };
        record.preamble.set_offset_delta(r.offset_delta);
        record.preamble.set_timestamp_delta(r.timestamp_delta);
        record
    }

    fn record() -> impl Strategy<Value = (Option<Vec<u8>>, Vec<u8>, i64, i64)> {
        (
            prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
            prop::collection::vec(any::<u8>(), 0..3000),
            prop_oneof![
                Just(0i64),
                0..100_000i64,
                -100..100i64,
                any::<i32>().prop_map(i64::from)
            ],
            prop_oneof![Just(0i64), 0..10_000i64],
        )
    }

    proptest! {
        #[test]
        fn records_match_fluvio_byte_for_byte(records in prop::collection::vec(record(), 0..20)) {
            let wire: Vec<WireRecord<'_>> = records
                .iter()
                .map(|(k, v, t, o)| WireRecord { key: k.as_deref(), value: v, timestamp_delta: *t, offset_delta: *o, ..Default::default() })
                .collect();
            let mut ours = Vec::new();
            encode_records(&mut ours, wire.iter().copied());
            let mut theirs = Vec::new();
            let fluvio: Vec<Record> = wire.iter().map(fluvio_record).collect();
            fluvio.encode(&mut theirs, VERSION).expect("encode");
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(decode_records(&theirs).expect("decodes"), wire);
        }

        /// Same bytes as Fluvio for any value; round trips where Fluvio's own do
        /// (its zig-zag only works for 32-bit values).
        #[test]
        fn varints_match_fluvio(
            n in prop_oneof![any::<i32>().prop_map(i64::from), 0..(1i64 << 62)],
            small in any::<i32>(),
        ) {
            let mut ours = Vec::new();
            encode_varint(&mut ours, n);
            let mut theirs = Vec::new();
            n.encode_varint(&mut theirs).expect("encode");
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(ours.len(), varint_len(n));
            let mut small_bytes = Vec::new();
            encode_varint(&mut small_bytes, i64::from(small));
            let mut pos = 0;
            prop_assert_eq!(decode_varint(&small_bytes, &mut pos), Some(i64::from(small)));
        }

        #[test]
        fn encodes_any_value_in_bounded_space(n in any::<i64>()) {
            let mut out = Vec::new();
            encode_varint(&mut out, n);
            prop_assert!(out.len() <= 10);
        }

        #[test]
        fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200), version in any::<i16>()) {
            let _ = decode_records(&bytes);
            let _ = decode_input(&bytes, version);
        }
    }

    #[test]
    fn reads_inputs_as_fluvio_writes_them() {
        let values: Vec<Vec<u8>> = (0..5).map(|i| vec![b'a' + i; 100 * i as usize]).collect();
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record::new(RecordData::from(v.clone())))
            .collect();
        let mut raw = Vec::new();
        records.encode(&mut raw, VERSION).expect("encode");
        let input = SmartModuleInput::new(raw.clone(), 42, 1_700_000_000_000);
        let mut bytes = Vec::new();
        input.encode(&mut bytes, VERSION).expect("encode");
        let decoded = decode_input(&bytes, VERSION).expect("decodes");
        assert_eq!(
            decoded,
            Input {
                base_offset: 42,
                records: &raw,
                base_timestamp: 1_700_000_000_000
            }
        );
        assert!(decode_input(&bytes, VERSION + 1).is_none(), "other versions fall back");
        assert!(decode_input(&bytes[..bytes.len() - 1], VERSION).is_none());
    }

    #[test]
    fn writes_outputs_as_fluvio_reads_them() {
        let wire = [
            WireRecord {
                key: Some(b"id_1"),
                value: b"{}",
                offset_delta: 3,
                timestamp_delta: 7,
                ..Default::default()
            },
            WireRecord {
                key: None,
                value: b"x",
                ..Default::default()
            },
        ];
        let mut out = Vec::new();
        begin_output(&mut out, wire.len());
        for r in &wire {
            encode_record(&mut out, r);
        }
        end_output(&mut out);
        let mut decoded = SmartModuleOutput::default();
        decoded
            .decode(&mut std::io::Cursor::new(&out), VERSION)
            .expect("fluvio decodes it");
        assert!(decoded.error.is_none());
        assert_eq!(decoded.successes.len(), 2);
        assert_eq!(
            decoded.successes[0].key().map(|k| k.as_ref().to_vec()),
            Some(b"id_1".to_vec())
        );
        assert_eq!(decoded.successes[0].preamble.offset_delta(), 3);
        let expected = SmartModuleOutput::new(wire.iter().map(fluvio_record).collect());
        let mut theirs = Vec::new();
        expected.encode(&mut theirs, VERSION).expect("encode");
        assert_eq!(out, theirs);

        // The same bytes when the count is only known at the end.
        let mut streamed = vec![0xAA];
        begin_output(&mut streamed, 0);
        for r in &wire {
            encode_record(&mut streamed, r);
        }
        set_output_count(&mut streamed, 1, wire.len());
        end_output(&mut streamed);
        assert_eq!(&streamed[1..], &theirs[..]);
    }
}
