//! The port Pebble validates HTTP-01 on, held by the test from the start: Pebble is told the
//! port before the daemon runs, and the daemon's http port is only settled once it has started
//! (a taken one is picked again). Each validation waits for the daemon, then is forwarded to its
//! http listener byte for byte.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct ChallengePort {
    pub addr: SocketAddr,
    daemon: watch::Sender<Option<SocketAddr>>,
    task: JoinHandle<()>,
}

impl ChallengePort {
    pub async fn open() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind challenge port");
        let addr = listener.local_addr().expect("challenge port addr");
        let (daemon, target) = watch::channel(None);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(forward(stream, target.clone()));
            }
        });
        Self { addr, daemon, task }
    }

    /// The port to give Pebble as `httpPort`.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sends validations to this http listener from now on (those already waiting too).
    pub fn forward_to(&self, http: SocketAddr) {
        self.daemon.send_replace(Some(http));
    }
}

impl Drop for ChallengePort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, mut target: watch::Receiver<Option<SocketAddr>>) {
    let Ok(daemon) = target.wait_for(Option::is_some).await.map(|t| *t) else {
        return;
    };
    let Some(daemon) = daemon else {
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(daemon).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}
