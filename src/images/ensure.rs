//! `ensure_image`: what a launch calls to have an image in the store,
//! following a pull policy. Concurrent calls for the same reference share
//! one pull (the second waits, then finds the image).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::pull::{pull, Progress, PullError, PullOptions};
use super::reference::Reference;
use super::store::{ImageStore, ImageStoreError, StoredImage};

/// When a launch pulls its image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Pull only if the store does not have it.
    #[default]
    Missing,
    /// Always ask the registry (layers already stored are not fetched again).
    Always,
    /// Never pull: the image must be in the store.
    Never,
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error("image {0}: not in the store and the pull policy is never")]
    NotPresent(String),
    #[error("image {reference}: {source}")]
    Pull {
        reference: String,
        #[source]
        source: Box<PullError>,
    },
    #[error("image {reference}: {source}")]
    Store {
        reference: String,
        #[source]
        source: ImageStoreError,
    },
    /// Unpacking the pulled image's layers failed (the message names the
    /// image and the layer).
    #[error("{0}")]
    Unpack(String),
}

/// The agent's images: the store, registry options, pulls in progress.
pub struct Images {
    pub store: ImageStore,
    pub options: PullOptions,
    pulls: Mutex<HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
}

impl Images {
    pub fn new(store: ImageStore, options: PullOptions) -> Self {
        Self {
            store,
            options,
            pulls: Mutex::new(HashMap::new()),
        }
    }

    fn pull_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        pulls.retain(|_, w| w.strong_count() > 0);
        if let Some(lock) = pulls.get(name).and_then(|w| w.upgrade()) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        pulls.insert(name.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// Pulls `reference` (shared with any pull of it in progress).
    pub async fn pull(
        &self,
        reference: &Reference,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<StoredImage, EnsureError> {
        let name = reference.to_string();
        let lock = self.pull_lock(&name);
        let _guard = lock.lock().await;
        pull(&self.store, reference, &self.options, progress)
            .await
            .map_err(|source| EnsureError::Pull {
                reference: name,
                source: Box::new(source),
            })
    }

    /// The image `reference` names, pulled first as `policy` says.
    pub async fn ensure_image(
        &self,
        reference: &Reference,
        policy: PullPolicy,
    ) -> Result<StoredImage, EnsureError> {
        let name = reference.to_string();
        let stored = || {
            self.store
                .resolve(reference)
                .map_err(|source| EnsureError::Store {
                    reference: name.clone(),
                    source,
                })
        };
        match policy {
            PullPolicy::Never => {
                let image = stored()?.ok_or_else(|| EnsureError::NotPresent(name.clone()))?;
                let _ = self.store.touch(reference);
                Ok(image)
            }
            PullPolicy::Missing => {
                if let Some(image) = stored()? {
                    let _ = self.store.touch(reference);
                    return Ok(image);
                }
                let lock = self.pull_lock(&name);
                let _guard = lock.lock().await;
                // A pull that held the lock before us may have stored it.
                if let Some(image) = stored()? {
                    return Ok(image);
                }
                pull(&self.store, reference, &self.options, &mut |_| {})
                    .await
                    .map_err(|source| EnsureError::Pull {
                        reference: name.clone(),
                        source: Box::new(source),
                    })
            }
            PullPolicy::Always => self.pull(reference, &mut |_| {}).await,
        }
    }
}
