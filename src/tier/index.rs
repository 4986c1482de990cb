//! Reading a pack's index straight from its object with ranged GETs: the footer (and,
//! for small packs, the index with it) in one request from the end, the rest of the
//! index in a second one when it does not fit. No chunk bytes are read.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::object::ObjectStore;
use crate::pack::{parse_footer, parse_index, PackEntry, FOOTER_LEN};

/// Bytes read from the end of a pack in the first request: the footer and an index of
/// up to about 1,400 chunks.
const TAIL_BYTES: u64 = 64 * 1024;

/// The entries of pack object `key` of `size` bytes (from a HEAD), its footer and index
/// checked: `Corrupt` when the object is not exactly as long as its footer says, the
/// footer or index is malformed, or the index checksum does not match; `Unavailable`
/// when a read returns fewer bytes than asked; errors of the object store as it reports
/// them.
pub async fn read_index(store: &dyn ObjectStore, key: &str, size: u64) -> Result<Vec<PackEntry>> {
    let tail_len = size.min(TAIL_BYTES + FOOTER_LEN as u64);
    let tail_start = size - tail_len;
    let tail = whole(store, key, tail_start..size).await?;
    let footer = parse_footer(&tail)?;
    footer.check_pack_len(size)?;
    let range = footer.index_range();
    if range.start >= tail_start {
        // Within the tail: check_pack_len put the index right before the footer.
        let from = usize::try_from(range.start - tail_start).unwrap_or(usize::MAX);
        let to = usize::try_from(range.end - tail_start).unwrap_or(usize::MAX);
        let index = tail.get(from..to).unwrap_or_default();
        return parse_index(&footer, index);
    }
    let index = whole(store, key, range).await?;
    parse_index(&footer, &index)
}

/// Bytes `range` of `key`, `Unavailable` when fewer arrive: a body cut short in transit
/// says nothing about the object (its size came from a HEAD), and parsing the part
/// that came would call an intact pack's footer or index corrupt.
async fn whole(store: &dyn ObjectStore, key: &str, range: std::ops::Range<u64>) -> Result<Bytes> {
    let want = range.end.saturating_sub(range.start);
    let got = store.get_range(key, range.clone()).await?;
    if got.len() as u64 != want {
        return Err(Error::unavailable(format!(
            "reading the index of pack {key}: {} of the {want} bytes of {}..{} arrived",
            got.len(),
            range.start,
            range.end
        )));
    }
    Ok(got)
}
