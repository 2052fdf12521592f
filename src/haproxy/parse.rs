//! haproxy.cfg as sections of directives, each directive with its line: HAProxy's own word
//! rules (white space separates words, `#` starts a comment, `\` escapes the next character,
//! `"…"` and `'…'` quote), and section keywords (`global`, `defaults`, `frontend`, `backend`,
//! `listen`, and the others, kept so they can be reported). Nothing here knows what a directive
//! means.

/// What kind of section a block is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionKind {
    Global,
    Defaults,
    Frontend,
    Backend,
    Listen,
    /// Any other section keyword (`userlist`, `peers`, `resolvers`, `cache`, …).
    Other(String),
}

impl SectionKind {
    fn from_keyword(word: &str) -> Option<Self> {
        Some(match word {
            "global" => Self::Global,
            "defaults" => Self::Defaults,
            "frontend" => Self::Frontend,
            "backend" => Self::Backend,
            "listen" => Self::Listen,
            "userlist" | "peers" | "resolvers" | "mailers" | "program" | "http-errors" | "ring"
            | "cache" | "fcgi-app" | "crt-store" | "traces" | "log-forward" => {
                Self::Other(word.to_string())
            }
            _ => return None,
        })
    }

    /// The keyword as written in the file.
    pub fn keyword(&self) -> &str {
        match self {
            Self::Global => "global",
            Self::Defaults => "defaults",
            Self::Frontend => "frontend",
            Self::Backend => "backend",
            Self::Listen => "listen",
            Self::Other(word) => word,
        }
    }
}

/// One directive: its words, unquoted and unescaped, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number.
    pub line: usize,
    pub words: Vec<String>,
}

impl Directive {
    /// The first word.
    pub fn keyword(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The word at `index`, if any.
    pub fn word(&self, index: usize) -> Option<&str> {
        self.words.get(index).map(String::as_str)
    }

    /// The words from `index` on.
    pub fn rest(&self, index: usize) -> &[String] {
        self.words.get(index..).unwrap_or(&[])
    }

    /// The directive as one line of text (for messages).
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

/// One section: its keyword, name, `from DEFAULTS` (HAProxy 2.4+) and directives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: SectionKind,
    pub name: Option<String>,
    /// `frontend NAME from DEFAULTS`: the named defaults section it inherits.
    pub from: Option<String>,
    /// The line of the section keyword.
    pub line: usize,
    pub directives: Vec<Directive>,
}

/// A line that could not be read as words, or stands outside any section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    pub line: usize,
    pub message: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub sections: Vec<Section>,
    /// Lines skipped, with why.
    pub problems: Vec<LineProblem>,
}

/// Characters a `\\` escapes; before any other character the backslash stays (`\\1`).
const ESCAPABLE: &str = " \t#\\'\"$";

/// Splits one line into words; `Err` for an unterminated quote or a trailing `\`.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\\' => {
                let escaped = chars
                    .next()
                    .ok_or_else(|| "a `\\` ends the line".to_string())?;
                if !ESCAPABLE.contains(escaped) {
                    // `\1` in a regex replacement stays as written.
                    word.push('\\');
                }
                word.push(escaped);
                in_word = true;
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("a `\"` is never closed".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            None => return Err("a `\\` ends the line".into()),
                            Some(escaped) => {
                                if !ESCAPABLE.contains(escaped) {
                                    word.push('\\');
                                }
                                word.push(escaped);
                            }
                        },
                        Some(other) => word.push(other),
                    }
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err("a `'` is never closed".into()),
                        Some('\'') => break,
                        Some(other) => word.push(other),
                    }
                }
            }
            other => {
                word.push(other);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Reads haproxy.cfg text. Never fails: lines it cannot use are listed in `problems`.
pub fn parse(text: &str) -> HaproxyConfig {
    let mut config = HaproxyConfig::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let words = match split_words(raw) {
            Ok(words) => words,
            Err(message) => {
                config.problems.push(LineProblem { line, message });
                continue;
            }
        };
        let Some(first) = words.first() else {
            continue;
        };
        if let Some(kind) = SectionKind::from_keyword(first) {
            let name = words.get(1).filter(|w| *w != "from").cloned();
            let from = words
                .iter()
                .position(|w| w == "from")
                .and_then(|i| words.get(i + 1))
                .cloned();
            config.sections.push(Section {
                kind,
                name,
                from,
                line,
                directives: Vec::new(),
            });
            continue;
        }
        match config.sections.last_mut() {
            Some(section) => section.directives.push(Directive { line, words }),
            None => config.problems.push(LineProblem {
                line,
                message: format!("`{first}` stands before any section"),
            }),
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_words(line).expect("words")
    }

    #[test]
    fn words_follow_haproxys_quoting_rules() {
        assert_eq!(
            words("  bind *:443 ssl crt /etc/x.pem  "),
            ["bind", "*:443", "ssl", "crt", "/etc/x.pem"]
        );
        assert_eq!(
            words("acl a path_beg /x # a comment"),
            ["acl", "a", "path_beg", "/x"]
        );
        assert_eq!(
            words(r#"http-request set-header X-A "two words" if { ssl_fc }"#),
            [
                "http-request",
                "set-header",
                "X-A",
                "two words",
                "if",
                "{",
                "ssl_fc",
                "}"
            ]
        );
        assert_eq!(words(r"x a\ b c\#d"), ["x", "a b", "c#d"]);
        assert_eq!(
            words(r"replace-path ^/old/(.*) /new/\1"),
            ["replace-path", "^/old/(.*)", "/new/\\1"]
        );
        assert_eq!(
            words(r#"x 'single "q"' "esc \" q""#),
            ["x", "single \"q\"", "esc \" q"]
        );
        assert_eq!(words(r#"x """#), ["x", ""]);
        assert!(words("   # only a comment").is_empty());
        assert!(split_words(r#"x "open"#).is_err());
        assert!(split_words("x 'open").is_err());
        assert!(split_words("x \\").is_err());
    }

    #[test]
    fn sections_keep_their_directives_and_lines() {
        let config = parse(
            "# header\nglobal\n    maxconn 4000\n\ndefaults\n  mode http\nfrontend web from base\n  bind :80\nbackend owui\n  server a 10.0.0.1:80 check\nuserlist admins\n  user x password y\n",
        );
        let kinds: Vec<&str> = config.sections.iter().map(|s| s.kind.keyword()).collect();
        assert_eq!(
            kinds,
            ["global", "defaults", "frontend", "backend", "userlist"]
        );
        let web = &config.sections[2];
        assert_eq!(web.name.as_deref(), Some("web"));
        assert_eq!(web.from.as_deref(), Some("base"));
        assert_eq!(web.line, 7);
        assert_eq!(web.directives[0].line, 8);
        assert_eq!(web.directives[0].keyword(), "bind");
        assert_eq!(
            config.sections[3].directives[0].rest(2),
            ["10.0.0.1:80", "check"]
        );
        assert_eq!(config.sections[1].name, None);
        assert!(config.problems.is_empty());
    }

    #[test]
    fn lines_it_cannot_use_are_reported_not_fatal() {
        let config = parse("maxconn 1\nfrontend f\n  bind \"*:80\n  bind :81\n");
        assert_eq!(config.problems.len(), 2);
        assert_eq!(config.problems[0].line, 1);
        assert!(config.problems[0].message.contains("before any section"));
        assert_eq!(config.problems[1].line, 3);
        assert_eq!(config.sections[0].directives.len(), 1);
    }
}
