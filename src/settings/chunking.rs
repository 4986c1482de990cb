//! The `[chunking]` section of the settings file, and the checks of its values.

use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::model::ChunkerParams;

/// The `[chunking]` section as written. `ChunkerParams` is also the stored form of a
/// manifest's parameters, where every field must be present; in a settings file each
/// key defaults on its own and an unknown one is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ChunkingSection {
    min: u32,
    avg: u32,
    max: u32,
}

impl Default for ChunkingSection {
    fn default() -> Self {
        let d = ChunkerParams::default();
        ChunkingSection {
            min: d.min,
            avg: d.avg,
            max: d.max,
        }
    }
}

/// Deserialize `[chunking]` through [`ChunkingSection`].
pub(super) fn chunking_section<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<ChunkerParams, D::Error> {
    let s = ChunkingSection::deserialize(d)?;
    Ok(ChunkerParams {
        min: s.min,
        avg: s.avg,
        max: s.max,
    })
}

/// Check `[chunking]` against FastCDC's bounds, naming the key at fault.
pub(super) fn validate_chunking(c: &ChunkerParams) -> Result<()> {
    use fastcdc::v2020 as cdc;
    for (key, value, lo, hi) in [
        ("min", c.min, cdc::MINIMUM_MIN, cdc::MINIMUM_MAX),
        ("avg", c.avg, cdc::AVERAGE_MIN, cdc::AVERAGE_MAX),
        ("max", c.max, cdc::MAXIMUM_MIN, cdc::MAXIMUM_MAX),
    ] {
        if !(lo..=hi).contains(&value) {
            return Err(Error::invalid(format!(
                "chunking.{key} = {value}: expected {lo} to {hi}"
            )));
        }
    }
    for (a, av, b, bv) in [("min", c.min, "avg", c.avg), ("avg", c.avg, "max", c.max)] {
        if av > bv {
            return Err(Error::invalid(format!(
                "chunking.{a} = {av} is larger than chunking.{b} = {bv}: need min <= avg <= max"
            )));
        }
    }
    c.validate()
}
