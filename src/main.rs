//! Wiring only: parse the command line, load the configuration, start the daemon.

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use ferrogate::cli::{Cli, Command};
#[cfg(feature = "demo")]
use ferrogate::demo;
use ferrogate::{config, server};

/// mimalloc: per-thread free lists instead of glibc's arenas, cheaper on the request path's many
/// short-lived buffers and on a reload's burst of small allocations (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps the process off transparent huge pages. mimalloc reserves memory in 2 MiB-aligned
/// segments: where the host's THP setting is `always`, the kernel may back one with a huge page
/// as soon as it is touched, and an idle connection's few KiB of buffers then pin 2 MiB. The
/// flag holds for the whole process (all threads, and what it spawns); a kernel that refuses it
/// only costs that memory, so it is not an error.
fn no_huge_pages() {
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Exit status for an invalid configuration (like `haproxy -c`).
const EXIT_INVALID_CONFIG: u8 = 2;

fn main() -> ExitCode {
    no_huge_pages();
    // Two rustls providers are linked (TLS listeners use aws-lc-rs); outgoing clients that do not
    // name one get ring.
    ferrogate::tls::install_default_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("ferrogate {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Certs { config } => match config::load(&config) {
            Ok(loaded) => {
                print!("{}", ferrogate::acme::report::render(&loaded));
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprint!("{errors}");
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        Command::Health { admin } => match ferrogate::admin::probe::healthz(&admin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("unhealthy: {message}");
                ExitCode::FAILURE
            }
        },
        Command::Ctl { admin, action } => {
            match ferrogate::admin::ctl::run(&admin, &action.command()) {
                Ok(output) => {
                    print!("{output}");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("ferrogate ctl: {message}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::ImportHaproxy { file } => import_haproxy(&file),
        Command::Run { config, upgrade } => match config::load(&config) {
            Ok(loaded) => {
                init_logging(&loaded.log);
                run(&config, loaded, upgrade)
            }
            Err(errors) => {
                eprint!("{errors}");
                eprintln!("configuration {} is invalid", config.display());
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        },
        #[cfg(feature = "demo")]
        Command::Demo { state_dir } => {
            init_logging(&Default::default());
            match demo::prepare(&state_dir) {
                Ok((path, loaded)) => {
                    demo::spawn_backend(demo::DEMO_BACKEND_ADDRESS);
                    demo::spawn_gpu_nodes();
                    demo::print_banner(&path, &loaded);
                    run(&path, loaded, false)
                }
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "demo")]
        Command::DemoBackend { listen } => {
            init_logging(&Default::default());
            match demo::serve_backend_blocking(&listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("{message}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            println!(
                "configuration {} is valid: {} listener(s), {} route(s), {} upstream(s), {} certificate(s)",
                path.display(),
                loaded.listeners.len(),
                loaded.routes.len(),
                loaded.upstreams.len(),
                loaded.tls.certificates.len() + loaded.tls.acme.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print!("{errors}");
            println!(
                "configuration {} is invalid: {} error(s)",
                path.display(),
                errors.0.len()
            );
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

/// `ferrogate import-haproxy FILE`: YAML on stdout, notes on stderr.
fn import_haproxy(file: &Path) -> ExitCode {
    let shown = file.display().to_string();
    match ferrogate::haproxy::import(file) {
        Ok(import) => {
            print!("{}", import.yaml);
            eprint!(
                "{}",
                ferrogate::haproxy::render_notes(&shown, &import.notes)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            if let ferrogate::haproxy::ImportError::NothingTranslated { notes, .. } = &error {
                eprint!("{}", ferrogate::haproxy::render_notes(&shown, notes));
            }
            eprintln!("ferrogate import-haproxy: {error}");
            ExitCode::from(EXIT_INVALID_CONFIG)
        }
    }
}

fn run(path: &Path, config: config::model::Config, upgrade: bool) -> ExitCode {
    match server::run(path, config, upgrade) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

/// Text by default, JSON with `log.format: json`; `FERROGATE_LOG` filters.
fn init_logging(log: &config::model::Log) {
    ferrogate::observe::logging::init(log);
}
