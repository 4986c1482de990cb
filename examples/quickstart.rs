//! The library API end to end on the embedded store: put, stat, get, ranged and
//! streamed reads, dedup, verify, delete, close.
//!
//! Run with `cargo run --release --example quickstart`.

use bytes::Bytes;
use futures::TryStreamExt;
use strata::{Settings, Store};

#[tokio::main]
async fn main() -> strata::Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-quickstart-{}", std::process::id()));
    let settings = Settings {
        data_dir: dir.clone(),
        ..Settings::default()
    };
    let store = Store::open(settings).await?;

    // 8 MiB of pseudo-random data: cut into ~64 KiB content-defined chunks.
    let mut data = vec![0u8; 8 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let data = Bytes::from(data);
    let receipt = store.put(data.clone()).await?;
    println!(
        "put: id {} ({} bytes, {} chunks, {} new)",
        receipt.id, receipt.size, receipt.chunks, receipt.new_chunks
    );
    assert_eq!(
        receipt.id,
        strata::BlobId::of(&data),
        "the id is the BLAKE3 of the content (b3sum)"
    );

    // A small edit in the middle stores only the chunks around it.
    let mut edited = data.to_vec();
    edited.splice(4 << 20..4 << 20, *b"an insertion");
    let second = store.put(Bytes::from(edited)).await?;
    println!(
        "put edited copy: {} of {} chunks new ({} bytes reused)",
        second.new_chunks, second.chunks, second.reused_bytes
    );

    let stat = store.stat(&receipt.id).await?;
    println!(
        "stat: {} bytes, {} chunks, hot {} bytes",
        stat.size, stat.chunks, stat.tiers.hot
    );

    let whole = store.get(&receipt.id).await?;
    assert_eq!(whole, data);
    let part = store.get_range(&receipt.id, 1_000_000..1_004_096).await?;
    assert_eq!(part, data.slice(1_000_000..1_004_096));
    let streamed: Vec<Bytes> = store
        .get_stream(&receipt.id, 0..receipt.size)
        .await?
        .try_collect()
        .await?;
    assert_eq!(
        streamed.iter().map(|b| b.len() as u64).sum::<u64>(),
        receipt.size
    );
    println!("get, get_range and get_stream returned verified bytes");

    let report = store.verify(None).await?;
    println!(
        "verify: {} chunks, {} bytes re-hashed, clean: {}",
        report.chunks_checked,
        report.bytes_checked,
        report.is_clean()
    );

    store.delete(&second.id).await?;
    println!(
        "deleted the edited copy; blobs left: {}",
        store.list().await?.len()
    );

    store.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
