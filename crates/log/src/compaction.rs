//! Log compaction for `cleanup.policy=compact`: in every closed segment, keep only the latest
//! record of each key, drop tombstones older than `delete.retention.ms`, and keep offsets.
//!
//! A cleaned segment is written beside the original, fsynced, and renamed over it (then the
//! directory is fsynced), so a crash leaves either the old or the new segment, never a mix.
//! Appends are never blocked: the cleaner holds the partition lock only to swap a segment in.

use std::collections::HashMap;

use bytes::Bytes;
use runnel_records::{BatchBuilder, Batches, Compression, decode_records};

use crate::config::TopicConfig;
use crate::error::AppendError;
use crate::partition::Partition;

/// Most distinct key bytes held in memory while compacting one partition; above this the
/// partition is left uncompacted this round (and a warning says why).
pub const COMPACTION_KEY_BYTES_MAX: usize = 256 << 20;
/// Bytes read per step while scanning the partition for the latest offset of each key.
const SCAN_READ_BYTES: usize = 4 << 20;

fn corrupt(p: &Partition, detail: String) -> AppendError {
    AppendError::Io {
        path: p.dir().to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, detail),
    }
}

/// Compacts `p`'s closed segments if anything new was closed since the last run.
pub(crate) fn compact(p: &Partition, config: &TopicConfig, now_ms: i64) -> Result<(), AppendError> {
    let closed = p.closed_segments();
    let Some(&(_, closed_end, _, _, _)) = closed.last() else { return Ok(()) };
    if p.cleaned_up_to() >= closed_end {
        return Ok(());
    }
    // The latest offset of every key in the whole partition, active segment included.
    let mut latest: HashMap<Bytes, i64> = HashMap::new();
    let mut key_bytes = 0usize;
    let mut offset = p.log_start_offset();
    loop {
        let read = match p.read(offset, SCAN_READ_BYTES) {
            Ok(r) => r,
            Err(e) => return Err(corrupt(p, e.to_string())),
        };
        if read.records.is_empty() {
            break;
        }
        for batch in Batches::new(&read.records) {
            let (h, bytes) = batch.map_err(|e| corrupt(p, e.to_string()))?;
            for r in decode_records(bytes, p.decompressed_bytes_max()).map_err(|e| corrupt(p, e.to_string()))? {
                if let Some(k) = r.key {
                    if !latest.contains_key(&k) {
                        key_bytes += k.len();
                        if key_bytes > COMPACTION_KEY_BYTES_MAX {
                            tracing::warn!(
                                topic = p.topic(),
                                partition = p.index(),
                                "too many distinct keys to compact ({COMPACTION_KEY_BYTES_MAX} bytes of keys); skipping"
                            );
                            return Ok(());
                        }
                    }
                    latest.insert(k, r.offset);
                }
            }
            offset = h.next_offset();
        }
    }
    let storage = p.files().storage().clone();
    for (base, next, size, max_ts, path) in closed {
        if max_ts > now_ms.saturating_sub(config.min_compaction_lag_ms) {
            break;
        }
        let drop_tombstones = max_ts < now_ms.saturating_sub(config.delete_retention_ms);
        let file = p.files().get(&path, false).map_err(|e| corrupt(p, e.to_string()))?;
        let mut data = vec![0u8; size as usize];
        file.read_at(&mut data, 0).map_err(|e| corrupt(p, e.to_string()))?;
        let mut out = Vec::with_capacity(data.len());
        let mut changed = false;
        for batch in Batches::new(&data) {
            let (h, bytes) = batch.map_err(|e| corrupt(p, e.to_string()))?;
            if h.is_control() {
                out.extend_from_slice(bytes);
                continue;
            }
            let records = decode_records(bytes, p.decompressed_bytes_max()).map_err(|e| corrupt(p, e.to_string()))?;
            let total = records.len();
            let kept: Vec<_> = records
                .into_iter()
                .filter(|r| match &r.key {
                    None => true,
                    Some(k) => latest.get(k) == Some(&r.offset) && !(drop_tombstones && r.value.is_none()),
                })
                .collect();
            if kept.len() == total {
                out.extend_from_slice(bytes);
                continue;
            }
            changed = true;
            if kept.is_empty() {
                continue;
            }
            let mut builder =
                BatchBuilder::new().keep_offsets().producer(h.producer_id, h.producer_epoch, h.base_sequence);
            for r in kept {
                builder.push(r);
            }
            let codec = h.compression().unwrap_or(Compression::None);
            let rebuilt = builder.build(codec).map_err(|e| corrupt(p, e.to_string()))?;
            out.extend_from_slice(&rebuilt);
        }
        if !changed {
            continue;
        }
        let cleaned = path.with_extension("cleaned");
        let f = storage.open(&cleaned, true).map_err(|e| corrupt(p, e.to_string()))?;
        f.truncate(0).map_err(|e| corrupt(p, e.to_string()))?;
        f.write_at(&out, 0).map_err(|e| corrupt(p, e.to_string()))?;
        f.sync().map_err(|e| corrupt(p, e.to_string()))?;
        drop(f);
        let _ = next;
        p.swap_segment(base, size, &cleaned)?;
    }
    p.set_cleaned_up_to(closed_end);
    Ok(())
}
