//! Server health: the pure state machine ([`state`]: active rise/fall, passive ejection with
//! backoff, slow start) and the active HTTP checker that feeds it ([`checker`]). The state itself
//! is kept per server in the long-lived [`crate::pool`], so it survives reloads.

pub mod checker;
pub mod state;

pub use checker::HealthChecker;
