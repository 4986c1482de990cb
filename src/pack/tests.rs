use super::*;
use crate::ErrorKind;
use proptest::prelude::*;

/// Deterministic pseudo-random bytes (splitmix64), incompressible for zstd.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text.
fn text_bytes(n: usize, len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!(
            "line {i} of chunk {n}: the quick brown fox jumps over the lazy dog\n"
        ));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn build(chunks: &[Vec<u8>]) -> BuiltPack {
    let mut b = PackBuilder::new(1 << 20, DEFAULT_ZSTD_LEVEL);
    for c in chunks {
        b.add(ChunkId::of(c), c).unwrap();
    }
    b.finish().unwrap()
}

/// Three text chunks and two random ones, interleaved.
fn sample_chunks() -> Vec<Vec<u8>> {
    vec![
        text_bytes(0, 3000),
        random_bytes(1, 1500),
        text_bytes(2, 800),
        random_bytes(3, 64),
        text_bytes(4, 5000),
    ]
}

fn assert_corrupt<T: fmt::Debug>(r: Result<T>, what: &str) {
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{what}: {e}"),
        Ok(v) => panic!("{what}: accepted: {v:?}"),
    }
}

/// What a reader holding only ranged reads does: the footer from the tail, a length
/// check against the object size, the index by one more ranged read.
fn index_via_tail(pack: &[u8]) -> Result<Vec<PackEntry>> {
    let tail = &pack[pack.len().saturating_sub(FOOTER_LEN)..];
    let footer = parse_footer(tail)?;
    footer.check_pack_len(pack.len() as u64)?;
    let r = footer.index_range();
    parse_index(&footer, &pack[r.start as usize..r.end as usize])
}

#[test]
fn layout_constants() {
    assert_eq!(FOOTER_LEN, 64);
    assert_eq!(ENTRY_LEN, 49);
    assert_eq!(&MAGIC, b"STRTPACK");
}

#[test]
fn round_trip_text_compressed_random_raw() {
    let chunks = sample_chunks();
    let pack = build(&chunks);
    assert_eq!(pack.entries.len(), chunks.len());
    assert_eq!(pack.id, PackId::of(&pack.bytes));
    for (entry, raw) in pack.entries.iter().zip(&chunks) {
        assert_eq!(entry.chunk, ChunkId::of(raw));
        assert_eq!(entry.raw_len as usize, raw.len());
        let is_text = raw.is_ascii();
        assert_eq!(entry.compressed, is_text, "compressed flag for {:?}", entry);
        if entry.compressed {
            assert!(entry.stored_len < entry.raw_len);
        } else {
            assert_eq!(entry.stored_len, entry.raw_len);
            // stored verbatim
            assert_eq!(&pack.bytes[entry.offset as usize..][..raw.len()], &raw[..]);
        }
        let got = extract_chunk(&pack.bytes, entry).unwrap();
        assert_eq!(&got[..], &raw[..]);
        let stored = pack
            .bytes
            .slice(entry.offset as usize..entry.stored_range().end as usize);
        let owned =
            decode_chunk_owned(stored, entry.raw_len, entry.compressed, &entry.chunk).unwrap();
        assert_eq!(&owned[..], &raw[..]);
    }
    assert_eq!(read_index(&pack.bytes).unwrap(), pack.entries);
    assert_eq!(verify_pack(&pack.bytes).unwrap(), pack.entries);
    // The whole layout adds up: chunks, then index, then footer.
    let stored: u64 = pack.entries.iter().map(|e| u64::from(e.stored_len)).sum();
    assert_eq!(
        pack.bytes.len() as u64,
        stored + (chunks.len() * ENTRY_LEN + FOOTER_LEN) as u64
    );
    assert_eq!(
        &pack.bytes[pack.bytes.len() - FOOTER_LEN..][..8],
        b"STRTPACK"
    );
}

