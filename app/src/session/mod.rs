//! What a job needs beyond the engine, shared by the command line and the
//! window: how devices are opened ([`cache`]), the NBD share of a source
//! ([`share`]), how the source's writes are tracked ([`tracking`]), saved
//! state and resuming ([`resume`]), fixing up a target of another size
//! ([`sizes`]), a compressed image's target ([`flash`]), and the demo's
//! generated world ([`demo`]).

mod cache;
pub mod demo;
pub mod flash;
pub mod resume;
pub mod share;
pub mod sizes;
pub mod target;
pub mod tracking;

pub use cache::Cache;
