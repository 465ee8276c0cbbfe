//! Integration tests of runnel-functions (one test binary): deploying and invoking the
//! hand-written WAT examples against a fake [`Host`], containment of runaway functions,
//! and the compiled-component cache.

mod cache;
mod containment;
mod enrich;
mod fake;
mod http;
mod toolchain;
