//! Integration tests of runnel-functions (one test binary): deploying and invoking the
//! hand-written WAT examples against a fake [`Host`], containment of runaway functions,
//! the compiled-component cache, and the function service (topic, table, cron and HTTP
//! triggers, ordering, dead letters) over a real embedded log and SQL engine.

mod cache;
mod containment;
mod dead_letters;
mod endpoint;
mod enrich;
mod examples;
mod fake;
mod http;
mod ordering;
mod service;
mod stack;
mod toolchain;
mod triggers;
