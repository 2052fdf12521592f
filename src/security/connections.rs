//! Concurrent connections per client address (`max_connections_per_ip`): a count per address,
//! taken when a connection starts serving and given back when it ends. The table holds only
//! addresses with a live connection, so it is bounded by the open connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The live-connection counts of one listener.
#[derive(Debug)]
pub struct PerIpLimit {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct Slot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<IpAddr, u32>> {
        self.counts.lock()
    }

    /// A slot for `ip`, or `None` when it already holds `max` connections (the limit is passed
    /// each time: it comes from the current configuration).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: u32) -> Option<Slot> {
        let ip = ip.to_canonical();
        let mut counts = self.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot {
            limit: self.clone(),
            ip,
        })
    }

    /// Addresses with live connections (for tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.limit.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_forgets_idle_ones() {
        let limit = PerIpLimit::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let first = limit.acquire(a, 2).unwrap();
        let second = limit.acquire(mapped, 2).unwrap();
        assert!(
            limit.acquire(a, 2).is_none(),
            "a third connection is refused"
        );
        assert!(limit.acquire("10.0.0.2".parse().unwrap(), 2).is_some());
        // A reload that raises the limit lets the next one in.
        let raised = limit.acquire(a, 3).unwrap();
        drop((first, raised));
        let third = limit.acquire(a, 2).unwrap();
        drop((second, third));
        assert_eq!(limit.tracked(), 0);
    }
}
