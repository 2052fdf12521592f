//! Session affinity for inference upstreams: the key is `X-OpenWebUI-Chat-Id`, else
//! `X-OpenWebUI-User-Id`, else the body's `user`; servers are ranked by rendezvous hash so adding a
//! node moves about 1/N of sessions, and a server over the load bound overflows to the next rank.

use crate::balance::hashing::stable_hash;

/// The affinity key, by precedence: chat id, user id header, body `user`. Empty values are ignored.
pub fn session_key<'a>(
    chat_id: Option<&'a str>,
    user_id: Option<&'a str>,
    body_user: Option<&'a str>,
) -> Option<&'a str> {
    [chat_id, user_id, body_user]
        .into_iter()
        .flatten()
        .find(|k| !k.trim().is_empty())
}

/// Picks the highest-ranked server for `key` whose `load + 1` stays within `bound`; `servers` are
/// (stable id, load). Falls back to the least-loaded server when every one is over the bound.
/// Returns the index and whether it is the key's first choice.
pub fn rendezvous(key: &str, servers: &[(u64, f64)], bound: f64) -> Option<(usize, bool)> {
    let mut ranked: Vec<(u64, usize)> = servers
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (stable_hash(&[key.as_bytes(), &id.to_le_bytes()]), i))
        .collect();
    ranked.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    let first = ranked.first().map(|r| r.1);
    ranked
        .iter()
        .map(|(_, i)| *i)
        .find(|i| servers[*i].1 + 1.0 <= bound)
        .or_else(|| {
            servers
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(i, _)| i)
        })
        .map(|i| (i, Some(i) == first))
}

/// Requests over the mean a session's server may carry before the session overflows, however
/// light the pool: an inference server batches, so one or two more requests on it cost little,
/// while moving a chat costs recomputing its whole history on another server. (With one request
/// of slack, a chat's server overflowed whenever it served anyone else at a light load: 41% of
/// chats changed server between turns in the routing benchmark's `add` control.)
pub const MIN_SLACK: f64 = 2.0;

/// The load bound for affinity: a server may take a session's request while its load stays
/// within `factor × mean` (and at least [`MIN_SLACK`] over the mean).
pub fn load_bound(loads: impl Iterator<Item = f64>, factor: f64) -> f64 {
    let (sum, n) = loads.fold((0.0, 0usize), |(s, n), l| (s + l, n + 1));
    if n == 0 {
        return f64::INFINITY;
    }
    let mean = (sum + 1.0) / n as f64;
    (mean * factor).max(mean + MIN_SLACK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_precedence() {
        assert_eq!(session_key(Some("c"), Some("u"), Some("b")), Some("c"));
        assert_eq!(session_key(Some(" "), Some("u"), Some("b")), Some("u"));
        assert_eq!(session_key(None, None, Some("b")), Some("b"));
        assert_eq!(session_key(None, None, None), None);
    }

    #[test]
    fn stable_and_overflows() {
        let s = [(1, 0.0), (2, 0.0), (3, 0.0)];
        let first = rendezvous("chat-42", &s, 10.0);
        assert!(matches!(first, Some((_, true))));
        assert_eq!(rendezvous("chat-42", &s, 10.0), first);
        let mut loaded = s;
        let f = first.map_or(0, |f| f.0);
        loaded[f].1 = 10.0;
        let spill = rendezvous("chat-42", &loaded, 10.0);
        assert!(matches!(spill, Some((i, false)) if i != f));
        assert_eq!(rendezvous("x", &[], 1.0), None);
        // Light load: mean (2 + 1) / 3 = 1, so the slack decides: 1 + 2.
        assert!((load_bound([0.0, 0.0, 2.0].into_iter(), 1.25) - 3.0).abs() < 1e-9);
        // Heavy load: the factor decides: (36 + 1) / 4 × 1.25.
        let heavy = load_bound([9.0, 9.0, 9.0, 9.0].into_iter(), 1.25);
        assert!((heavy - 37.0 / 4.0 * 1.25).abs() < 1e-9);
    }

    #[test]
    fn a_lightly_loaded_pool_keeps_sessions_home() {
        let s = [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0)];
        let (home, _) = rendezvous("chat-7", &s, 10.0).expect("a server");
        // The home server serves another request and a neighbour one too: still home.
        let mut busy = s;
        busy[home].1 = 1.0;
        busy[(home + 1) % 4].1 = 1.0;
        let bound = load_bound(busy.iter().map(|s| s.1), 1.25);
        assert_eq!(rendezvous("chat-7", &busy, bound), Some((home, true)));
        // Three more than the rest: it overflows.
        busy[home].1 = 4.0;
        let bound = load_bound(busy.iter().map(|s| s.1), 1.25);
        assert!(matches!(rendezvous("chat-7", &busy, bound), Some((i, false)) if i != home));
    }

    #[test]
    fn adding_a_node_moves_about_one_nth() {
        let three = [(1, 0.0), (2, 0.0), (3, 0.0)];
        let four = [(1, 0.0), (2, 0.0), (3, 0.0), (4, 0.0)];
        let moved = (0..1000)
            .filter(|i| {
                let k = format!("s{i}");
                rendezvous(&k, &three, 99.0).map(|r| r.0)
                    != rendezvous(&k, &four, 99.0).map(|r| r.0)
            })
            .count();
        assert!((150..350).contains(&moved), "moved {moved} of 1000");
    }
}
