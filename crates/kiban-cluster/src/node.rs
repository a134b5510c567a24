//! A Ballista scheduler or executor with kiban's plan codecs (so plans calling kiban's UDFs decode).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use crate::codec::{KibanLogicalCodec, KibanPhysicalCodec};
use crate::seal::{ClusterSecret, install_node_secret};
use crate::{ClusterError, Result};

fn ballista(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Input { field: "ballista".into(), rule: e.to_string() }
}

/// The largest gRPC message between client, scheduler and executors. Plans stay small: bulky job
/// data (the gate's facts, large recoding tables) travels as sealed job files, so this is Ballista's
/// 16 MiB default with room for plans over thousands of input files.
pub(crate) const PLAN_MESSAGE_LIMIT: u32 = 64 << 20;

/// Runs a scheduler on `bind` until the process ends. It plans and forwards sealed UDF payloads
/// without opening them, so it holds no key. `job_data_cleanup_s`: how soon after a job ends the
/// executors are told to delete its result files when its client did not release them earlier.
pub async fn run_scheduler(bind: SocketAddr, job_data_cleanup_s: u64) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        finished_job_data_clean_up_interval_seconds: job_data_cleanup_s,
        grpc_server_max_decoding_message_size: PLAN_MESSAGE_LIMIT,
        grpc_client_max_message_size: PLAN_MESSAGE_LIMIT,
        override_logical_codec: Some(Arc::new(KibanLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(KibanPhysicalCodec::default())),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(ballista)?;
    start_server(cluster, bind, Arc::new(config)).await.map_err(ballista)
}

/// How to start an executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's address.
    pub scheduler: SocketAddr,
    /// The host to bind and advertise.
    pub host: String,
    /// The Arrow Flight port (shuffle reads and results).
    pub flight_port: u16,
    /// The gRPC port.
    pub grpc_port: u16,
    /// Shuffle files of medical data: must be on an encrypted volume (see the README).
    pub work_dir: PathBuf,
    /// The node's cluster key file (mode 0600).
    pub key_file: PathBuf,
    /// Task slots.
    pub vcores: usize,
}

/// Runs an executor until the process ends; its cluster secret is read from `key_file` first.
pub async fn run_executor(o: ExecutorOptions) -> Result<()> {
    install_node_secret(ClusterSecret::read(&o.key_file)?)?;
    std::fs::create_dir_all(&o.work_dir)
        .map_err(|source| ClusterError::Io { path: o.work_dir.display().to_string(), source })?;
    let config = ExecutorProcessConfig {
        bind_host: o.host.clone(),
        external_host: Some(o.host.clone()),
        port: o.flight_port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.ip().to_string(),
        scheduler_port: o.scheduler.port(),
        vcores: o.vcores,
        work_dir: Some(o.work_dir.display().to_string()),
        grpc_max_decoding_message_size: PLAN_MESSAGE_LIMIT,
        grpc_max_encoding_message_size: PLAN_MESSAGE_LIMIT,
        override_logical_codec: Some(Arc::new(KibanLogicalCodec::default())),
        override_physical_codec: Some(Arc::new(KibanPhysicalCodec::default())),
        ..Default::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(ballista)
}
