//! Command-line interface: argument parsing (clap) and the client-side
//! commands. `main.rs` only sets up logging and maps errors to exit codes.

pub mod apikeys;
pub mod backup;
pub mod bench;
pub mod credentials;
pub mod export;
pub mod filters;
pub mod http;
pub mod login;
pub mod manual;
pub mod os_keyring;
pub mod progress;
pub(crate) mod prompt;
pub mod remote_keys;
pub mod scrape;
pub mod status;
pub mod stream;
pub mod tail;
pub mod top;
pub mod users;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Streaming ingest daemon: Tell SDKs, syslog and HTTP in; durable, acknowledged storage out"
)]
pub struct Cli {
    /// Trust the CAs in this PEM file for TLS: the admin API at an https://
    /// URL, and the `bench tcp|syslog|http|otlp` load generators (which then
    /// connect over TLS).
    #[arg(long, global = true, env = "SLUICE_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (embedded defaults unless --config is given).
    Serve(ServeArgs),
    /// Validate a config file without starting anything.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
        /// Print one JSON line {"file","ok","data_dir","listeners":[{"name","address"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Manage streaming keys.
    #[command(subcommand)]
    Apikeys(ApikeysCommand),
    /// Write stored events as NDJSON or CSV (through the API, or from a stopped daemon's --data-dir).
    Export(export::ExportArgs),
    /// Print the newest events, and with -f follow new ones as they are committed.
    Tail(tail::TailArgs),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Create the first admin through the admin API; prints the first streaming key.
    Setup(login::SetupArgs),
    /// Log in to the admin API; the token is kept in the OS keyring, else in a 0600 file.
    Login(login::LoginArgs),
    /// End all of your sessions on the server and forget the stored token.
    Logout(login::LogoutArgs),
    /// Health, listeners and main counters of a running daemon.
    Status(status::StatusArgs),
    /// A live view of a running daemon: rates, latency, budget, disk (q quits).
    Top(top::TopArgs),
    /// Manage users offline.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Copy a running daemon's data (both databases, consistent) into a new data dir.
    Backup(backup::BackupArgs),
    /// Put a backup in place as a stopped daemon's data dir.
    Restore(backup::RestoreArgs),
    /// Write the man pages and shell completions under DIR at their
    /// installed paths (DIR/usr/share/…); scripts/deb.sh packages them.
    #[command(hide = true)]
    PackageAssets {
        /// Where to write them (created if missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config; without it every listener runs on its default port.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Where a command finds the data: a data dir opened directly, only when
/// given; without it the command goes through the admin API.
#[derive(Debug, Args, Clone)]
pub struct DataDirArg {
    /// Work offline on this data dir of a stopped daemon (created if missing)
    /// instead of through the admin API of the stored login.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ApikeysCommand {
    /// Create a streaming key and print it once.
    Create {
        #[command(flatten)]
        dir: DataDirArg,
        /// The admin API (default: the server of the stored login, else http://127.0.0.1:3000).
        #[arg(long, env = "SLUICE_SERVER", conflicts_with = "data_dir")]
        server: Option<String>,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Workspace the key writes into (a positive integer; created if missing).
        #[arg(long, default_value_t = 1)]
        workspace: u32,
        /// Print one JSON line {"id","key","workspace","name"}.
        #[arg(long)]
        json: bool,
    },
    /// List streaming keys (never the keys themselves).
    List {
        #[command(flatten)]
        dir: DataDirArg,
        /// The admin API (default: the server of the stored login, else http://127.0.0.1:3000).
        #[arg(long, env = "SLUICE_SERVER", conflicts_with = "data_dir")]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Delete a streaming key by id.
    Delete {
        #[command(flatten)]
        dir: DataDirArg,
        /// The admin API (default: the server of the stored login, else http://127.0.0.1:3000).
        #[arg(long, env = "SLUICE_SERVER", conflicts_with = "data_dir")]
        server: Option<String>,
        id: u64,
        /// Print one JSON line {"id","deleted"}.
        #[arg(long)]
        json: bool,
    },
}

impl ApikeysCommand {
    /// `--server`, if given.
    pub fn server(&self) -> Option<&str> {
        match self {
            ApikeysCommand::Create { server, .. }
            | ApikeysCommand::List { server, .. }
            | ApikeysCommand::Delete { server, .. } => server.as_deref(),
        }
    }

    /// `--data-dir`, if given: the command then works offline.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        match self {
            ApikeysCommand::Create { dir, .. }
            | ApikeysCommand::List { dir, .. }
            | ApikeysCommand::Delete { dir, .. } => dir.data_dir.as_deref(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Stream Tell-format batches to a raw TCP source and report throughput.
    Tcp(TcpBenchArgs),
    /// POST JSON-lines event batches to an HTTP source and report acknowledged throughput.
    Http(HttpBenchArgs),
    /// POST OTLP logs, metrics or traces to the OTLP/HTTP source and report acknowledged throughput.
    Otlp(OtlpBenchArgs),
    /// Send RFC 5424 messages to a syslog listener and report throughput.
    Syslog(SyslogBenchArgs),
    /// Log in to the admin API at a fixed rate and report login latency.
    Login(bench::login::LoginBenchArgs),
    /// Send acked events and measure how long a live tail takes to deliver them.
    Tail(bench::tail::TailBenchArgs),
    /// Hold connections open as hostile peers would (header-only frames, trickles, slowloris).
    Hostile(bench::hostile::HostileBenchArgs),
}

#[derive(Debug, Args, Clone)]
pub struct SyslogBenchArgs {
    #[arg(long, value_enum)]
    pub proto: SyslogProto,
    /// Address of the syslog listener.
    #[arg(long, default_value = "127.0.0.1:5514")]
    pub addr: String,
    /// TCP connections (UDP: sockets), one sender thread each.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 200)]
    pub message_bytes: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub tls: BenchTlsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyslogProto {
    Tcp,
    Udp,
}

#[derive(Debug, Args, Clone)]
pub struct HttpBenchArgs {
    /// Address of the HTTP source.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Streaming key (32 hex chars).
    #[arg(long)]
    pub key: String,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Events per request (JSON lines).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Approximate bytes of properties per event (as `bench tcp`'s payloads).
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    #[command(flatten)]
    pub tls: BenchTlsArg,
}

#[derive(Debug, Args, Clone)]
pub struct OtlpBenchArgs {
    /// Address of the OTLP/HTTP source.
    #[arg(long, default_value = "127.0.0.1:4318")]
    pub addr: String,
    /// Streaming key (32 hex chars).
    #[arg(long)]
    pub key: String,
    /// What the requests carry (posted to /v1/<signal>).
    #[arg(long, value_enum)]
    pub signal: OtlpSignal,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Items per request: log records, metric data points or spans.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Request bodies as protobuf (application/x-protobuf) or OTLP JSON (application/json).
    #[arg(long, value_enum, default_value = "protobuf")]
    pub encoding: OtlpEncoding,
    /// Send the bodies gzip-compressed (compressed once, when the pool is built).
    #[arg(long)]
    pub gzip: bool,
    #[command(flatten)]
    pub tls: BenchTlsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpSignal {
    Logs,
    Metrics,
    Traces,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpEncoding {
    Protobuf,
    Json,
}

#[derive(Debug, Args, Clone)]
pub struct TcpBenchArgs {
    /// Address of the raw TCP source.
    #[arg(long, default_value = "127.0.0.1:50000")]
    pub addr: String,
    /// Streaming key (32 hex chars).
    #[arg(long)]
    pub key: String,
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Approximate bytes per event payload.
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Total events per second across connections (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Use sluice's acked mode and count only acknowledged events.
    #[arg(long)]
    pub acked: bool,
    /// Acked batches in flight per connection (1..=1024). Enough of them
    /// cover the ack latency: at 1.7M events/s and ~6 ms per ack, 8 batches
    /// of 500 on each of 4 connections keep the pipe full (docs/bench.md).
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    #[command(flatten)]
    pub tls: BenchTlsArg,
}

/// With the global `--ca-file`, a load generator connects over TLS.
#[derive(Debug, Args, Clone, Default)]
pub struct BenchTlsArg {
    /// With --ca-file: the name the server's certificate must carry
    /// (default: the host of --addr).
    #[arg(long)]
    pub server_name: Option<String>,
}