#[test]
fn raw_chunk_decode_is_zero_copy() {
    let raw = random_bytes(9, 500);
    let pack = build(std::slice::from_ref(&raw));
    let e = pack.entries[0];
    assert!(!e.compressed);
    let stored = pack
        .bytes
        .slice(e.offset as usize..e.stored_range().end as usize);
    let ptr = stored.as_ptr();
    let got = decode_chunk_owned(stored, e.raw_len, false, &e.chunk).unwrap();
    assert_eq!(got.as_ptr(), ptr);
}

#[test]
fn building_is_deterministic() {
    let chunks = sample_chunks();
    let a = build(&chunks);
    let b = build(&chunks);
    assert_eq!(a.id, b.id);
    assert_eq!(a.bytes, b.bytes);
}

#[test]
fn duplicate_add_is_skipped() {
    let a = text_bytes(0, 2000);
    let b = random_bytes(1, 300);
    let mut builder = PackBuilder::new(1 << 20, 3);
    builder.add(ChunkId::of(&a), &a).unwrap();
    let len = builder.len_bytes();
    builder.add(ChunkId::of(&a), &a).unwrap();
    assert_eq!(builder.len_bytes(), len);
    assert_eq!(builder.chunk_count(), 1);
    builder.add(ChunkId::of(&b), &b).unwrap();
    builder.add(ChunkId::of(&a), &a).unwrap();
    builder.add(ChunkId::of(&b), &b).unwrap();
    assert_eq!(builder.chunk_count(), 2);
    assert!(builder.contains(&ChunkId::of(&a)));
    let pack = builder.finish().unwrap();
    assert_eq!(pack.entries.len(), 2);
    assert_eq!(pack.entries[0].chunk, ChunkId::of(&a));
    assert_eq!(pack.entries[1].chunk, ChunkId::of(&b));
    assert_eq!(read_index(&pack.bytes).unwrap(), pack.entries);
}

