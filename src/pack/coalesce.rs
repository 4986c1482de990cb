//! Merging nearby chunk ranges of one pack into few ranged reads.

use std::ops::Range;

/// One ranged read of a pack that serves one or more requested spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    /// The byte range to request from the pack.
    pub range: Range<u64>,
    /// Indices into the `spans` given to [`coalesce`] that this read covers, ordered by
    /// offset (ties keep input order).
    pub members: Vec<usize>,
}

impl Fetch {
    /// Where the span `(offset, len)` lies inside the bytes returned for this read, for
    /// slicing them; `None` if the span is not inside [`range`](Fetch::range).
    pub fn local(&self, offset: u64, len: u32) -> Option<Range<usize>> {
        let end = offset.checked_add(u64::from(len))?;
        if offset < self.range.start || end > self.range.end {
            return None;
        }
        let start = usize::try_from(offset - self.range.start).ok()?;
        let end = usize::try_from(end - self.range.start).ok()?;
        Some(start..end)
    }

    /// Length of the read in bytes.
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// Whether the read covers no bytes (only zero-length spans).
    pub fn is_empty(&self) -> bool {
        self.range.end == self.range.start
    }
}

/// Group byte spans of one pack into as few ranged reads as sensible.
///
/// `spans` are `(offset, len)` pairs, e.g. [`PackEntry::span`](super::PackEntry::span) of
/// the chunks a read needs, in any order; duplicates and overlaps are fine (a blob may
/// use the same chunk twice). Walking the spans by offset, a span joins the current read
/// when the gap between the read's end and the span's start is at most `max_gap` bytes
/// (overlapping and exactly adjacent spans have gap 0, so `max_gap = 0` merges only
/// those) and the read would not grow beyond `max_len` bytes. A span longer than
/// `max_len` gets a read of its own; use `u64::MAX` for no limit. A span overlapping the
/// current read always joins it, even past `max_len` (this keeps reads disjoint; the
/// distinct chunks of a pack never partially overlap, so it only matters for odd input). The gap bytes are
/// fetched and thrown away: `max_gap` trades wasted bytes for fewer requests.
///
/// Returns the reads ordered by offset, non-overlapping, each listing the indices of the
/// spans it covers; every input index appears in exactly one read. Slice a read's bytes
/// with [`Fetch::local`].
pub fn coalesce(spans: &[(u64, u32)], max_gap: u64, max_len: u64) -> Vec<Fetch> {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| spans[i]);

    let mut out: Vec<Fetch> = Vec::new();
    for i in order {
        let (offset, len) = spans[i];
        let end = offset.saturating_add(u64::from(len));
        if let Some(cur) = out.last_mut() {
            // Sorted by offset, so `offset >= cur.range.start`.
            // Spans overlapping the read always join it (no extra request, and reads
            // stay disjoint); others join if the gap and the size limit allow.
            let overlaps = offset < cur.range.end || end <= cur.range.end;
            let gap = offset.saturating_sub(cur.range.end);
            let new_end = cur.range.end.max(end);
            if overlaps || (gap <= max_gap && new_end - cur.range.start <= max_len) {
                cur.range.end = new_end;
                cur.members.push(i);
                continue;
            }
        }
        out.push(Fetch {
            range: offset..end,
            members: vec![i],
        });
    }
    out
}
