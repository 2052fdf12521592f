//! uvicorn, Python's ASGI server with its default h11 parser, as a real HTTP/1.1 backend: run
//! from the virtual environment scripts/setup.sh makes (target/test-venv) on a picked loopback
//! port, serving tests/asgi_app.py (POST answers with the body length, GET with 200). Its log is
//! kept: h11 logs "Invalid HTTP request received." for every request it cannot frame.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use crate::harness::ports::{start_on_picked_ports, wait_holding};
use crate::harness::sockets::Bound;

/// What uvicorn logs for a request h11 could not parse.
pub const INVALID_REQUEST: &str = "Invalid HTTP request received.";
/// What uvicorn logs when its address is taken.
const ADDRESS_TAKEN: &str = "address already in use";

/// The virtual environment's Python, which has uvicorn.
fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python")
}

/// True when scripts/setup.sh installed uvicorn.
pub fn uvicorn_installed() -> bool {
    Command::new(python())
        .args(["-c", "import uvicorn, h11"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A running uvicorn; killed when dropped.
pub struct Uvicorn {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Uvicorn {
    pub fn start() -> Self {
        assert!(
            uvicorn_installed(),
            "uvicorn is needed in target/test-venv: run scripts/setup.sh"
        );
        start_on_picked_ports("uvicorn", 1, |picked| {
            let addr = picked[0];
            let dir = tempfile::tempdir().expect("tempdir");
            let log = dir.path().join("uvicorn.log");
            let file = std::fs::File::create(&log).expect("log file");
            let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
            let mut child = Command::new(python())
                .args(["-m", "uvicorn", "asgi_app:app", "--http", "h11"])
                .arg("--app-dir")
                .arg(&tests)
                .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
                .args(["--log-level", "info"])
                .stdout(Stdio::from(file.try_clone().expect("log file")))
                .stderr(Stdio::from(file))
                .spawn()
                .expect("spawn uvicorn");
            wait_holding(
                &mut child,
                "uvicorn",
                &[Bound::Tcp(addr)],
                &log,
                &[ADDRESS_TAKEN],
            )?;
            Ok(Self {
                child,
                addr,
                log,
                _dir: dir,
            })
        })
    }

    /// Everything uvicorn logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many requests h11 refused as unparseable.
    pub fn invalid_requests(&self) -> usize {
        self.log().matches(INVALID_REQUEST).count()
    }
}

impl Drop for Uvicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