#[test]
fn wrong_id_is_rejected_and_nothing_added() {
    let a = text_bytes(0, 2000);
    let mut builder = PackBuilder::new(1 << 20, 3);
    let err = builder.add(ChunkId::of(b"something else"), &a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(builder.is_empty());
    assert_eq!(builder.len_bytes(), 0);
    // A duplicate id with the wrong bytes is rejected too, not silently skipped.
    builder.add(ChunkId::of(&a), &a).unwrap();
    let err = builder.add(ChunkId::of(&a), b"other bytes").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(builder.chunk_count(), 1);
}

#[test]
fn len_bytes_and_is_full_track_stored_bytes() {
    let mut builder = PackBuilder::new(1000, 3);
    assert!(builder.is_empty());
    assert!(!builder.is_full());
    let r = random_bytes(5, 600);
    builder.add(ChunkId::of(&r), &r).unwrap();
    assert_eq!(builder.len_bytes(), 600);
    assert!(!builder.is_full());
    let t = text_bytes(6, 4000);
    builder.add(ChunkId::of(&t), &t).unwrap();
    // Stored (compressed) bytes count, not raw ones.
    assert!(builder.len_bytes() < 600 + 4000);
    let r2 = random_bytes(7, 400);
    builder.add(ChunkId::of(&r2), &r2).unwrap();
    assert!(builder.len_bytes() >= 1000);
    assert!(builder.is_full());
    assert!(!builder.is_empty());
    // A zero target is full from the start.
    assert!(PackBuilder::new(0, 3).is_full());
}

#[test]
fn footer_and_index_parse_from_the_tail_only() {
    let pack = build(&sample_chunks());
    let bytes = &pack.bytes[..];
    let tail = &bytes[bytes.len() - FOOTER_LEN..];
    let footer = parse_footer(tail).unwrap();
    assert_eq!(footer.version, FORMAT_VERSION);
    assert_eq!(footer.chunk_count as usize, pack.entries.len());
    assert_eq!(footer.index_len as usize, pack.entries.len() * ENTRY_LEN);
    assert_eq!(footer.pack_len(), bytes.len() as u64);
    footer.check_pack_len(bytes.len() as u64).unwrap();
    assert_corrupt(
        footer.check_pack_len(bytes.len() as u64 + 1),
        "length check",
    );
    let r = footer.index_range();
    let index = &bytes[r.start as usize..r.end as usize];
    assert_eq!(parse_index(&footer, index).unwrap(), pack.entries);
    // A longer tail (e.g. a speculative 4 KiB read) parses the same footer.
    assert_eq!(parse_footer(&bytes[bytes.len() - 300..]).unwrap(), footer);
    assert_eq!(parse_footer(bytes).unwrap(), footer);
    // Footer encoding round-trips.
    assert_eq!(&footer.to_bytes()[..], tail);
    // Index bytes of the wrong length are rejected.
    assert_corrupt(parse_index(&footer, &index[1..]), "short index");
    // Each chunk is reachable with one ranged read from the index alone.
    for e in &pack.entries {
        let r = e.stored_range();
        e.decode(&bytes[r.start as usize..r.end as usize]).unwrap();
    }
}

#[test]
fn every_single_byte_flip_in_footer_or_index_is_corrupt() {
    let pack = build(&sample_chunks());
    let index_start = pack.bytes.len() - FOOTER_LEN - pack.entries.len() * ENTRY_LEN;
    let mut checked = 0;
    for pos in index_start..pack.bytes.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut bad = pack.bytes.to_vec();
            bad[pos] ^= mask;
            assert_corrupt(
                read_index(&bad),
                &format!("whole pack, byte {pos} ^ {mask:#x}"),
            );
            assert_corrupt(
                index_via_tail(&bad),
                &format!("tail path, byte {pos} ^ {mask:#x}"),
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4 * (pack.entries.len() * ENTRY_LEN + FOOTER_LEN));
}

#[test]
fn footer_flips_are_caught_without_the_pack_length() {
    // A reader that skips `check_pack_len` still detects every footer flip, by the
    // footer's own consistency and the index checks.
    let pack = build(&sample_chunks());
    let bytes = &pack.bytes[..];
    let footer_start = bytes.len() - FOOTER_LEN;
    let good = parse_footer(&bytes[footer_start..]).unwrap();
    let gr = good.index_range();
    let good_index = &bytes[gr.start as usize..gr.end as usize];
    for pos in 0..FOOTER_LEN {
        for mask in [0x01u8, 0x80] {
            let mut tail = bytes[footer_start..].to_vec();
            tail[pos] ^= mask;
            let result = parse_footer(&tail).and_then(|f| {
                // Hand it the genuine index bytes: the flip must still be noticed.
                parse_index(&f, good_index)
            });
            assert_corrupt(result, &format!("footer byte {pos} ^ {mask:#x}"));
        }
    }
}

#[test]
fn flipped_chunk_byte_is_caught_by_decode_chunk() {
    let chunks = sample_chunks();
    let pack = build(&chunks);
    let data_end = pack.entries.last().map(|e| e.stored_range().end).unwrap() as usize;
    for pos in 0..data_end {
        let mut bad = pack.bytes.to_vec();
        bad[pos] ^= 0x04;
        // The index is untouched, so it still reads; the chunk does not.
        let entries = read_index(&bad).unwrap();
        let e = entries
            .iter()
            .find(|e| e.stored_range().contains(&(pos as u64)))
            .unwrap();
        let r = e.stored_range();
        assert_corrupt(
            decode_chunk(
                &bad[r.start as usize..r.end as usize],
                e.raw_len,
                e.compressed,
                &e.chunk,
            ),
            &format!("chunk byte {pos} (compressed: {})", e.compressed),
        );
        assert_corrupt(verify_pack(&bad), &format!("verify_pack, byte {pos}"));
        assert_ne!(PackId::of(&bad), pack.id);
    }
}

#[test]
fn decode_chunk_rejects_wrong_sizes_and_ids() {
    let text = text_bytes(1, 4000);
    let id = ChunkId::of(&text);
    let frame = zstd::bulk::compress(&text, 3).unwrap();
    assert!(frame.len() < text.len());
    let n = text.len() as u32;
    assert_eq!(&decode_chunk(&frame, n, true, &id).unwrap()[..], &text[..]);
    // Index raw length disagreeing with the frame, either way.
    assert_corrupt(decode_chunk(&frame, n - 1, true, &id), "raw_len too small");
    assert_corrupt(decode_chunk(&frame, n + 1, true, &id), "raw_len too large");
    // Truncated frame, trailing garbage, not a frame at all.
    assert_corrupt(
        decode_chunk(&frame[..frame.len() - 1], n, true, &id),
        "truncated frame",
    );
    let mut extended = frame.clone();
    extended.push(0);
    assert_corrupt(decode_chunk(&extended, n, true, &id), "trailing byte");
    assert_corrupt(
        decode_chunk(&text, n, true, &id),
        "raw bytes flagged compressed",
    );
    assert_corrupt(decode_chunk(&[], 0, true, &ChunkId::of(b"")), "empty frame");
    // Two concatenated frames are not one chunk.
    let mut two = frame.clone();
    two.extend_from_slice(&frame);
    assert_corrupt(decode_chunk(&two, 2 * n, true, &id), "two frames");
    // Raw chunk: exact length required, hash checked.
    assert_corrupt(
        decode_chunk(&text, n + 1, false, &id),
        "raw length mismatch",
    );
    assert_corrupt(decode_chunk(&text[1..], n - 1, false, &id), "raw short");
    assert_corrupt(
        decode_chunk(&text, n, false, &ChunkId::of(b"x")),
        "raw wrong id",
    );
    assert_corrupt(
        decode_chunk(&frame, n, true, &ChunkId::of(b"x")),
        "compressed wrong id",
    );
    // A frame that says its size nowhere is rejected up front.
    let mut cctx = zstd::bulk::Compressor::new(3).unwrap();
    cctx.include_contentsize(false).unwrap();
    let sizeless = cctx.compress(&text).unwrap();
    assert_corrupt(
        decode_chunk(&sizeless, n, true, &id),
        "frame without content size",
    );
}

#[test]
fn zstd_bomb_is_corrupt_not_an_allocation() {
    // 64 MiB of zeros compress to a few KiB; the index claims 1000 bytes.
    let zeros = vec![0u8; 64 << 20];
    let id = ChunkId::of(&zeros);
    let bomb = zstd::bulk::compress(&zeros, 3).unwrap();
    assert!(bomb.len() < 1 << 16);
    assert_corrupt(decode_chunk(&bomb, 1000, true, &id), "bomb, declared size");
    // Same bomb without a declared size: still refused before decompressing.
    let mut cctx = zstd::bulk::Compressor::new(3).unwrap();
    cctx.include_contentsize(false).unwrap();
    let sizeless = cctx.compress(&zeros).unwrap();
    assert_corrupt(
        decode_chunk(&sizeless, 1000, true, &id),
        "bomb, no declared size",
    );
    // The bounded decompression path itself also refuses to exceed raw_len.
    let mut out = Vec::with_capacity(1000);
    assert!(zstd::bulk::Decompressor::new()
        .unwrap()
        .decompress_to_buffer(&sizeless, &mut out)
        .is_err());
    assert!(out.capacity() < 1 << 20);
}

#[test]
fn truncated_or_extended_packs_are_rejected() {
    let pack = build(&sample_chunks());
    let bytes = &pack.bytes[..];
    for len in 0..bytes.len() {
        assert_corrupt(read_index(&bytes[..len]), &format!("first {len} bytes"));
        assert_corrupt(
            verify_pack(&bytes[..len]),
            &format!("verify first {len} bytes"),
        );
    }
    for cut in [1, 7, 100, bytes.len() - FOOTER_LEN] {
        assert_corrupt(
            read_index(&bytes[cut..]),
            &format!("missing first {cut} bytes"),
        );
    }
    let mut longer = bytes.to_vec();
    longer.insert(0, 0);
    assert_corrupt(read_index(&longer), "one byte prepended");
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert_corrupt(read_index(&longer), "one byte appended");
    assert_corrupt(
        parse_footer(&bytes[bytes.len() - FOOTER_LEN + 1..]),
        "short tail",
    );
}

fn reseal(index: &[u8], index_offset: u64) -> Vec<u8> {
    // A footer with a correct checksum over `index`, for testing the semantic checks.
    let footer = Footer {
        version: FORMAT_VERSION,
        chunk_count: (index.len() / ENTRY_LEN) as u32,
        index_offset,
        index_len: index.len() as u64,
        index_hash: *blake3::hash(index).as_bytes(),
    };
    footer.to_bytes().to_vec()
}

#[test]
fn checksummed_but_inconsistent_indexes_are_corrupt() {
    let pack = build(&sample_chunks());
    let bytes = &pack.bytes[..];
    let footer = parse_footer(bytes).unwrap();
    let data = &bytes[..footer.index_offset as usize];
    let index =
        bytes[footer.index_range().start as usize..footer.index_range().end as usize].to_vec();
    let rebuild = |index: &[u8], index_offset: u64| {
        let mut p = data.to_vec();
        p.extend_from_slice(index);
        p.extend_from_slice(&reseal(index, index_offset));
        p
    };
    // Sanity: resealing the genuine index gives the genuine pack.
    assert_eq!(rebuild(&index, footer.index_offset), bytes);

    let flags_at = |i: usize| i * ENTRY_LEN + ENTRY_LEN - 1;
    let first_text = pack.entries.iter().position(|e| e.compressed).unwrap();
    let first_raw = pack.entries.iter().position(|e| !e.compressed).unwrap();

    let mut bad = index.clone();
    bad[flags_at(first_text)] |= 0x02;
    assert_corrupt(
        read_index(&rebuild(&bad, footer.index_offset)),
        "unknown flag bit",
    );

    let mut bad = index.clone();
    bad[flags_at(first_text)] = 0;
    assert_corrupt(
        read_index(&rebuild(&bad, footer.index_offset)),
        "compressed marked raw",
    );

    let mut bad = index.clone();
    bad[flags_at(first_raw)] = FLAG_ZSTD;
    assert_corrupt(
        read_index(&rebuild(&bad, footer.index_offset)),
        "raw marked compressed",
    );

    // Offsets not back to back.
    let mut bad = index.clone();
    bad[ENTRY_LEN + 32 + 7] ^= 1;
    assert_corrupt(
        read_index(&rebuild(&bad, footer.index_offset)),
        "gap between chunks",
    );

    // Same chunk listed twice (second record copies the first).
    let mut two = index[..ENTRY_LEN].to_vec();
    two.extend_from_slice(&index[..ENTRY_LEN]);
    let mut second_offset = u64::from(pack.entries[0].stored_len).to_be_bytes().to_vec();
    two[ENTRY_LEN + 32..ENTRY_LEN + 40].swap_with_slice(&mut second_offset);
    let mut p = data[..2 * pack.entries[0].stored_len as usize].to_vec();
    p[pack.entries[0].stored_len as usize..]
        .copy_from_slice(&data[..pack.entries[0].stored_len as usize]);
    p.extend_from_slice(&two);
    p.extend_from_slice(&reseal(&two, 2 * u64::from(pack.entries[0].stored_len)));
    assert_corrupt(read_index(&p), "duplicate chunk id");

    // Index offset not where the chunks end (with a consistent total length).
    let mut p = data.to_vec();
    p.push(0);
    p.extend_from_slice(&index);
    p.extend_from_slice(&reseal(&index, footer.index_offset + 1));
    assert_corrupt(read_index(&p), "stray byte before the index");

    // Footer fields: version and magic.
    let mut p = bytes.to_vec();
    let f = p.len() - FOOTER_LEN;
    p[f + 11] = 2;
    let err = read_index(&p).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("version 2"), "{err}");
    let mut p = bytes.to_vec();
    p[f] = b's';
    assert!(read_index(&p).unwrap_err().to_string().contains("magic"));
}

