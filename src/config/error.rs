//! Configuration errors: each one names the file, the 1-based line and column, and the dotted key
//! path (`routes[2].upstream`) it is about; [`ConfigErrors`] reports all of them together.

use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path such as `routes[2].upstream`; empty when the error is about the whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration file, sorted by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts by line, then column; errors at the same position keep the order they were found in.
    pub fn sorted(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        Self(errors)
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The errors in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per error: `FILE:LINE:COLUMN: KEY: MESSAGE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, column: usize, key: &str) -> ConfigError {
        ConfigError {
            file: PathBuf::from("f.yaml"),
            line,
            column,
            key: key.into(),
            message: "bad".into(),
        }
    }

    #[test]
    fn display_is_one_sorted_line_per_error() {
        let errors =
            ConfigErrors::sorted(vec![error(3, 1, "b"), error(1, 5, "a"), error(1, 2, "")]);
        assert_eq!(
            errors.to_string(),
            "f.yaml:1:2: bad\nf.yaml:1:5: a: bad\nf.yaml:3:1: b: bad\n"
        );
    }
}
