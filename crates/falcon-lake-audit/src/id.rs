//! Deterministic CloudTrail `AuditEvent.id` values for Falcon events.
//!
//! The id must match `^[-_A-Za-z0-9]{1,128}$`, be unique across customer IDs,
//! partitions and offsets, and come out the same on every replay, so it is a pure
//! function of what identifies the event in Falcon.

use crate::json::push_decimal;

/// Longest customer ID used verbatim; anything longer or oddly spelled is hashed.
const MAX_VERBATIM_CID: usize = 64;

/// Id of an event: `<cid>_<partition>_<offset>`, the CID made safe for the pattern.
///
/// A missing CID becomes `nocid`; a CID outside `[A-Za-z0-9-]{1,64}` becomes
/// `h` + 32 hex digits of a hash of it, so distinct CIDs stay distinct.
pub fn audit_event_id(cid: Option<&str>, partition: u32, offset: u64) -> String {
    let mut id = String::new();
    write_audit_event_id(&mut id, cid, partition, offset);
    id
}

/// Appends [`audit_event_id`] to `out` (the mapper reuses one buffer per stream).
pub fn write_audit_event_id(out: &mut String, cid: Option<&str>, partition: u32, offset: u64) {
    match cid {
        Some(cid) if is_verbatim_cid(cid) => out.push_str(cid),
        None | Some("") => out.push_str("nocid"),
        Some(cid) => {
            out.push('h');
            out.push_str(&hash_hex(cid.as_bytes()));
        }
    }
    out.push('_');
    write_fig_event_id(out, partition, offset);
}

/// Id of an event the existing gateway would have produced: `<partition>_<offset>`.
pub fn fig_event_id(partition: u32, offset: u64) -> String {
    let mut id = String::new();
    write_fig_event_id(&mut id, partition, offset);
    id
}

/// Appends [`fig_event_id`] to `out`.
pub fn write_fig_event_id(out: &mut String, partition: u32, offset: u64) {
    use std::fmt::Write as _;
    push_decimal(out, i64::from(partition));
    out.push('_');
    match i64::try_from(offset) {
        Ok(offset) => push_decimal(out, offset),
        Err(_) => {
            let _ = write!(out, "{offset}");
        }
    }
}

/// Appends the id of an event: `<cid>_<partition>_<offset>` when `qualified`,
/// else the gateway's `<partition>_<offset>`; [`content_id`] (with the CID)
/// when the partition or the offset is unknown. Both mappings key by it.
pub fn write_event_id(
    out: &mut String,
    qualified: bool,
    cid: Option<&str>,
    partition: Option<u32>,
    offset: Option<u64>,
    raw: &[u8],
) {
    match (partition, offset) {
        (Some(p), Some(o)) if qualified => write_audit_event_id(out, cid, p, o),
        (Some(p), Some(o)) => write_fig_event_id(out, p, o),
        _ => out.push_str(&content_id(cid, raw)),
    }
}

/// Id for input that lacks an offset or a partition: a hash of its bytes, so a
/// replay of the same bytes yields the same id.
pub fn content_id(cid: Option<&str>, bytes: &[u8]) -> String {
    format!("{}_c{}", safe_cid(cid), hash_hex(bytes))
}

/// True when `id` is a valid `AuditEvent.id`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn safe_cid(cid: Option<&str>) -> String {
    match cid {
        None | Some("") => "nocid".to_string(),
        Some(cid) if is_verbatim_cid(cid) => cid.to_string(),
        Some(cid) => format!("h{}", hash_hex(cid.as_bytes())),
    }
}

fn is_verbatim_cid(cid: &str) -> bool {
    !cid.is_empty() && cid.len() <= MAX_VERBATIM_CID && cid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// 128-bit FNV-1a style digest as 32 hex digits: two 64-bit lanes with different
/// offset bases. Not cryptographic; it only has to keep distinct inputs apart.
fn hash_hex(bytes: &[u8]) -> String {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for &byte in bytes {
        a = (a ^ u64::from(byte)).wrapping_mul(PRIME);
        b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(PRIME);
    }
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_qualified_and_valid() {
        let id = audit_event_id(Some("0123456789abcdef0123456789abcdef"), 0, 1001);
        assert_eq!(id, "0123456789abcdef0123456789abcdef_0_1001");
        assert!(is_valid_id(&id));
        assert_eq!(audit_event_id(None, 2, 7), "nocid_2_7");
        assert_eq!(fig_event_id(0, 42593), "0_42593");
    }

    #[test]
    fn odd_cids_are_hashed_but_distinct() {
        let a = audit_event_id(Some("cid with spaces"), 0, 1);
        let b = audit_event_id(Some("cid with spaces!"), 0, 1);
        assert_ne!(a, b);
        assert!(is_valid_id(&a) && is_valid_id(&b));
        let long = "x".repeat(500);
        let id = audit_event_id(Some(&long), u32::MAX, u64::MAX);
        assert!(is_valid_id(&id), "{id}");
    }

    #[test]
    fn event_ids_fall_back_to_the_content() {
        let mut id = String::new();
        write_event_id(&mut id, true, Some("abc"), Some(1), Some(2), b"x");
        assert_eq!(id, "abc_1_2");
        id.clear();
        write_event_id(&mut id, false, Some("abc"), Some(1), Some(2), b"x");
        assert_eq!(id, "1_2");
        id.clear();
        write_event_id(&mut id, false, Some("abc"), None, Some(2), b"x");
        assert_eq!(id, content_id(Some("abc"), b"x"));
    }

    #[test]
    fn content_ids_are_stable() {
        assert_eq!(content_id(None, b"abc"), content_id(None, b"abc"));
        assert_ne!(content_id(None, b"abc"), content_id(None, b"abd"));
        assert!(is_valid_id(&content_id(Some("c"), b"")));
    }
}