#[test]
fn empty_pack_is_refused_by_the_builder_but_readable() {
    let err = PackBuilder::new(100, 3).finish().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A footer alone is a well-formed pack holding nothing.
    let footer_only = reseal(&[], 0);
    assert_eq!(footer_only.len(), FOOTER_LEN);
    assert_eq!(read_index(&footer_only).unwrap(), vec![]);
    assert_eq!(verify_pack(&footer_only).unwrap(), vec![]);
    assert_eq!(index_via_tail(&footer_only).unwrap(), vec![]);
}

#[test]
fn empty_and_tiny_chunks() {
    let chunks = vec![Vec::new(), vec![7u8], vec![0u8; 3], b"ab".to_vec()];
    let pack = build(&chunks);
    assert_eq!(pack.entries.len(), 4);
    assert!(pack.entries.iter().all(|e| !e.compressed));
    assert_eq!(pack.entries[0].stored_len, 0);
    for (e, raw) in pack.entries.iter().zip(&chunks) {
        assert_eq!(&extract_chunk(&pack.bytes, e).unwrap()[..], &raw[..]);
    }
    assert_eq!(verify_pack(&pack.bytes).unwrap(), pack.entries);
}

#[test]
fn zstd_levels_are_clamped_and_all_work() {
    let chunks = sample_chunks();
    for level in [i32::MIN, -5, 0, 1, 3, 19, 22, 1000] {
        let mut b = PackBuilder::new(1 << 20, level);
        for c in &chunks {
            b.add(ChunkId::of(c), c).unwrap();
        }
        let pack = b.finish().unwrap();
        assert_eq!(
            verify_pack(&pack.bytes).unwrap(),
            pack.entries,
            "level {level}"
        );
    }
}

