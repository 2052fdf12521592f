//! In-process tests of the simulator over real TCP.
