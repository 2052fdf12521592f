//! The errors of one configuration file as they are found: each placed at the line and column of
//! a key path, the positions indexed only when the first error needs them. Validation and
//! resolution report into the same one, so all errors come out together.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigErrors};
use super::spans::{Position, SpanIndex};

pub(super) struct Report {
    file: PathBuf,
    source: String,
    /// Positions are needed only to report an error: indexed on first use, so a valid file (every
    /// reload that succeeds) pays for one YAML parse, not two.
    spans: OnceCell<SpanIndex>,
    errors: Vec<ConfigError>,
}

impl Report {
    pub(super) fn new(file: &Path, source: &str) -> Self {
        Self {
            file: file.to_path_buf(),
            source: source.to_string(),
            spans: OnceCell::new(),
            errors: Vec::new(),
        }
    }

    /// The position index of the source (built now if this is the first use).
    pub(super) fn spans(&self) -> &SpanIndex {
        self.spans.get_or_init(|| SpanIndex::build(&self.source))
    }

    /// Errors so far, to tell whether a step added any.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn push(&mut self, key: &str, position: Position, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: position.line,
            column: position.column,
            key: key.to_string(),
            message,
        });
    }

    /// An error about the key at `path` itself (unknown, unsupported, missing pieces).
    pub(super) fn at_key(&mut self, path: &str, message: impl Into<String>) {
        let position = self.spans().key_position(path);
        self.push(path, position, message.into());
    }

    /// An error about the value at `path`.
    pub(super) fn at_value(&mut self, path: &str, message: impl Into<String>) {
        let position = self.spans().value_position(path);
        self.push(path, position, message.into());
    }

    /// The line of the value at `path`, for "first defined at line N" hints.
    pub(super) fn line_of(&self, path: &str) -> usize {
        self.spans().value_position(path).line
    }

    /// `value` when nothing was reported, else every error sorted by position.
    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.into_errors())
        }
    }

    /// Every error reported, sorted by position.
    pub(super) fn into_errors(self) -> ConfigErrors {
        ConfigErrors::sorted(self.errors)
    }
}
