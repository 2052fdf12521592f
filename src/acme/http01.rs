//! HTTP-01 challenge tokens: a long-lived map from token to key authorization, answered at
//! `/.well-known/acme-challenge/<token>` on the plain HTTP listener before any route.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// The URL path prefix ACME CAs fetch HTTP-01 tokens from.
pub const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Published tokens. Reads are lock-free; publishing copies the (small) map.
#[derive(Debug, Default)]
pub struct ChallengeTokens {
    tokens: ArcSwap<HashMap<String, Arc<str>>>,
}

impl ChallengeTokens {
    /// The key authorization for a request path, if it names a published token.
    pub fn answer(&self, path: &str) -> Option<Arc<str>> {
        let token = path.strip_prefix(CHALLENGE_PREFIX)?;
        self.tokens.load().get(token).cloned()
    }

    /// Publishes a token until [`ChallengeTokens::withdraw`] is called.
    pub fn publish(&self, token: &str, key_authorization: &str) {
        self.tokens.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(token.to_string(), Arc::from(key_authorization));
            next
        });
    }

    /// Removes a token.
    pub fn withdraw(&self, token: &str) {
        self.tokens.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.remove(token);
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_answer_withdraw() {
        let tokens = ChallengeTokens::default();
        let path = "/.well-known/acme-challenge/abc";
        assert!(tokens.answer(path).is_none());
        tokens.publish("abc", "abc.thumb");
        assert_eq!(tokens.answer(path).as_deref(), Some("abc.thumb"));
        assert!(tokens.answer("/other/abc").is_none());
        tokens.withdraw("abc");
        assert!(tokens.answer(path).is_none());
    }
}
