//! The `seckill` command: serve (the default), migrate, bench.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use seckill::app::{open_database, App};
use seckill::config::Settings;

/// glibc's allocator spends a fifth of a loaded server's time in malloc and free; mimalloc's per-thread heaps don't.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Flash-sale service: every unit sold exactly once")]
struct Cli {
    /// Settings file (default: config/default.toml); SECKILL__SECTION__KEY variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service until SIGINT or SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Drive a flash crowd against a running service and report throughput, latency and correctness.
    Bench(Box<seckill::bench::BenchArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Bench(args)) = cli.command {
        return seckill::bench::run(*args).await;
    }
    let settings = Settings::load(cli.config.as_deref())?;
    let telemetry = seckill::telemetry::init(&settings).context("setting up logs and traces")?;
    match cli.command {
        Some(Command::Migrate) => {
            let applied = open_database(&settings).context("migrating")?;
            drop(applied);
            tracing::info!("database is up to date");
        }
        _ => {
            let app = App::start(&settings).await.context("starting seckill")?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            app.stop().await;
        }
    }
    telemetry.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
