//! ACME: certificates issued and renewed by themselves. `manager` runs one task per ACME
//! certificate; `issue` is one order; `http01` holds the tokens the plain HTTP listener answers;
//! `dns01` publishes TXT records through a provider; `storage` keeps the account and
//! certificates in `state_dir`; `schedule` is the pure timing; `status` what `ferrogate certs`
//! and metrics show; `error` what can fail and whether waiting helps.

pub mod account;
pub mod dns01;
pub mod error;
pub mod http01;
pub mod issue;
pub mod manager;
pub mod metrics;
pub mod report;
pub mod schedule;
pub mod status;
pub mod storage;

pub use error::{AcmeError, CaStep};
pub use manager::{AcmeManager, AcmeReporting, CertPlan};
