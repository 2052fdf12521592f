//! Source positions of every key and value in a YAML document, by dotted key path
//! (`routes[2].upstream`, `upstreams.owui.servers[0].address`), built from `yaml-rust2`'s event
//! parser because serde forgets positions once it has parsed.

use rustc_hash::FxHashMap as HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The start of the file.
    pub const START: Position = Position { line: 1, column: 1 };

    fn from_marker(marker: Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Self {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}

/// Where a node sits: its key (for mapping entries) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub key: Option<Position>,
    pub value: Position,
}

/// Positions by key path; the root node has the empty path.
#[derive(Debug, Default)]
pub struct SpanIndex {
    spans: HashMap<String, Span>,
    /// Keys given twice in one mapping: the path and the position of the repeat.
    duplicates: Vec<(String, Position)>,
}

impl SpanIndex {
    /// Indexes `source`; a document that does not parse yields what was indexed before the error.
    pub fn build(source: &str) -> Self {
        let mut builder = Builder::default();
        // A syntax error is reported by the serde parse; keep the positions found so far.
        let _ = Parser::new_from_str(source).load(&mut builder, false);
        Self {
            spans: builder.spans,
            duplicates: builder.duplicates,
        }
    }

    /// The first key repeated within one mapping, with the position of the repeat.
    pub fn first_duplicate(&self) -> Option<(&str, Position)> {
        self.duplicates
            .iter()
            .min_by_key(|(_, position)| *position)
            .map(|(path, position)| (path.as_str(), *position))
    }

    /// The span of the node at `path`.
    pub fn get(&self, path: &str) -> Option<Span> {
        self.spans.get(path).copied()
    }

    /// The position of the key at `path`, else of its value, else of the nearest ancestor.
    pub fn key_position(&self, path: &str) -> Position {
        self.nearest(path, |span| span.key.unwrap_or(span.value))
    }

    /// The position of the value at `path`, else of the nearest ancestor.
    pub fn value_position(&self, path: &str) -> Position {
        self.nearest(path, |span| span.value)
    }

    /// The path of the first key (in file order) below `path` whose last segment is `name`: for
    /// errors whose path serde lost (values buffered by tagged enums).
    pub fn find_below(&self, path: &str, name: &str) -> Option<String> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}.")
        };
        let suffix = format!(".{name}");
        self.spans
            .iter()
            .filter(|(candidate, span)| {
                span.key.is_some()
                    && candidate.starts_with(&prefix)
                    && (candidate.ends_with(&suffix) || (path.is_empty() && *candidate == name))
            })
            .min_by_key(|(_, span)| span.key)
            .map(|(candidate, _)| candidate.clone())
    }

    fn nearest(&self, path: &str, pick: impl Fn(&Span) -> Position) -> Position {
        let mut current = path;
        loop {
            if let Some(span) = self.spans.get(current) {
                return pick(span);
            }
            match parent(current) {
                Some(up) => current = up,
                None => return Position::START,
            }
        }
    }
}

/// `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``, `` → none.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Joins a mapping key onto a path.
pub fn child_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a sequence index onto a path.
pub fn child_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// What a mapping expects next.
enum Expect {
    Key,
    /// The value of the entry at this path.
    Value(String),
    /// The value of an entry whose key is not a plain scalar: it has no path.
    UnaddressableValue,
}

