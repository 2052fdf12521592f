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
pub fn rendezvous(key: &str, servers: &[(&str, usize)], bound: usize) -> Option<usize> {
    let mut ranked: Vec<(u64, usize)> = servers
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (stable_hash(&[key.as_bytes(), id.as_bytes()]), i))
        .collect();
    ranked.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
    ranked
        .iter()
        .map(|(_, i)| *i)
        .find(|i| servers[*i].1 < bound)
        .or_else(|| {
            servers
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.1)
                .map(|(i, _)| i)
        })
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
        let s = [("a:1", 0), ("b:1", 0), ("c:1", 0)];
        let first = rendezvous("chat-42", &s, 10);
        assert!(first.is_some());
        assert_eq!(rendezvous("chat-42", &s, 10), first);
        let mut loaded = s;
        let f = first.unwrap_or(0);
        loaded[f].1 = 10;
        let spill = rendezvous("chat-42", &loaded, 10);
        assert!(spill.is_some() && spill != first);
        assert_eq!(rendezvous("x", &[], 1), None);
    }

    #[test]
    fn adding_a_node_moves_about_one_nth() {
        let three = [("a", 0), ("b", 0), ("c", 0)];
        let four = [("a", 0), ("b", 0), ("c", 0), ("d", 0)];
        let moved = (0..1000)
            .filter(|i| {
                let k = format!("s{i}");
                rendezvous(&k, &three, 99) != rendezvous(&k, &four, 99)
            })
            .count();
        assert!((150..350).contains(&moved), "moved {moved} of 1000");
    }
}
