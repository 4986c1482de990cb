//! The pack half of fsck: pack records against their objects (existence, size, index,
//! `live_bytes`), and objects under the tiers' pack prefixes against the records
//! (orphans). Both walk in pages: records by name, objects by key.

use std::collections::HashMap;

use super::{Problem, ProblemKind, Repair, Run, PAGE};
use crate::error::{ErrorKind, Result};
use crate::id::ChunkId;
use crate::meta::PackRecord;
use crate::model::{Health, Location, Tier};
use crate::object::{ObjectMeta, ObjectStore};
use crate::pack::PackEntry;
use crate::store::Store;
use crate::tier::{parse_pack_name, read_index};

impl Store {
    /// Every pack record of `tier` against its object.
    pub(super) async fn fsck_pack_records(&self, tier: Tier, run: &mut Run) -> Result<()> {
        let prefix = format!("{}/", tier.as_str());
        let store = self.inner.tiers.get(tier)?.store().clone();
        // Names sort by tier (`cold/…` < `warm/…`): start after the bare prefix and
        // stop at the first name of another tier.
        let mut after = prefix.clone();
        loop {
            let page = self.inner.meta.list_packs(Some(&after), PAGE).await?;
            let mut done = page.len() < PAGE;
            for rec in page {
                if !rec.id.starts_with(&prefix) {
                    done = true;
                    break;
                }
                after.clone_from(&rec.id);
                self.fsck_pack(&rec, store.as_ref(), run).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// One pack record: its object exists with the recorded size, its index lists
    /// every copy recorded in it, and `live_bytes` sums those copies.
    async fn fsck_pack(
        &self,
        rec: &PackRecord,
        store: &dyn ObjectStore,
        run: &mut Run,
    ) -> Result<()> {
        let meta = &self.inner.meta;
        let name = rec.id.as_str();
        run.report.packs_checked += 1;
        if let Err(e) = parse_pack_name(name) {
            run.bad_packs.insert(name.to_string());
            let mut p = Problem::pack(ProblemKind::CorruptPack, name, e.to_string());
            if run.report.repair {
                p.repair = Some(Repair::NotRepaired("no object can have this name".into()));
            }
            run.push(p);
            return Ok(());
        }
        let copies = meta.pack_locations(name).await?;
        let head = match store.head(name).await {
            Ok(head) => head,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return self.missing_pack(name, store, &copies, run).await;
            }
            Err(e) => return Err(e),
        };
        self.fsck_pack_object(rec, &head, store, &copies, run)
            .await?;
        let live: u64 = copies.iter().map(|l| l.length).sum();
        if live != rec.live_bytes {
            let mut p = Problem::pack(
                ProblemKind::LiveBytesMismatch,
                name,
                format!(
                    "live_bytes is {}, the {} copies recorded in it hold {live}",
                    rec.live_bytes,
                    copies.len()
                ),
            );
            if run.report.repair {
                p.repair = Some(match meta.recount_pack_live_bytes(name).await? {
                    Some(n) => Repair::Repaired(format!("live_bytes recounted: {n}")),
                    None => Repair::NotRepaired("the record is gone (pack gc)".into()),
                });
            }
            run.push(p);
        }
        Ok(())
    }

    /// A pack record whose object is gone: its copies are missing.
    async fn missing_pack(
        &self,
        name: &str,
        store: &dyn ObjectStore,
        copies: &[Location],
        run: &mut Run,
    ) -> Result<()> {
        run.bad_packs.insert(name.to_string());
        let mut p = Problem::pack(
            ProblemKind::MissingPackObject,
            name,
            format!(
                "the object is not in {} ({} copies recorded in it)",
                store.describe(),
                copies.len()
            ),
        );
        if run.report.repair {
            let unmarked: Vec<Location> = copies
                .iter()
                .filter(|l| l.health != Health::Missing)
                .cloned()
                .collect();
            self.mark_copies(&unmarked, Health::Missing, "pack object not found")
                .await?;
            p.repair = Some(if copies.is_empty() {
                Repair::NotRepaired(
                    "no copy names it: pack gc deletes the record after the grace period".into(),
                )
            } else {
                Repair::Marked(format!("{} copies marked missing", copies.len()))
            });
        }
        run.push(p);
        Ok(())
    }

    /// The object of an existing pack record: size, and the index against the copies
    /// (archived objects, unreadable without a restore, by HEAD only).
    async fn fsck_pack_object(
        &self,
        rec: &PackRecord,
        head: &ObjectMeta,
        store: &dyn ObjectStore,
        copies: &[Location],
        run: &mut Run,
    ) -> Result<()> {
        let name = rec.id.as_str();
        let mut faults: Vec<String> = Vec::new();
        if head.size != rec.size {
            faults.push(format!(
                "the object is {} bytes, its record says {}",
                head.size, rec.size
            ));
        }
        let index = if head.storage_class.needs_restore() {
            None
        } else {
            run.report.indexes_read += 1;
            match read_index(store, name, head.size).await {
                Ok(entries) => Some(entries),
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    faults.push(format!("its index is unreadable: {e}"));
                    None
                }
                Err(e) => return Err(e),
            }
        };
        // Copies past the object's end cannot be read whatever else holds.
        let past_end: Vec<Location> = copies
            .iter()
            .filter(|l| l.offset.saturating_add(l.length) > head.size)
            .cloned()
            .collect();
        if let Some(entries) = index {
            self.compare_index(name, &entries, copies, run).await?;
        } else if !past_end.is_empty() {
            faults.push(format!("{} copies end past its end", past_end.len()));
        }
        if faults.is_empty() {
            return Ok(());
        }
        for l in &past_end {
            run.bad_copies.insert((l.chunk, l.pack.clone()));
        }
        let mut p = Problem::pack(ProblemKind::CorruptPack, name, faults.join("; "));
        if run.report.repair {
            self.mark_copies(
                &past_end,
                Health::Corrupt,
                "copy ends past the pack object's end",
            )
            .await?;
            p.repair = Some(if past_end.is_empty() {
                Repair::NotRepaired(
                    "the object is damaged; its copies are checked as they are read, and pack gc deletes it once no copy names it".into(),
                )
            } else {
                Repair::Marked(format!(
                    "{} copies past the object's end marked corrupt",
                    past_end.len()
                ))
            });
        }
        run.push(p);
        Ok(())
    }

    /// Every copy recorded in a pack must be in its index at that offset and length.
    async fn compare_index(
        &self,
        name: &str,
        entries: &[PackEntry],
        copies: &[Location],
        run: &mut Run,
    ) -> Result<()> {
        let by_chunk: HashMap<ChunkId, &PackEntry> = entries.iter().map(|e| (e.chunk, e)).collect();
        for l in copies {
            let detail = match by_chunk.get(&l.chunk) {
                Some(e) if e.offset == l.offset && u64::from(e.stored_len) == l.length => continue,
                Some(e) => format!(
                    "recorded at {}+{}, the pack's index has it at {}+{}",
                    l.offset, l.length, e.offset, e.stored_len
                ),
                None => format!(
                    "recorded at {}+{}, the pack's index does not list it",
                    l.offset, l.length
                ),
            };
            run.bad_copies.insert((l.chunk, l.pack.clone()));
            let mut p = Problem::chunk(ProblemKind::PackIndexMismatch, l.chunk, detail);
            p.pack = Some(name.to_string());
            if run.report.repair {
                self.mark_copies(
                    std::slice::from_ref(l),
                    Health::Corrupt,
                    "not in the pack's index",
                )
                .await?;
                p.repair = Some(Repair::Marked("copy marked corrupt".into()));
            }
            run.push(p);
        }
        Ok(())
    }

    /// Every object under `tier`'s pack prefix against the pack records.
    pub(super) async fn fsck_objects(&self, tier: Tier, run: &mut Run) -> Result<()> {
        let prefix = format!("{}/", tier.as_str());
        let store = self.inner.tiers.get(tier)?.store().clone();
        let mut after: Option<String> = None;
        loop {
            let page = store.list_page(&prefix, after.as_deref(), PAGE).await?;
            let done = page.len() < PAGE;
            for object in page {
                run.report.objects_listed += 1;
                self.fsck_object(&object, store.as_ref(), run).await?;
                after = Some(object.key);
            }
            if done {
                return Ok(());
            }
        }
    }

    /// One object: named by a pack record, or an orphan.
    async fn fsck_object(
        &self,
        object: &ObjectMeta,
        store: &dyn ObjectStore,
        run: &mut Run,
    ) -> Result<()> {
        let meta = &self.inner.meta;
        let key = object.key.as_str();
        // Looked up now, after the listing: a pack committed since is not an orphan.
        if meta.pack(key).await?.is_some() {
            return Ok(());
        }
        let copies = meta.pack_locations(key).await?;
        if !copies.is_empty() {
            let mut p = Problem::pack(
                ProblemKind::UnrecordedPack,
                key,
                format!("{} copies name it, but it has no pack record", copies.len()),
            );
            if run.report.repair {
                p.repair = Some(Repair::NotRepaired(
                    "kept: copies are read from it; its record must be written again".into(),
                ));
            }
            run.push(p);
            return Ok(());
        }
        let grace_ms = self.inner.settings.gc.grace_secs.saturating_mul(1000);
        let now = self.now_ms();
        let age_ms = object.last_modified_ms.map(|t| now.saturating_sub(t));
        if let Some(age) = age_ms.filter(|a| *a < grace_ms) {
            run.push(Problem::pack(
                ProblemKind::OrphanAwaitingGrace,
                key,
                format!(
                    "no pack record names it; written {} s ago, within the {} s grace period",
                    age / 1000,
                    grace_ms / 1000
                ),
            ));
            return Ok(());
        }
        let age = age_ms.map_or("at an unknown time".into(), |a| {
            format!("{} s ago", a / 1000)
        });
        let mut p = Problem::pack(
            ProblemKind::OrphanObject,
            key,
            format!(
                "no pack record names it; {} bytes written {age}, past the {} s grace period",
                object.size,
                grace_ms / 1000
            ),
        );
        if run.report.repair {
            p.repair = Some(self.delete_orphan(key, store, grace_ms).await?);
        }
        run.push(p);
        Ok(())
    }

    /// Delete an orphan object after checking again, right before, that no record or
    /// copy names it and that it was not written again within the grace period (pack
    /// names come from their content, so a put may write the same key anew).
    async fn delete_orphan(
        &self,
        key: &str,
        store: &dyn ObjectStore,
        grace_ms: u64,
    ) -> Result<Repair> {
        // Under the delete intent, as gc deletes: a writer of the same name either is
        // seen here or backs off until the intent is released.
        let Some(intent) = self.inner.intents.begin_delete(key).await? else {
            return Ok(Repair::NotRepaired("a writer is writing it now".into()));
        };
        let res = self.delete_orphan_under(key, store, grace_ms).await;
        intent.finish().await;
        res
    }

    async fn delete_orphan_under(
        &self,
        key: &str,
        store: &dyn ObjectStore,
        grace_ms: u64,
    ) -> Result<Repair> {
        let meta = &self.inner.meta;
        if meta.pack(key).await?.is_some() || !meta.pack_locations(key).await?.is_empty() {
            return Ok(Repair::NotRepaired(
                "a pack record or copy names it now".into(),
            ));
        }
        let head = match store.head(key).await {
            Ok(head) => head,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Repair::Repaired("already gone".into()))
            }
            Err(e) => return Err(e),
        };
        let Some(written) = head.last_modified_ms else {
            return Ok(Repair::NotRepaired(
                "the store does not say when it was written".into(),
            ));
        };
        if self.now_ms().saturating_sub(written) < grace_ms {
            return Ok(Repair::NotRepaired("it was written again just now".into()));
        }
        store.delete(key).await?;
        Ok(Repair::Repaired("object deleted".into()))
    }
}
