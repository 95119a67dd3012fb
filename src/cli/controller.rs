//! `portcullis controller`: the data plane with the Kubernetes controller as the producer of
//! the cluster's routes (next to the configuration file's, if one is given).

use std::path::{Path, PathBuf};

use anyhow::Context;
use pingora::services::background::background_service;

use super::serve::{Base, run};
use crate::config::Settings;
use crate::controller::{Controller, ControllerOptions};
use crate::reload::publish_settings;

/// The command line of `portcullis controller`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerArgs {
    /// Settings and extra routes (optional; environment variables apply either way).
    #[arg(long, short, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kubeconfig to use; without it, KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces (repeatable); all namespaces when absent.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Copy the addresses of this Service (NAMESPACE/NAME) into the Ingresses' status.
    #[arg(long)]
    pub publish_service: Option<String>,
    /// Put this IP address (or host name) into the Ingresses' status.
    #[arg(long)]
    pub publish_address: Option<String>,
    /// The IngressClass name this controller serves.
    #[arg(long, default_value = "portcullis")]
    pub ingress_class: String,
    /// The namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Seconds a leader's Lease stays valid without renewal (renewed every fifth of it).
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u16,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// Serve the cluster's routes (and the file's) until SIGTERM.
pub fn controller(args: ControllerArgs) -> anyhow::Result<()> {
    let settings = match &args.config {
        Some(path) => Settings::load(path)?,
        None => Settings::parse("", "(no configuration file)", |n| std::env::var(n).ok())?,
    };
    let base = Base::new(settings)?;
    // Read the kubeconfig before any listener opens, so a bad one fails the start. The client
    // itself is made inside the server's runtime (it spawns a task there). The file's routes
    // are published first; the sink turns ready when the controller has published the
    // cluster's.
    let kube_config = super::block_on(async {
        publish_settings(&base.sink, &base.settings).await;
        kube_config(args.kubeconfig.as_deref()).await
    })??;
    let options = ControllerOptions {
        namespaces: args.namespaces,
        publish_service: args.publish_service,
        publish_address: args.publish_address,
        ingress_class: args.ingress_class,
        lease_namespace: args.lease_namespace,
        lease_seconds: args.lease_seconds,
        identity: args.identity,
    };
    let service = background_service(
        Controller::NAME,
        Controller::new(
            options,
            base.sink.clone(),
            kube_config,
            base.metrics.watch_errors.clone(),
        ),
    );
    run(base, vec![Box::new(service)])
}

async fn kube_config(path: Option<&Path>) -> anyhow::Result<kube::Config> {
    match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .with_context(|| format!("cannot read kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", p.display()))
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration (give --kubeconfig or run in a cluster)"),
    }
}
