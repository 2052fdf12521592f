//! Process lifecycle around pingora's server: the control thread (SIGHUP and file-watch reloads,
//! readiness and sd_notify), graceful stop that ends as soon as requests in flight are done (or
//! the grace period runs out), and the zero-downtime binary upgrade on SIGUSR2.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

pub mod addresses;
pub mod probe;

use crate::reload::{signals, watch, Reloader};
use probe::{wait_until_listening, Endpoint};

/// How long the listeners may take to accept connections after start before the daemon gives up.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a draining daemon looks at its requests in flight.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// Time given to pingora to stop accepting before the drain check may end the process.
const DRAIN_MIN: Duration = Duration::from_millis(100);

/// Requests in flight across all listeners (WebSockets and streams included until they close).
#[derive(Debug, Default)]
pub struct ActiveRequests {
    count: AtomicUsize,
}

/// Holds one request's place in [`ActiveRequests`] until dropped.
#[derive(Debug)]
pub struct ActiveGuard {
    owner: Arc<ActiveRequests>,
}

impl ActiveRequests {
    /// Counts a request until the returned guard is dropped.
    pub fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            owner: self.clone(),
        }
    }

    pub fn current(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.owner.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the daemon has a configuration and every listener accepts connections.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }
}

/// What the control thread needs.
pub struct ControlPlane {
    pub reloader: Arc<Reloader>,
    pub readiness: Arc<Readiness>,
    /// Every socket the daemon listens on (proxy listeners and admin).
    pub endpoints: Vec<Endpoint>,
    /// Written with the process id once ready.
    pub pid_file: PathBuf,
}

impl ControlPlane {
    /// Starts the control thread. Returns once the SIGHUP handler is installed, so that a reload
    /// signal sent any time after start-up can never kill the process.
    pub fn start(self) -> Result<(), String> {
        let (registered_tx, registered_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("ferrogate-control".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = registered_tx.send(Err(format!("control runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(self.run(registered_tx));
            })
            .map_err(|e| format!("cannot start the control thread: {e}"))?;
        registered_rx
            .recv()
            .map_err(|_| "the control thread ended during start-up".to_string())?
    }

    async fn run(self, registered: std::sync::mpsc::Sender<Result<(), String>>) {
        let hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                let _ = registered.send(Err(format!("cannot handle SIGHUP: {e}")));
                return;
            }
        };
        let _ = registered.send(Ok(()));
        tokio::spawn(signals::reload_on_sighup(self.reloader.clone(), hangups));
        tokio::spawn(watch::watch_config(
            self.reloader.clone(),
            watch::DEFAULT_DEBOUNCE,
        ));
        if wait_until_listening(&self.endpoints, DEFAULT_READY_TIMEOUT).await {
            self.readiness.set_ready();
            if let Err(e) = std::fs::write(&self.pid_file, format!("{}\n", std::process::id())) {
                tracing::warn!(path = %self.pid_file.display(), error = %e, "cannot write pid file");
            }
            notify_systemd(&[
                sd_notify::NotifyState::MainPid(std::process::id()),
                sd_notify::NotifyState::Ready,
            ]);
            tracing::info!("ready: all listeners accept connections");
        } else {
            tracing::error!(
                "a listener did not start accepting connections within {:?} (address in use?); exiting",
                DEFAULT_READY_TIMEOUT
            );
            exit(1);
        }
        std::future::pending::<()>().await;
    }
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}

/// pingora's shutdown signals, with two additions: a graceful stop that exits as soon as no
/// request is in flight, and SIGUSR2 starting a new process that takes the listeners over.
pub struct Signals {
    pub active: Arc<ActiveRequests>,
    pub grace: Duration,
    /// The command line that starts the replacement process on SIGUSR2 (`--upgrade` added).
    pub upgrade_command: Vec<String>,
    /// pingora's execution phases: the drain starts when its grace period starts (after the
    /// listeners were handed over, on an upgrade).
    pub phases: Mutex<Option<broadcast::Receiver<ExecutionPhase>>>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let streams = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::user_defined2()),
        );
        let (Ok(mut quit), Ok(mut term), Ok(mut int), Ok(mut usr2)) = streams else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!(grace = ?self.grace, "SIGTERM: stopping after requests in flight finish");
                    notify_systemd(&[sd_notify::NotifyState::Stopping]);
                    self.drain();
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => return ShutdownSignal::FastShutdown,
                _ = quit.recv() => {
                    tracing::info!("SIGQUIT: handing the listeners to a new process");
                    self.drain();
                    return ShutdownSignal::GracefulUpgrade;
                }
                _ = usr2.recv() => {
                    match self.start_replacement() {
                        Ok(pid) => {
                            tracing::info!(pid, "SIGUSR2: started the new process; handing over the listeners");
                            self.drain();
                            return ShutdownSignal::GracefulUpgrade;
                        }
                        Err(e) => tracing::error!(error = %e, "SIGUSR2: cannot start the new process; still serving"),
                    }
                }
            }
        }
    }
}

impl Signals {
    fn drain(&self) {
        let phases = self.phases.lock().take();
        spawn_drain_watch(self.active.clone(), self.grace, phases);
    }

    fn start_replacement(&self) -> Result<u32, String> {
        let (program, args) = self
            .upgrade_command
            .split_first()
            .ok_or_else(|| "no command to start".to_string())?;
        let child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .map_err(|e| format!("{program}: {e}"))?;
        Ok(child.id())
    }
}

/// Ends the process once no request is in flight, or when the grace period is over (pingora's
/// own shutdown would otherwise always wait the whole period). Waits first for pingora's grace
/// period to begin, so that on an upgrade the listeners have been handed over.
fn spawn_drain_watch(
    active: Arc<ActiveRequests>,
    grace: Duration,
    phases: Option<broadcast::Receiver<ExecutionPhase>>,
) {
    let spawned = std::thread::Builder::new()
        .name("ferrogate-drain".into())
        .spawn(move || {
            if let Some(mut phases) = phases {
                wait_for_grace_period(&mut phases);
            }
            drain(&active, grace);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the drain; waiting the whole grace period");
    }
}

fn wait_for_grace_period(phases: &mut broadcast::Receiver<ExecutionPhase>) {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod)
            | Ok(ExecutionPhase::ShutdownRuntimes)
            | Ok(ExecutionPhase::Terminated) => return,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Ends the process with `code`, writing out buffered access lines first (every exit of a
/// running daemon goes through here).
pub fn exit(code: i32) -> ! {
    crate::observe::logging::flush();
    std::process::exit(code)
}

fn drain(active: &ActiveRequests, grace: Duration) {
    let started = Instant::now();
    loop {
        std::thread::sleep(DRAIN_POLL);
        let elapsed = started.elapsed();
        if elapsed >= DRAIN_MIN && active.current() == 0 {
            tracing::info!(after = ?elapsed, "drained: no request in flight; exiting");
            exit(0);
        }
        if elapsed >= grace + DRAIN_MIN {
            tracing::info!(
                in_flight = active.current(),
                "grace period over; closing what is left"
            );
            exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_requests_in_flight() {
        let active = Arc::new(ActiveRequests::default());
        let a = active.enter();
        let b = active.enter();
        assert_eq!(active.current(), 2);
        drop(a);
        assert_eq!(active.current(), 1);
        drop(b);
        assert_eq!(active.current(), 0);
    }
}