#[test]
fn pack_id_hex_parse_display_and_serde() {
    let id = PackId::of(b"pack");
    assert_eq!(id, PackId::from(blake3::hash(b"pack")));
    let hex = id.to_string();
    assert_eq!(hex.len(), 64);
    assert_eq!(hex, hex.to_lowercase());
    assert_eq!(hex.parse::<PackId>().unwrap(), id);
    assert_eq!(hex.to_uppercase().parse::<PackId>().unwrap(), id);
    assert_eq!(id.short(), hex[..12]);
    assert_eq!(format!("{id:?}"), format!("PackId({})", &hex[..12]));
    assert_eq!(PackId::from_slice(id.as_bytes()).unwrap(), id);
    assert_eq!(PackId::from_bytes(*id.as_bytes()), id);
    assert_eq!(
        PackId::from_slice(&[0; 31]).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    for bad in [
        "",
        "abc",
        &"g".repeat(64),
        &"a".repeat(63),
        &"a".repeat(65),
        &"é".repeat(32),
    ] {
        assert_eq!(
            bad.parse::<PackId>().unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{bad}"
        );
    }
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{hex}\""));
    assert_eq!(serde_json::from_str::<PackId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<PackId>("\"zz\"").is_err());
}

#[test]
fn builder_and_pack_are_send_and_sync() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<PackBuilder>();
    send::<BuiltPack>();
    sync::<BuiltPack>();
}

