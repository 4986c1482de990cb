//! A reader of RocksDB's write-ahead log format, for one purpose: when the database
//! refuses to open because a log is damaged, say which file, where, and which blobs'
//! commits sat in the damaged records (they are what a recovery that skips damaged
//! records loses).
//!
//! The format (RocksDB `db/log_format.h`): 32 KiB blocks of physical records, each
//! `masked crc32c (4) ‖ length (2, LE) ‖ type (1) [‖ log number (4) for the recyclable
//! types] ‖ payload`; a logical record (one write batch) is one `FULL` record or a
//! `FIRST`, `MIDDLE`…, `LAST` run. The checksum covers the type byte, the log number
//! when present, and the payload.

use std::path::{Path, PathBuf};

use crate::id::BlobId;

const BLOCK: usize = 32 * 1024;
const HEADER: usize = 7;
const RECYCLABLE_HEADER: usize = 11;

/// What a scan of a data directory's logs found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalDamage {
    /// The first damaged log file.
    pub file: PathBuf,
    /// Byte offset of its first damaged record.
    pub offset: u64,
    /// Bytes of that file from the damage to its end.
    pub bytes_after: u64,
    /// Damaged records (over all logs).
    pub damaged_records: u64,
    /// Blobs whose commit (blob record) is in a damaged record: a recovery that skips
    /// damaged records loses them. Best effort: a damaged record is decoded as far as
    /// it still parses.
    pub lost_blobs: Vec<BlobId>,
    /// Damaged records that could not be decoded at all (they may have held commits).
    pub undecodable_records: u64,
}

/// Scan every `*.log` file in `dir` (oldest first); `None` if all their records check.
pub fn find_damage(dir: &Path) -> std::io::Result<Option<WalDamage>> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p.is_file())
        .collect();
    // RocksDB names logs by a zero-padded number, so name order is log order.
    logs.sort();
    let mut found: Option<WalDamage> = None;
    for path in logs {
        let bytes = std::fs::read(&path)?;
        let scan = scan(&bytes);
        let Some(first) = scan.first_bad else {
            continue;
        };
        let d = found.get_or_insert_with(|| WalDamage {
            file: path.clone(),
            offset: first as u64,
            bytes_after: (bytes.len() - first) as u64,
            damaged_records: 0,
            lost_blobs: Vec::new(),
            undecodable_records: 0,
        });
        d.damaged_records += scan.damaged;
        d.undecodable_records += scan.undecodable;
        for id in scan.lost_blobs {
            if !d.lost_blobs.contains(&id) {
                d.lost_blobs.push(id);
            }
        }
    }
    Ok(found)
}

#[derive(Default)]
struct Scan {
    first_bad: Option<usize>,
    damaged: u64,
    undecodable: u64,
    lost_blobs: Vec<BlobId>,
}

impl Scan {
    fn bad(&mut self, at: usize) {
        self.first_bad.get_or_insert(at);
    }

    /// A logical record one of whose fragments failed its checksum.
    fn damaged_record(&mut self, payload: &[u8]) {
        self.damaged += 1;
        if !blob_commits(payload, &mut self.lost_blobs) {
            self.undecodable += 1;
        }
    }
}

