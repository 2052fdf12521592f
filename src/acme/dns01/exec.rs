//! The lego-style exec provider: `COMMAND present|cleanup FQDN VALUE`, exit status 0 = done.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::{DnsApi, DnsError};

/// How long one hook call may run.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Exec {
    command: PathBuf,
}

impl Exec {
    pub fn new(command: PathBuf) -> Self {
        Self { command }
    }

    async fn run(&self, action: &'static str, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let child = tokio::process::Command::new(&self.command)
            .arg(action)
            .arg(fqdn)
            .arg(value)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(DEFAULT_EXEC_TIMEOUT, child)
            .await
            .map_err(|_| DnsError::Timeout {
                what: format!("`{} {action}` did not finish", self.command.display()),
                after: DEFAULT_EXEC_TIMEOUT,
            })?
            .map_err(|source| DnsError::Io {
                what: format!("cannot run {}", self.command.display()),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(300)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(DnsError::Hook {
            command: self.command.clone(),
            action,
            status: output.status,
            stderr: tail,
        })
    }
}

#[async_trait]
impl DnsApi for Exec {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("present", fqdn, value).await
    }

    async fn cleanup(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        self.run("cleanup", fqdn, value).await
    }
}
