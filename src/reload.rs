//! The configuration file as a producer of routes: on a change to the file (or SIGHUP) it is
//! read again; a valid file is published into the route sink's file layer, an invalid one is
//! logged and the last good configuration keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::config::{ConfigErrors, Settings};
use crate::routes::{Global, Layer, Published, RouteSink};

/// Watches a configuration file and republishes it.
pub struct Reloader {
    pub path: PathBuf,
    pub sink: Arc<RouteSink>,
}

impl Reloader {
    /// Its service name: Pingora's, and the `service` label of `portcullis_runtime_alive_tasks`.
    pub const NAME: &'static str = "config reload";
}

/// Publish the routes and certificates of `settings` as the file's layer.
pub async fn publish_settings(sink: &RouteSink, settings: &Settings) -> Published {
    sink.publish(
        Layer::File(Global::from_settings(settings)),
        settings.routes.clone(),
        settings.certificates.clone(),
    )
    .await
}

/// Log each Pomerium key the file sets that is accepted with no effect (once per load).
pub fn report_notices(settings: &Settings) {
    for notice in &settings.notices {
        tracing::warn!(%notice, "configuration key has no effect");
    }
}

impl Reloader {
    /// Read, validate and publish the file once; the sink turns ready after the first success.
    /// A refused file is counted and its errors returned; nothing is published.
    pub async fn reload(&self) -> Result<Published, ConfigErrors> {
        let settings = match Settings::load(&self.path) {
            Ok(s) => s,
            Err(errors) => {
                self.sink.rejected();
                return Err(errors);
            }
        };
        report_notices(&settings);
        let published = publish_settings(&self.sink, &settings).await;
        self.sink.mark_ready();
        tracing::info!(file = %self.path.display(), routes = settings.routes.len(), changed = published.changed, "configuration loaded");
        Ok(published)
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        crate::metrics::count_tasks_of(Self::NAME);
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let file_name = self.path.file_name().map(|n| n.to_os_string());
        let watched_dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        // Watch the directory, not the file: editors and Kubernetes ConfigMaps replace files by
        // renaming, which a watch on the old inode would miss.
        let fs_tx = tx.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event {
                let ours = event.paths.iter().any(|p| {
                    p.file_name().map(|n| n.to_os_string()) == file_name
                        || p.to_string_lossy().contains("..data")
                });
                if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                    let _ = fs_tx.send(());
                }
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => match w.watch(&watched_dir, RecursiveMode::NonRecursive) {
                Ok(()) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %watched_dir.display(), "cannot watch the configuration; reload with SIGHUP");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the configuration; reload with SIGHUP");
                None
            }
        };
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = rx.recv() => {}
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                }
            }
            // Let a burst of writes settle, then read once.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            if let Err(errors) = self.reload().await {
                for e in &errors.0 {
                    tracing::error!(error = %e, "configuration rejected; the last good one keeps serving");
                }
            }
        }
    }
}
