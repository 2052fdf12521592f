//! `DaemonBuilder::start`: runs `ferrogate run` on the builder's config until the daemon alone
//! holds every listener, and again on freshly picked listener addresses when one turns out taken
//! (pingora binds them from the YAML; it cannot bind port 0 and report).

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ports::{pick_addrs, PortTaken, START_ATTEMPTS};
use super::sockets::{holder, Bound, Holder};
use super::{Daemon, DaemonBuilder, BIN, DEFAULT_START_TIMEOUT};

/// What the daemon says when it finds a listener address taken before it starts (it then exits
/// non-zero), and what pingora logs each second when an address is taken after that check (a
/// race with another process).
fn listener_taken_lines(addr: SocketAddr) -> [String; 2] {
    [
        format!("cannot listen on {addr}: the address is in use"),
        format!("{addr} is in use, will try again"),
    ]
}

impl DaemonBuilder {
    /// Every listener address in the config (http, https, extra, admin).
    fn listener_addrs(&self) -> Vec<SocketAddr> {
        let mut all = vec![self.http, self.https];
        all.extend(self.extra.iter().map(|(_, a, _, _)| *a));
        all.extend(self.admin.as_ref().map(|(a, _)| *a));
        all
    }

    /// Picks fresh addresses for every listener (after one was taken).
    fn repick_listener_addrs(&mut self) {
        let count = 2 + self.extra.len() + usize::from(self.admin.is_some());
        let mut picked = pick_addrs(count).into_iter();
        let mut next = || picked.next().expect("a picked address per listener");
        self.http = next();
        self.https = next();
        for (_, addr, _, _) in &mut self.extra {
            *addr = next();
        }
        if let Some((addr, _)) = &mut self.admin {
            *addr = next();
        }
    }

    /// Writes the config, starts `ferrogate run`, and waits until it alone holds every listener.
    /// When a listener address turns out taken (a parallel test got it first), the daemon is
    /// killed and started again on fresh addresses, up to `START_ATTEMPTS` times.
    pub async fn start(mut self) -> Daemon {
        let mut taken = Vec::new();
        let mut discarded_pids = Vec::new();
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                self.repick_listener_addrs();
                if self.state_dir.is_none() {
                    // What the killed attempt stored is not this daemon's.
                    let _ = std::fs::remove_dir_all(self.dir.path().join("state"));
                }
            }
            // Separate picks (the builder's own, then one per extra listener) may hand out the
            // same port twice; a repick takes them all at once.
            let addrs = self.listener_addrs();
            if let Some(twice) = addrs
                .iter()
                .enumerate()
                .find_map(|(i, a)| addrs[..i].contains(a).then_some(*a))
            {
                taken.push(format!("{twice} picked for two listeners"));
                continue;
            }
            // Taken already: no need to start a daemon to find out.
            if let Some(addr) = self
                .listener_addrs()
                .into_iter()
                .find(|a| holder(std::process::id(), Bound::Tcp(*a)) != Holder::Nobody)
            {
                taken.push(format!("{addr} held before start"));
                continue;
            }
            let config_path = self.write_config();
            let log_path = self.dir.path().join("daemon.log");
            let mut child = self.spawn(&config_path, &log_path);
            match self.wait_ready(&mut child, &log_path).await {
                Ok(()) => {
                    return Daemon {
                        child,
                        http: self.http,
                        https: self.https,
                        extra: self
                            .extra
                            .iter()
                            .map(|(n, a, _, _)| (n.clone(), *a))
                            .collect(),
                        config_yaml: self.config_yaml(),
                        certs: self.certs,
                        log_path,
                        config_path,
                        admin: self.admin.map(|(a, _)| a),
                        discarded_pids,
                        configmap_version: 1,
                        _dir: self.dir,
                    };
                }
                Err(PortTaken(said)) => {
                    discarded_pids.push(child.id());
                    taken.push(said);
                }
            }
        }
        panic!(
            "ferrogate: a listener address was taken on each of {START_ATTEMPTS} attempts:\n{}",
            taken.join("\n")
        );
    }

    fn spawn(&self, config_path: &Path, log_path: &Path) -> Child {
        let log = File::create(log_path).expect("create log");
        Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(config_path)
            .env("FERROGATE_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ferrogate")
    }

    /// Waits until `child` alone holds every listener. A listener held by another process, or
    /// pingora's line for a taken address in the log, kills it and returns `PortTaken`.
    async fn wait_ready(&self, child: &mut Child, log_path: &Path) -> Result<(), PortTaken> {
        let listeners = self.listener_addrs();
        let taken_lines: Vec<String> = listeners
            .iter()
            .flat_map(|a| listener_taken_lines(*a))
            .collect();
        let deadline = Instant::now() + DEFAULT_START_TIMEOUT;
        loop {
            // Exit status first: a log read afterwards holds everything the daemon said.
            let exited = child.try_wait().expect("try_wait");
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            let fail = |child: &mut Child, why: String| -> ! {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{why}\n---- ferrogate config ----\n{}---- ferrogate log ({}) ----\n{log}---- end of ferrogate log ----",
                    self.config_yaml(),
                    log_path.display(),
                );
            };
            let taken_by_log = log
                .lines()
                .find(|line| taken_lines.iter().any(|t| line.contains(t.as_str())));
            let taken_by_other = listeners
                .iter()
                .find(|a| holder(child.id(), Bound::Tcp(**a)) == Holder::Other);
            if let Some(said) = taken_by_log
                .map(str::to_string)
                .or_else(|| taken_by_other.map(|a| format!("{a} is held by another process")))
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PortTaken(format!("ferrogate: {said}")));
            }
            if let Some(status) = exited {
                fail(
                    child,
                    format!("ferrogate exited during start-up with {status}"),
                );
            }
            if listeners
                .iter()
                .all(|a| holder(child.id(), Bound::Tcp(*a)) == Holder::Alone)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                fail(
                    child,
                    format!("ferrogate did not listen on {listeners:?} within {DEFAULT_START_TIMEOUT:?}"),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
