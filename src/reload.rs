//! Live reload of the configuration file: on a change to the file (or SIGHUP) it is read again;
//! a valid file replaces the route table and certificates atomically, an invalid one is logged
//! and the last good configuration keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use super::Shared;
use crate::config::Settings;

/// Watches a configuration file and republishes it.
pub struct Reloader {
    pub path: PathBuf,
    pub shared: Arc<Shared>,
}

impl Reloader {
    /// Read, validate and publish the file once. Returns whether it was published.
    pub async fn reload(&self) -> bool {
        reload_file(&self.path, &self.shared).await
    }
}

pub async fn reload_file(path: &Path, shared: &Shared) -> bool {
    let settings = match Settings::load(path) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "configuration rejected; the last good one keeps serving");
            }
            shared.metrics.reloads.with_label_values(&["error"]).inc();
            return false;
        }
    };
    match shared.publish(&settings).await {
        Ok(()) => {
            shared.metrics.reloads.with_label_values(&["success"]).inc();
            shared.ready.store(true, Ordering::Release);
            tracing::info!(file = %path.display(), routes = settings.routes.len(), "configuration loaded");
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration rejected; the last good one keeps serving");
            shared.metrics.reloads.with_label_values(&["error"]).inc();
            false
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
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
            self.reload().await;
        }
    }
}
