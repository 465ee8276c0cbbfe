//! Integration tests of runnel-log, in one test binary: basic reads and appends, durability
//! under injected faults, a model-based property test, retention, compaction, the bounded
//! file-handle cache and persisted segment indexes.

mod basics;
mod common;
mod compaction;
mod crash;
mod durability;
mod handles;
mod indexes;
mod model;
mod retention;
