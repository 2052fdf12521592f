//! `ferrogate import-haproxy FILE`: reads an haproxy.cfg ([`parse`]), translates its sections
//! into a ferrogate configuration ([`translate`], [`acl`], [`values`]) and writes it as YAML
//! ([`yaml`]), with a [`Note`] for each construct it could not translate (or only
//! approximately), printed as `FILE:LINE: what and why`. Imports nothing else of the crate: the
//! output is text that `ferrogate check` judges like any other file.

pub mod acl;
pub mod parse;
pub mod translate;
pub mod values;
pub mod yaml;

use std::fmt::Write as _;
use std::path::Path;

pub use translate::Note;

/// A translated file.
#[derive(Debug, Clone)]
pub struct Import {
    /// The ferrogate configuration.
    pub yaml: String,
    /// What was not translated, by line.
    pub notes: Vec<Note>,
}

/// Why nothing could be translated.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    /// The file holds no frontend or backend ferrogate can use; the notes say why.
    #[error("{path}: nothing to translate (no HTTP frontend or backend)")]
    NothingTranslated { path: String, notes: Vec<Note> },
}

/// Reads and translates the file at `path`.
pub fn import(path: &Path) -> Result<Import, ImportError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| ImportError::Read {
        path: shown.clone(),
        error,
    })?;
    let label = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("haproxy.cfg");
    import_text(&String::from_utf8_lossy(&bytes), label, &shown)
}

/// Translates haproxy.cfg text; `label` names the file in comments, `path` in errors.
pub fn import_text(text: &str, label: &str, path: &str) -> Result<Import, ImportError> {
    let parsed = parse::parse(text);
    let translation = translate::translate(&parsed, label);
    let document = &translation.document;
    if document.listeners.is_empty() && document.upstreams.is_empty() {
        return Err(ImportError::NothingTranslated {
            path: path.to_string(),
            notes: translation.notes,
        });
    }
    Ok(Import {
        yaml: yaml::render(document),
        notes: translation.notes,
    })
}

/// The notes as `FILE:LINE: message` lines.
pub fn render_notes(path: &str, notes: &[Note]) -> String {
    let mut out = String::new();
    for note in notes {
        let _ = writeln!(out, "{path}:{}: {}", note.line, note.message);
    }
    out
}

#[cfg(test)]
mod tests;