// ---------------------------------------------------------------------------------------
// coalesce
// ---------------------------------------------------------------------------------------

#[test]
fn coalesce_merges_adjacent_and_near_spans() {
    // Adjacent spans merge even with max_gap 0.
    let f = coalesce(&[(0, 10), (10, 5), (15, 1)], 0, u64::MAX);
    assert_eq!(
        f,
        vec![Fetch {
            range: 0..16,
            members: vec![0, 1, 2]
        }]
    );
    // A gap of exactly max_gap merges; one byte more does not.
    let spans = [(0, 10), (14, 6), (30, 10)];
    let f = coalesce(&spans, 4, u64::MAX);
    assert_eq!(
        f,
        vec![
            Fetch {
                range: 0..20,
                members: vec![0, 1]
            },
            Fetch {
                range: 30..40,
                members: vec![2]
            }
        ]
    );
    let f = coalesce(&spans, 3, u64::MAX);
    assert_eq!(f.len(), 3);
    let f = coalesce(&spans, 10, u64::MAX);
    assert_eq!(
        f,
        vec![Fetch {
            range: 0..40,
            members: vec![0, 1, 2]
        }]
    );
    // Slicing each member out of its read.
    let read = &f[0];
    assert_eq!(read.len(), 40);
    assert_eq!(read.local(14, 6), Some(14..20));
    assert_eq!(read.local(30, 10), Some(30..40));
    assert_eq!(read.local(35, 10), None);
    let f = coalesce(&[(100, 10), (110, 10)], 0, u64::MAX);
    assert_eq!(f[0].local(110, 10), Some(10..20));
    assert_eq!(f[0].local(90, 10), None);
}

