//! Unpacked layers: each image layer extracted once into its own directory,
//! keyed by chain ID, shared by every image and container that uses it,
//! ready to be an overlayfs lower dir.
//!
//! ```text
//! <work_dir>/images/layers/<chainid-hex>/    one layer's own entries, with
//!                                            overlay whiteouts (char 0/0)
//!                                            and opaque dirs (xattr
//!                                            trusted.overlay.opaque=y)
//! <work_dir>/images/layers/.tmp/<hex>.<pid>.<seq>  an extraction under way
//! <work_dir>/images/layers/.locks/<hex>      flock'd: exclusive while the
//!                                            layer is extracted, shared
//!                                            while a caller uses it
//! ```
//!
//! Layer tars are hostile input: see [`extract`] for how every write stays
//! beneath the layer root, and docs/decisions/0022-layer-extraction.md.
//!
//! The calls here block (file I/O, decompression): async callers run them
//! in `spawn_blocking`.

mod chain;
mod extract;
mod layers;
mod name;
mod node;
mod pipe;
mod prune;

use std::io;
use std::path::PathBuf;

use berth_confined::ConfinedError;

use super::digest::Digest;
use super::store::ImageStoreError;

pub use chain::chain_ids;
pub use layers::{extractions, layer_dir, layers_root, unpacked_layers};
pub use prune::prune_layers;

/// Errors of unpacking; each names the layer (blob digest) and, for a
/// refused entry, the entry's name as the tar has it.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer {layer}: entry {entry:?}: {source}; layer discarded")]
    Entry {
        layer: Digest,
        entry: String,
        #[source]
        source: EntryError,
    },
    #[error("layer {layer}: uncompressed content has digest {actual}, not its diff_id {diff_id}; layer discarded")]
    DiffId {
        layer: Digest,
        diff_id: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: not a valid tar stream: {source}; layer discarded")]
    Tar {
        layer: Digest,
        #[source]
        source: io::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] ImageStoreError),
}

/// Why one tar entry was refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("absolute name (would leave the layer)")]
    Absolute,
    #[error("`..` component (would leave the layer)")]
    ParentDir,
    #[error("NUL byte in the name")]
    Nul,
    #[error("`.wh.` whiteout prefix on a directory of the path")]
    WhiteoutDirectory,
    #[error("whiteout does not name a single entry of its directory")]
    BadWhiteout,
    #[error("the layer root can only be a directory")]
    RootNotDirectory,
    #[error("path goes through a symlink or leaves the layer")]
    ThroughSymlink,
    #[error("link without a target")]
    NoLinkTarget,
    #[error("hard link target {target:?}: {reason}")]
    LinkTarget {
        target: String,
        reason: Box<EntryError>,
    },
    #[error("unsupported entry type {0:#04x}")]
    Type(u8),
    #[error(transparent)]
    Confined(ConfinedError),
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}
