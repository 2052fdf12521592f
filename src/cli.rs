//! Command-line interface: `run`, `check`, `certs`, `health`, `version`, and with the `demo`
//! feature `demo` and `demo-backend`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Edge TLS load balancer for OpenWebUI replicas and GPU inference pools.
#[derive(Debug, Parser)]
#[command(name = "ferrogate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Run {
        /// Path of the YAML configuration.
        #[arg(short, long, default_value = "/etc/ferrogate/ferrogate.yaml")]
        config: PathBuf,
        /// Take the listening sockets over from a running instance (binary upgrade; the running
        /// instance hands them over on SIGQUIT). SIGUSR2 to a running instance does both steps.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration: print every error with file:line:column and exit non-zero.
    Check {
        /// Path of the YAML configuration.
        #[arg(short, long, default_value = "/etc/ferrogate/ferrogate.yaml")]
        config: PathBuf,
    },
    /// List each certificate: names, source (file/acme), issuer, expiry, next renewal, last error.
    Certs {
        /// Path of the YAML configuration.
        #[arg(short, long, default_value = "/etc/ferrogate/ferrogate.yaml")]
        config: PathBuf,
    },
    /// Run the daemon on the built-in demo configuration together with a tiny demo backend.
    #[cfg(feature = "demo")]
    Demo {
        /// Directory for the demo's state (self-signed certificate); created if missing.
        #[arg(long, default_value = ".ferrogate-demo")]
        state_dir: PathBuf,
    },
    /// Serve only the tiny demo backend (echo page, SSE clock, WebSocket echo).
    #[cfg(feature = "demo")]
    DemoBackend {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18080")]
        listen: String,
    },
    /// Probe a running daemon's admin `/healthz` (exit 0 when healthy): for container health
    /// checks and exec probes, with no curl in the image.
    Health {
        /// The admin listener's address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
    /// Print the version.
    Version,
}