#[test]
fn coalesce_sorts_dedups_and_respects_max_len() {
    assert!(coalesce(&[], 100, u64::MAX).is_empty());
    // Input order does not matter; members come back in offset order.
    let f = coalesce(&[(20, 10), (0, 10), (10, 10)], 0, u64::MAX);
    assert_eq!(
        f,
        vec![Fetch {
            range: 0..30,
            members: vec![1, 2, 0]
        }]
    );
    // A chunk used twice is fetched once.
    let f = coalesce(&[(0, 10), (50, 10), (0, 10)], 0, u64::MAX);
    assert_eq!(
        f,
        vec![
            Fetch {
                range: 0..10,
                members: vec![0, 2]
            },
            Fetch {
                range: 50..60,
                members: vec![1]
            }
        ]
    );
    // max_len caps a read; a span longer than max_len stands alone.
    let f = coalesce(&[(0, 10), (10, 10), (20, 10), (30, 50), (80, 5)], 0, 20);
    let ranges: Vec<_> = f.iter().map(|f| f.range.clone()).collect();
    assert_eq!(ranges, vec![0..20, 20..30, 30..80, 80..85]);
    // ...and its duplicate does not cost another read.
    let f = coalesce(&[(0, 100), (0, 100)], 0, 50);
    assert_eq!(
        f,
        vec![Fetch {
            range: 0..100,
            members: vec![0, 1]
        }]
    );
    // Zero-length spans ride along.
    let f = coalesce(&[(0, 10), (10, 0)], 0, 10);
    assert_eq!(
        f,
        vec![Fetch {
            range: 0..10,
            members: vec![0, 1]
        }]
    );
}

