//! Command-line interface: `run`, `check`, `certs`, `health`, `ctl` (the runtime API),
//! `import-haproxy`, `version`, and with the `demo` feature `demo` and `demo-backend`.

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
    /// Change servers of a running daemon without a reload (its admin listener's runtime API):
    /// list them, drain, disable or enable one, set its weight.
    Ctl {
        /// The admin listener's address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Translate an haproxy.cfg into a ferrogate configuration: YAML on stdout, what could not
    /// be translated on stderr as FILE:LINE: what and why (exit 0; 2 when nothing could be read).
    ImportHaproxy {
        /// The HAProxy configuration file.
        file: PathBuf,
    },
    /// Print the version.
    Version,
}

/// What `ferrogate ctl` does.
#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// List every upstream's servers: admin state, health, weights, in-flight, sticky entries.
    Servers,
    /// No new clients for the server; clients pinned to it stay (HAProxy: state drain).
    Drain(ServerArgs),
    /// The server takes traffic again (HAProxy: state ready).
    Enable(ServerArgs),
    /// No traffic at all for the server; pinned clients move (HAProxy: state maint).
    Disable(ServerArgs),
    /// Set the server's weight until the file's weight for it changes (0 = no new clients).
    Weight {
        #[command(flatten)]
        server: ServerArgs,
        /// The new weight, 0 to 1000.
        #[arg(value_parser = clap::value_parser!(u32).range(0..=1000))]
        weight: u32,
    },
}

/// One server of one upstream.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The upstream's name.
    pub upstream: String,
    /// The server's address as in the configuration (`host:port`).
    pub address: String,
}

impl CtlAction {
    /// The request it makes of the runtime API.
    pub fn command(self) -> crate::admin::ctl::CtlCommand {
        use crate::admin::ctl::CtlCommand;
        let state = |server: ServerArgs, state| CtlCommand::State {
            upstream: server.upstream,
            address: server.address,
            state,
        };
        match self {
            Self::Servers => CtlCommand::Servers,
            Self::Drain(server) => state(server, "drain"),
            Self::Enable(server) => state(server, "ready"),
            Self::Disable(server) => state(server, "maint"),
            Self::Weight { server, weight } => CtlCommand::Weight {
                upstream: server.upstream,
                address: server.address,
                weight,
            },
        }
    }
}
