//! Wiring only: parse the flags, start one simulated inference node, print its address, serve
//! until interrupted.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use ferrogate_sim::cli::SimArgs;

fn main() -> ExitCode {
    let args = SimArgs::parse();
    let cfg = match args.to_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("ferrogate-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferrogate-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("ferrogate-sim: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        let mut node = match ferrogate_sim::serve(listener, cfg).await {
            Ok(node) => node,
            Err(e) => {
                eprintln!("ferrogate-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("ferrogate-sim listening on {}", node.addr());
        if let Some((events, replay)) = node.kv_event_endpoints() {
            println!("ferrogate-sim kv events on {events}");
            if let Some(replay) = replay {
                println!("ferrogate-sim kv event replay on {replay}");
            }
        }
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = node.wait() => ExitCode::FAILURE,
            _ = shutdown_signal() => ExitCode::SUCCESS,
        }
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