#[test]
fn coalesced_reads_decode_real_pack_chunks() {
    let chunks = sample_chunks();
    let pack = build(&chunks);
    // Want chunks 0, 1, 2 and 4 (not 3): with a small max_gap, two reads.
    let want = [0usize, 1, 2, 4];
    let spans: Vec<_> = want.iter().map(|&i| pack.entries[i].span()).collect();
    let reads = coalesce(&spans, 16, u64::MAX);
    let gap = pack.entries[3].stored_len as u64;
    assert_eq!(reads.len(), if gap <= 16 { 1 } else { 2 });
    let mut seen = 0;
    for read in &reads {
        let fetched = &pack.bytes[read.range.start as usize..read.range.end as usize];
        for &m in &read.members {
            let e = &pack.entries[want[m]];
            let local = read.local(e.offset, e.stored_len).unwrap();
            let got = e.decode(&fetched[local]).unwrap();
            assert_eq!(&got[..], &chunks[want[m]][..]);
            seen += 1;
        }
    }
    assert_eq!(seen, want.len());
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

fn chunk_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Arbitrary (mostly incompressible) bytes, including empty.
        proptest::collection::vec(any::<u8>(), 0..3000),
        // Runs of one byte (very compressible, including 1-byte chunks that are not).
        (any::<u8>(), 0usize..5000).prop_map(|(b, n)| vec![b; n]),
        // Text.
        (any::<u16>(), 0usize..4000).prop_map(|(seed, n)| text_bytes(seed as usize, n)),
        // Random.
        (any::<u64>(), 0usize..4000).prop_map(|(seed, n)| random_bytes(seed, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_chunk_sets_round_trip(
        chunks in proptest::collection::vec(chunk_strategy(), 0..24),
        level in -3i32..12,
    ) {
        let mut b = PackBuilder::new(8192, level);
        for c in &chunks {
            b.add(ChunkId::of(c), c).unwrap();
        }
        let mut distinct: Vec<&Vec<u8>> = Vec::new();
        for c in &chunks {
            if !distinct.contains(&c) {
                distinct.push(c);
            }
        }
        prop_assert_eq!(b.chunk_count(), distinct.len());
        let stored_so_far = b.len_bytes();
        if distinct.is_empty() {
            prop_assert_eq!(b.finish().unwrap_err().kind(), ErrorKind::InvalidInput);
            return Ok(());
        }
        let pack = b.finish().unwrap();
        prop_assert_eq!(pack.id, PackId::of(&pack.bytes));
        prop_assert_eq!(
            pack.bytes.len(),
            stored_so_far + distinct.len() * ENTRY_LEN + FOOTER_LEN
        );
        prop_assert_eq!(&read_index(&pack.bytes).unwrap(), &pack.entries);
        prop_assert_eq!(&index_via_tail(&pack.bytes).unwrap(), &pack.entries);
        prop_assert_eq!(&verify_pack(&pack.bytes).unwrap(), &pack.entries);
        for (e, raw) in pack.entries.iter().zip(&distinct) {
            prop_assert_eq!(e.chunk, ChunkId::of(raw));
            prop_assert_eq!(e.raw_len as usize, raw.len());
            if e.compressed {
                prop_assert!(e.stored_len < e.raw_len);
            } else {
                prop_assert_eq!(e.stored_len, e.raw_len);
            }
            let got = extract_chunk(&pack.bytes, e).unwrap();
            prop_assert_eq!(&got[..], &raw[..]);
        }
    }

    #[test]
    fn coalesce_covers_every_span_once_with_disjoint_sorted_reads(
        spans in proptest::collection::vec((0u64..10_000, 0u32..500), 0..40),
        max_gap in 0u64..300,
        max_len in prop_oneof![Just(u64::MAX), 0u64..2000],
    ) {
        let reads = coalesce(&spans, max_gap, max_len);
        let mut count = vec![0usize; spans.len()];
        for r in &reads {
            prop_assert!(!r.members.is_empty());
            for &m in &r.members {
                count[m] += 1;
                let (o, l) = spans[m];
                prop_assert!(r.local(o, l).is_some());
            }
            // A read is exactly the hull of its members.
            let start = r.members.iter().map(|&m| spans[m].0).min().unwrap();
            let end = r.members.iter().map(|&m| spans[m].0 + u64::from(spans[m].1)).max().unwrap();
            prop_assert_eq!(r.range.clone(), start..end);
        }
        prop_assert!(count.iter().all(|&c| c == 1));
        for w in reads.windows(2) {
            // Disjoint, ordered, and not merged only for a reason.
            prop_assert!(w[0].range.end <= w[1].range.start);
            let gap = w[1].range.start - w[0].range.end;
            let first_of_next = spans[w[1].members[0]];
            let merged_len = (first_of_next.0 + u64::from(first_of_next.1)).max(w[0].range.end)
                - w[0].range.start;
            prop_assert!(gap > max_gap || merged_len > max_len);
        }
    }
}

#[test]
fn probe_stores_incompressible_raw_and_finds_compressible_tails() {
    let random = random_bytes(11, 64 * 1024);
    let text = text_bytes(1, 64 * 1024);
    // Random for most of the chunk, text at the end: the end sample finds it.
    let mut tail = random_bytes(12, 48 * 1024);
    tail.extend_from_slice(&text_bytes(2, 16 * 1024));
    let pack = build(&[random.clone(), text.clone(), tail.clone()]);
    let flags: Vec<bool> = pack.entries.iter().map(|e| e.compressed).collect();
    assert_eq!(flags, vec![false, true, true]);
    for (e, raw) in pack.entries.iter().zip([&random, &text, &tail]) {
        assert!(e.compressed || e.stored_len as usize == raw.len());
    }
}