fn scan(log: &[u8]) -> Scan {
    let mut s = Scan::default();
    // The logical record being assembled, and whether any of its fragments was bad.
    let mut scratch: Vec<u8> = Vec::new();
    let mut in_record = false;
    let mut record_bad = false;
    let mut block_start = 0;
    while block_start < log.len() {
        let block = &log[block_start..log.len().min(block_start + BLOCK)];
        let mut pos = 0;
        while block.len() - pos >= HEADER {
            let h = &block[pos..];
            let len = usize::from(u16::from_le_bytes([h[4], h[5]]));
            let kind = h[6];
            if kind == 0 && len == 0 {
                break; // zero padding (preallocated space): rest of the block is empty
            }
            let header = if matches!(kind, 5..=8 | 11 | 131) {
                RECYCLABLE_HEADER
            } else {
                HEADER
            };
            let at = block_start + pos;
            if pos + header + len > block.len() {
                // A length that runs past the block: a damaged header, or a record cut
                // off at the end of the file by a crash (a torn tail, which RocksDB
                // tolerates and so does this scan).
                if block_start + block.len() < log.len() {
                    s.bad(at);
                    if in_record {
                        s.damaged_record(&scratch);
                    }
                    in_record = false;
                    scratch.clear();
                }
                break;
            }
            let stored = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let payload = &h[header..header + len];
            let ok = unmask(stored) == crc32c(&h[6..header + len]);
            if !ok {
                s.bad(at);
            }
            pos += header + len;
            // Record types: 1/5 full, 2/6 first, 3/7 middle, 4/8 last; others (compression
            // and timestamp metadata, predecessor info) carry no writes.
            match kind {
                1 | 5 => {
                    if in_record {
                        s.damaged_record(&scratch);
                    }
                    in_record = false;
                    scratch.clear();
                    if !ok {
                        s.damaged_record(payload);
                    }
                }
                2 | 6 => {
                    if in_record {
                        s.damaged_record(&scratch);
                    }
                    scratch.clear();
                    scratch.extend_from_slice(payload);
                    in_record = true;
                    record_bad = !ok;
                }
                3 | 7 | 4 | 8 if in_record => {
                    scratch.extend_from_slice(payload);
                    record_bad |= !ok;
                    if kind == 4 || kind == 8 {
                        if record_bad {
                            s.damaged_record(&scratch);
                        }
                        in_record = false;
                        scratch.clear();
                    }
                }
                _ => {}
            }
        }
        block_start += BLOCK;
    }
    s
}

/// Collect the blob ids a write batch puts blob records for; false if the batch does
/// not parse (as a damaged batch may not). Blob records are recognised by their shape
/// under a 32-byte key (see [`is_blob_value`]).
fn blob_commits(batch: &[u8], out: &mut Vec<BlobId>) -> bool {
    // Header: sequence number (8) ‖ count (4).
    let Some(mut rest) = batch.get(12..) else {
        return false;
    };
    while let Some((&tag, tail)) = rest.split_first() {
        rest = tail;
        let with_cf = matches!(tag, 0x4 | 0x5 | 0x6 | 0x8 | 0xE);
        if with_cf && varint(&mut rest).is_none() {
            return false;
        }
        let (has_value, is_put) = match tag {
            0x1 | 0x5 => (true, true),               // value
            0x2 | 0x6 | 0xE | 0xF => (true, false),  // merge, range deletion
            0x0 | 0x4 | 0x7 | 0x8 => (false, false), // deletions
            _ => return false,                       // a kind strata never writes
        };
        let Some(key) = slice(&mut rest) else {
            return false;
        };
        let value = if has_value {
            match slice(&mut rest) {
                Some(v) => v,
                None => return false,
            }
        } else {
            &[]
        };
        if is_put && key.len() == 32 && is_blob_value(value) {
            if let Ok(id) = BlobId::from_slice(key) {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    true
}

fn varint(b: &mut &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for shift in (0..35).step_by(7) {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn slice<'a>(b: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = varint(b)? as usize;
    if b.len() < len {
        return None;
    }
    let (head, rest) = b.split_at(len);
    *b = rest;
    Some(head)
}

fn unmask(crc: u32) -> u32 {
    let rot = crc.wrapping_sub(0xa282_ead8);
    rot.rotate_left(15)
}

/// CRC-32C (Castagnoli), bytewise: this runs only when a log failed to open.
fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82f6_3b78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Whether `value` has the shape of a blob record (src/meta/codec.rs): version 1 is 37
/// bytes; version 2 adds a pin byte and the class name (at most 64 bytes).
fn is_blob_value(value: &[u8]) -> bool {
    match value.first() {
        Some(1) => value.len() == 37,
        Some(2) => (38..=38 + 64).contains(&value.len()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn unmask_inverts_rocksdb_mask() {
        let crc = 0x1234_5678u32;
        let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
        assert_eq!(unmask(masked), crc);
    }
}