enum Frame {
    Mapping {
        path: String,
        expect: Expect,
        first_key_seen: bool,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct Builder {
    spans: HashMap<String, Span>,
    duplicates: Vec<(String, Position)>,
    stack: Vec<Frame>,
    /// Depth of the containers being skipped because they have no path (complex keys).
    skipping: usize,
}

impl Builder {
    fn record_value(&mut self, path: &str, position: Position) {
        let span = self.spans.entry(path.to_string()).or_insert(Span {
            key: None,
            value: position,
        });
        span.value = position;
    }

    /// Called when a node starts: its path, or `None` when it is a mapping key or has no path.
    fn node_start(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        let position = Position::from_marker(mark);
        let Some(frame) = self.stack.last_mut() else {
            self.record_value("", position);
            return Some(String::new());
        };
        match frame {
            Frame::Sequence { path, next_index } => {
                let child = child_index(path, *next_index);
                *next_index += 1;
                self.record_value(&child, position);
                Some(child)
            }
            Frame::Mapping {
                path,
                expect,
                first_key_seen,
            } => match std::mem::replace(expect, Expect::Key) {
                Expect::Key => {
                    let parent = path.clone();
                    let Some(text) = scalar else {
                        *expect = Expect::UnaddressableValue;
                        return None;
                    };
                    let child = child_key(&parent, text);
                    *expect = Expect::Value(child.clone());
                    let first = !std::mem::replace(first_key_seen, true);
                    if first {
                        // A block mapping's start marker sits after its first key: use the key.
                        if let Some(span) = self.spans.get_mut(&parent) {
                            span.value = span.value.min(position);
                        }
                    }
                    let previous = self.spans.insert(
                        child.clone(),
                        Span {
                            key: Some(position),
                            value: position,
                        },
                    );
                    if previous.is_some_and(|span| span.key.is_some()) {
                        self.duplicates.push((child, position));
                    }
                    None
                }
                Expect::Value(child) => {
                    self.record_value(&child, position);
                    Some(child)
                }
                Expect::UnaddressableValue => None,
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let is_start = matches!(event, Event::MappingStart(..) | Event::SequenceStart(..));
        let is_end = matches!(event, Event::MappingEnd | Event::SequenceEnd);
        if self.skipping > 0 {
            if is_start {
                self.skipping += 1;
            } else if is_end {
                self.skipping -= 1;
            }
            return;
        }
        match event {
            Event::Scalar(text, ..) => {
                self.node_start(mark, Some(&text));
            }
            Event::Alias(_) => {
                self.node_start(mark, None);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let Some(path) = self.node_start(mark, None) else {
                    // A container used as a key, or the value of such a key: nothing inside has a path.
                    self.skipping = 1;
                    return;
                };
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Mapping {
                            path,
                            expect: Expect::Key,
                            first_key_seen: false,
                        }
                    } else {
                        Frame::Sequence {
                            path,
                            next_index: 0,
                        }
                    });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    const SAMPLE: &str = "\
# comment
listeners:
  http: 0.0.0.0:80
routes:
  - name: a
    upstream: owui
  - { name: b, upstream: gpu }
upstreams:
  owui:
    servers: [ { address: 10.0.0.1:80 }, {address: 'x:1'} ]
";

    #[test]
    fn keys_and_values_are_one_based() {
        let index = SpanIndex::build(SAMPLE);
        let span = index.get("listeners.http").unwrap();
        assert_eq!(span.key, Some(at(3, 3)));
        assert_eq!(span.value, at(3, 9));
        assert_eq!(index.get("listeners").unwrap().key, Some(at(2, 1)));
    }

    #[test]
    fn block_mapping_value_starts_at_its_first_key() {
        let index = SpanIndex::build(SAMPLE);
        assert_eq!(index.get("listeners").unwrap().value, at(3, 3));
        assert_eq!(index.get("routes[0]").unwrap().value, at(5, 5));
        assert_eq!(index.get("").unwrap().value, at(2, 1));
    }

    #[test]
    fn sequences_and_flow_style() {
        let index = SpanIndex::build(SAMPLE);
        assert_eq!(index.get("routes[0].upstream").unwrap().value, at(6, 15));
        assert_eq!(index.get("routes[1]").unwrap().value, at(7, 5));
        assert_eq!(
            index.get("routes[1].upstream").unwrap().key,
            Some(at(7, 16))
        );
        let address = index.get("upstreams.owui.servers[0].address").unwrap();
        assert_eq!(address.key, Some(at(10, 18)));
        assert_eq!(address.value, at(10, 27));
        assert_eq!(
            index
                .get("upstreams.owui.servers[1].address")
                .unwrap()
                .value,
            at(10, 52)
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let index = SpanIndex::build(SAMPLE);
        assert_eq!(index.key_position("routes[1].listener"), at(7, 5));
        assert_eq!(index.value_position("upstreams.gpu.servers"), at(9, 3));
        assert_eq!(index.key_position("nothing.here"), at(2, 1));
        assert_eq!(SpanIndex::build("").key_position("a"), Position::START);
    }

    #[test]
    fn complex_keys_are_skipped_and_broken_documents_index_their_start() {
        let index = SpanIndex::build("? [a, b]\n: 1\nc: 2\n");
        assert_eq!(index.get("c").unwrap().value, at(3, 4));
        let index = SpanIndex::build("a: 1\nb: [1,\nc: 2");
        assert_eq!(index.get("a").unwrap().value, at(1, 4));
    }

    #[test]
    fn finds_keys_below_a_path_by_name() {
        let index = SpanIndex::build(SAMPLE);
        assert_eq!(
            index.find_below("upstreams", "address").as_deref(),
            Some("upstreams.owui.servers[0].address")
        );
        assert_eq!(index.find_below("routes", "nothing"), None);
        assert_eq!(index.find_below("", "routes").as_deref(), Some("routes"));
    }

    #[test]
    fn repeated_keys_are_found_at_the_repeat() {
        let index = SpanIndex::build("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n");
        assert_eq!(index.first_duplicate(), Some(("b.c", at(4, 3))));
        assert_eq!(
            SpanIndex::build("a: 1\nb: [1, 1]\n").first_duplicate(),
            None
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
