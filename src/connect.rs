//! Reaching a cluster: the kubeconfig (or in-cluster) client and the async runtime that the
//! cluster commands, the probe and the controller share. Imports nothing of hangar's.

/// Connection settings shared by the cluster commands.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    /// Kubeconfig context (default: the current one; in a pod, the service account).
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot load a kubeconfig or in-cluster config: {0}")]
    Config(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

pub async fn client(c: &Connect) -> Result<kube::Client, ConnectError> {
    let config = config(c).await?;
    kube::Client::try_from(config).map_err(|e| ConnectError::Client(e.to_string()))
}

/// The kubeconfig (or in-cluster) settings, for a client built another way.
pub async fn config(c: &Connect) -> Result<kube::Config, ConnectError> {
    match &c.context {
        Some(ctx) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(ctx.clone()),
            ..Default::default()
        })
        .await
        .map_err(|e| ConnectError::Config(e.to_string())),
        None => kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Config(e.to_string())),
    }
}

pub fn runtime() -> Result<tokio::runtime::Runtime, ConnectError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ConnectError::Runtime)
}
