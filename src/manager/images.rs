//! The agent's image operations that need to know about containers: an
//! image a container record names is in use (not removed unless forced,
//! never collected), and image GC by store size and disk headroom.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Manager, ManagerError};
use crate::images::store::GcReport;
use crate::images::{Digest, Images, Reference};

pub use crate::wire::images::ImageRemoved;

impl Manager {
    fn images_arc(&self) -> Result<Arc<Images>, ManagerError> {
        self.images().cloned()
    }

    /// Parses an image reference from a request; a bad one is a 400
    /// naming `image`.
    pub fn parse_image(&self, text: &str) -> Result<Reference, ManagerError> {
        let images = self.images()?;
        images
            .options
            .parse_reference(text)
            .map_err(|e| ManagerError::invalid("image", e.to_string()))
    }

    /// Manifest digests and references of images container records name.
    pub fn images_in_use(&self) -> (BTreeSet<Digest>, BTreeSet<String>) {
        let mut digests = BTreeSet::new();
        let mut names = BTreeSet::new();
        for c in self.list() {
            if let Some(d) = c
                .image_digest
                .as_deref()
                .and_then(|d| Digest::parse(d).ok())
            {
                digests.insert(d);
            }
            if let Some(i) = &c.image {
                names.insert(i.clone());
            }
        }
        (digests, names)
    }

    /// Removes the image `text` names, refused (409) while a container
    /// record names it unless `force`.
    pub async fn remove_image(
        &self,
        text: &str,
        force: bool,
    ) -> Result<ImageRemoved, ManagerError> {
        let reference = self.parse_image(text)?;
        let images = self.images_arc()?;
        // No launch is between unpacking this image's layers and mounting
        // them while it goes.
        let _gate = self.image_gate.write().await;
        let name = reference.to_string();
        let stored = images
            .store
            .resolve(&reference)
            .map_err(|e| ManagerError::Internal(e.to_string()))?
            .ok_or_else(|| ManagerError::NotFound(format!("image {name}")))?;
        let digest = stored.manifest_digest.to_string();
        let users: Vec<crate::container::ContainerView> = self
            .list()
            .into_iter()
            .filter(|c| {
                c.image.as_deref() == Some(name.as_str())
                    || c.image_digest.as_deref() == Some(digest.as_str())
            })
            .collect();
        // Its layer dirs are the lower dirs of a running container's root:
        // never removed under it, forced or not.
        let running: Vec<String> = users
            .iter()
            .filter(|c| c.state == crate::container::State::Running)
            .map(|c| c.id.to_string())
            .collect();
        if !running.is_empty() {
            return Err(ManagerError::Conflict(format!(
                "image {name} is the root of running container(s) {}; stop them first",
                running.join(", ")
            )));
        }
        if !force {
            let users: Vec<String> = users.iter().map(|c| c.id.to_string()).collect();
            if !users.is_empty() {
                return Err(ManagerError::Conflict(format!(
                    "image {name} is used by container(s) {}; remove them first or force",
                    users.join(", ")
                )));
            }
        }
        let removed = tokio::task::spawn_blocking(move || {
            let removed = images.store.remove(&reference);
            prune_layers(&images.store);
            removed
        })
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?
        .map_err(|e| match e {
            crate::images::ImageStoreError::NotFound(n) => {
                ManagerError::NotFound(format!("image {n}"))
            }
            e => ManagerError::Internal(e.to_string()),
        })?;
        self.events.image("delete", &name, Some(&digest));
        Ok(ImageRemoved { removed })
    }

    /// Removes every image no container uses (and unreferenced blobs).
    pub async fn prune_images(&self) -> Result<GcReport, ManagerError> {
        self.collect_images(0).await
    }

    /// Image GC: removes images no container uses, least recently used
    /// first, until the store holds at most `limit` bytes; never a blob a
    /// pull in flight needs.
    pub async fn collect_images(&self, limit: u64) -> Result<GcReport, ManagerError> {
        let images = self.images_arc()?;
        let _gate = self.image_gate.write().await;
        let (in_use, _) = self.images_in_use();
        tokio::task::spawn_blocking(move || {
            let keep = crate::images::pull::pinned_blobs();
            let report = images.store.gc(limit, &in_use, &keep);
            if report.as_ref().is_ok_and(|r| !r.removed.is_empty()) || limit == 0 {
                prune_layers(&images.store);
            }
            report
        })
        .await
        .map_err(|e| ManagerError::Internal(e.to_string()))?
        .map_err(|e| ManagerError::Internal(e.to_string()))
    }

    /// The periodic image GC: collects down to `[images] max_store_bytes`,
    /// or, when the work dir's disk has less free space than the GC's
    /// headroom, down to the store size less the shortfall. Does nothing
    /// when neither applies.
    pub async fn images_gc(&self) -> Result<Option<GcReport>, ManagerError> {
        let images = self.images_arc()?;
        let size = images
            .store
            .size()
            .map_err(|e| ManagerError::Internal(e.to_string()))?;
        let mut limit = self.config.images.max_store_bytes.unwrap_or(u64::MAX);
        if let Some(shortfall) =
            headroom_shortfall(&self.config.work_dir, self.config.gc.disk_headroom)
        {
            limit = limit.min(size.saturating_sub(shortfall));
        }
        if size <= limit {
            return Ok(None);
        }
        let report = self.collect_images(limit).await?;
        if !report.removed.is_empty() {
            tracing::info!(removed = ?report.removed, freed = report.freed, "image gc");
        }
        Ok(Some(report))
    }
}

/// Removes unpacked layers no stored image uses (logged on failure: the
/// next collection tries again).
fn prune_layers(store: &crate::images::ImageStore) {
    if let Err(e) = crate::images::unpack::prune_layers(store) {
        tracing::warn!("prune unpacked layers: {e}");
    }
}

/// Bytes to free on the work dir's filesystem for its free share to reach
/// `headroom` (0 to 1), or None when it already has that.
pub fn headroom_shortfall(path: &std::path::Path, headroom: f64) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let block = stat.fragment_size().max(1) as u128;
    let total = stat.blocks() as u128 * block;
    let available = stat.blocks_available() as u128 * block;
    let wanted = (total as f64 * headroom.clamp(0.0, 1.0)) as u128;
    (available < wanted).then(|| (wanted - available) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headroom_shortfall_is_what_free_space_lacks() {
        let root = std::path::Path::new("/");
        assert_eq!(headroom_shortfall(root, 0.0), None);
        // Wanting the whole disk free: short by at least the used space.
        assert!(headroom_shortfall(root, 1.0).is_some_and(|s| s > 0));
    }
}
