//! A route's compiled `rewrite` (and `strip_prefix`): the matched path prefix replaced, or a
//! regex replacement on the path. Applies to the path only; the query is kept as received. Pure.

use std::borrow::Cow;

use crate::config::model::Rewrite;

/// A compiled rewrite of the path sent upstream.
#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// The route's `path_prefix` (`matched`) replaced by `replacement`.
    Prefix {
        matched: String,
        replacement: String,
    },
    /// The first match of `pattern` replaced by `to`.
    Regex { pattern: regex::Regex, to: String },
}

impl PathRewrite {
    /// The rewrite of a route whose prefix is `path_prefix`.
    pub fn compile(rewrite: &Rewrite, path_prefix: &str) -> Self {
        match rewrite {
            Rewrite::Prefix(replacement) => Self::Prefix {
                matched: path_prefix.trim_end_matches('/').to_string(),
                replacement: replacement.trim_end_matches('/').to_string(),
            },
            Rewrite::Regex { pattern, to } => Self::Regex {
                pattern: pattern.regex().clone(),
                to: to.clone(),
            },
        }
    }

    /// The path to send for `path` (without query); always starts with `/`. `/owui/a` with
    /// prefix `/owui/` replaced by `/` gives `/a`; by `/v2/` gives `/v2/a`.
    pub fn apply<'a>(&self, path: &'a str) -> Cow<'a, str> {
        let rewritten = match self {
            Self::Prefix {
                matched,
                replacement,
            } => {
                let Some(rest) = path.strip_prefix(matched.as_str()) else {
                    return Cow::Borrowed(path);
                };
                Cow::Owned(format!("{replacement}{rest}"))
            }
            Self::Regex { pattern, to } => pattern.replace(path, to.as_str()),
        };
        if rewritten.starts_with('/') {
            rewritten
        } else {
            Cow::Owned(format!("/{rewritten}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::PathPattern;

    fn prefix(path_prefix: &str, replacement: &str) -> PathRewrite {
        PathRewrite::compile(&Rewrite::Prefix(replacement.into()), path_prefix)
    }

    #[test]
    fn a_prefix_rewrite_replaces_the_matched_prefix() {
        let strip = prefix("/owui/", "/");
        assert_eq!(strip.apply("/owui/a/b"), "/a/b");
        assert_eq!(strip.apply("/owui/"), "/");
        let strip = prefix("/api", "/");
        assert_eq!(strip.apply("/api"), "/");
        assert_eq!(strip.apply("/api/x"), "/x");
        let v2 = prefix("/api/", "/v2/");
        assert_eq!(v2.apply("/api/models"), "/v2/models");
        assert_eq!(v2.apply("/api/"), "/v2/");
        let under = prefix("/", "/app/");
        assert_eq!(under.apply("/x"), "/app/x");
        assert_eq!(under.apply("/"), "/app/");
        // A path the prefix does not fit stays as it is.
        assert_eq!(v2.apply("/other"), "/other");
    }

    #[test]
    fn strip_prefix_is_the_prefix_rewrite_to_root() {
        for (path_prefix, path) in [
            ("/owui/", "/owui/a"),
            ("/api", "/api"),
            ("/api", "/api/x/y"),
        ] {
            assert_eq!(
                prefix(path_prefix, "/").apply(path),
                super::super::strip_path_prefix(path_prefix, path),
                "{path_prefix} {path}"
            );
        }
    }

    #[test]
    fn a_regex_rewrite_replaces_its_first_match() {
        let rewrite = PathRewrite::compile(
            &Rewrite::Regex {
                pattern: PathPattern::new("^/old/(.*)$").unwrap(),
                to: "/new/$1".into(),
            },
            "/",
        );
        assert_eq!(rewrite.apply("/old/a/b"), "/new/a/b");
        assert_eq!(rewrite.apply("/other"), "/other");
        let relative = PathRewrite::Regex {
            pattern: regex::Regex::new("^/x/(.*)$").unwrap(),
            to: "$1".into(),
        };
        assert_eq!(relative.apply("/x/y"), "/y");
    }
}
