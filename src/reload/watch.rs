//! File-change trigger: watches the configuration file's directory (and, when the file is a
//! symlink, its target's directory) so that an edit in place, an editor's rename-over, or a
//! Kubernetes ConfigMap update (an atomic swap of the `..data` symlink) all cause one reload
//! after the writes settle. A change is acted on only when the file's content differs.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::{Reloader, Trigger};

/// Quiet time after the last file event before reloading.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(200);
/// Longest wait for a burst of file events to settle before looking at the file anyway.
pub const MAX_SETTLE: Duration = Duration::from_secs(2);
/// Polling interval used when the kernel's file notifications are unavailable.
pub const FALLBACK_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// A cheap identity of the file's content (following symlinks); `None` while it is unreadable.
fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    Some(hasher.finish())
}

/// Directories whose entries can change what `path` reads: its own directory and that of every
/// symlink hop.
fn directories_to_watch(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut current = path.to_path_buf();
    for _ in 0..8 {
        let dir = match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dirs.contains(&dir) {
            dirs.push(dir.clone());
        }
        match std::fs::read_link(&current) {
            Ok(target) => current = dir.join(target),
            Err(_) => break,
        }
    }
    if let Ok(resolved) = std::fs::canonicalize(path) {
        if let Some(dir) = resolved.parent() {
            if !dirs.iter().any(|d| d == dir) {
                dirs.push(dir.to_path_buf());
            }
        }
    }
    dirs
}

/// Paths whose change can change what `path` reads: the file, every symlink hop on the way to
/// it (a ConfigMap's `..data`), and the file it finally resolves to.
fn relevant_paths(path: &Path) -> HashSet<PathBuf> {
    let mut paths = HashSet::new();
    let mut current = path.to_path_buf();
    paths.insert(current.clone());
    for _ in 0..8 {
        let dir = current.parent().map(Path::to_path_buf).unwrap_or_default();
        match std::fs::read_link(&current) {
            Ok(target) => {
                // `a/..data/file`: a change of `a/..data` itself matters too.
                let next = dir.join(target);
                for ancestor in next.ancestors().take_while(|a| *a != dir) {
                    paths.insert(ancestor.to_path_buf());
                }
                current = next;
            }
            Err(_) => break,
        }
    }
    if let Ok(resolved) = std::fs::canonicalize(path) {
        paths.insert(resolved);
    }
    paths
}

/// Watches the configuration file until the process ends.
pub async fn watch_config(reloader: Arc<Reloader>, debounce: Duration) {
    let path = reloader.path().to_path_buf();
    let relevant = Arc::new(Mutex::new(relevant_paths(&path)));
    // Capacity one: a pending wake-up already stands for any number of changes.
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let filter = relevant.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            // Reads (our own included) change nothing.
            Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
            Ok(event) => {
                let matters = event.paths.iter().any(|p| filter.lock().contains(p));
                if matters {
                    let _ = tx.try_send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watch error"),
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "file notifications unavailable; polling the configuration");
            return poll_config(reloader, FALLBACK_POLL_INTERVAL).await;
        }
    };
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut watch_all = |watcher: &mut notify::RecommendedWatcher| {
        for dir in directories_to_watch(&path) {
            if watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    watched.insert(dir);
                }
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch"),
            }
        }
    };
    watch_all(&mut watcher);
    tracing::debug!(path = %path.display(), "watching the configuration");
    let mut last = fingerprint(&path);
    while rx.recv().await.is_some() {
        // Let a burst of writes (temp file, rename, symlink swap) settle, but not forever.
        let settle_until = tokio::time::Instant::now() + MAX_SETTLE;
        loop {
            tokio::select! {
                more = rx.recv() => {
                    if more.is_none() { return; }
                    if tokio::time::Instant::now() >= settle_until { break; }
                }
                _ = tokio::time::sleep(debounce) => break,
            }
        }
        // A symlink may now point somewhere new: watch there too.
        watch_all(&mut watcher);
        *relevant.lock() = relevant_paths(&path);
        let now = fingerprint(&path);
        tracing::debug!(
            changed = (now != last),
            readable = now.is_some(),
            "configuration file checked"
        );
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        // Errors are logged and recorded by the reloader; the watch goes on either way.
        let _ = reloader.reload(Trigger::FileChange).await;
    }
}

/// The fallback when inotify is unavailable: compare the content every `interval`.
async fn poll_config(reloader: Arc<Reloader>, interval: Duration) {
    let path = reloader.path().to_path_buf();
    let mut last = fingerprint(&path);
    loop {
        tokio::time::sleep(interval).await;
        let now = fingerprint(&path);
        if now.is_some() && now != last {
            last = now;
            let _ = reloader.reload(Trigger::FileChange).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_configmap_style_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("..2026_11_23");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::write(data.join("ferrogate.yaml"), "a").expect("write");
        std::os::unix::fs::symlink("..2026_11_23", dir.path().join("..data")).expect("link");
        let file = dir.path().join("ferrogate.yaml");
        std::os::unix::fs::symlink("..data/ferrogate.yaml", &file).expect("link");
        let dirs = directories_to_watch(&file);
        assert!(dirs.contains(&dir.path().to_path_buf()), "{dirs:?}");
        let relevant = relevant_paths(&file);
        assert!(
            relevant.contains(&dir.path().join("..data")),
            "{relevant:?}"
        );
        assert!(relevant.contains(&file), "{relevant:?}");
        assert!(
            !relevant.contains(&dir.path().join("daemon.log")),
            "{relevant:?}"
        );
        let canonical_data = std::fs::canonicalize(&data).expect("canonical");
        assert!(dirs.contains(&canonical_data), "{dirs:?}");
        assert_eq!(
            fingerprint(&file),
            fingerprint(&data.join("ferrogate.yaml"))
        );
    }

    #[test]
    fn plain_file_watches_its_directory_and_fingerprints_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f.yaml");
        assert_eq!(fingerprint(&file), None);
        std::fs::write(&file, "one").expect("write");
        let first = fingerprint(&file);
        std::fs::write(&file, "two").expect("write");
        assert_ne!(first, fingerprint(&file));
        assert_eq!(directories_to_watch(&file)[0], dir.path());
    }
}
