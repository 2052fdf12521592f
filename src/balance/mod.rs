//! Server selection as pure logic: policies over a candidate set ([`policy`]), sticky-session
//! cookies ([`sticky`]), the sticky table with ttl ([`table`]) and the stable hash behind server
//! ids ([`hashing`]). The long-lived state they read lives in [`crate::pool`].

pub mod hashing;
pub mod policy;
pub mod sticky;
pub mod table;

pub use policy::{Candidate, WEIGHT_SCALE};
