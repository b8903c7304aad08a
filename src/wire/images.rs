//! Bodies and answers of the image endpoints (`/v1/images/...`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::images::store::GcReport as ImagesPruned;
pub use crate::images::store::ImageSummary;

/// `POST /v1/images/pull`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullRequest {
    /// `NAME[:TAG][@DIGEST]`.
    pub image: String,
}

/// `POST /v1/images/load`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// An OCI layout directory, an OCI layout tar, or a `docker save` tar,
    /// on the agent's host (absolute).
    pub path: PathBuf,
}

/// The answer of a load: the references loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loaded {
    pub loaded: Vec<String>,
}

/// What `DELETE /v1/images/{ref}` removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRemoved {
    pub removed: Vec<String>,
}

/// A line of `GET /v1/images`: the stored image and whether a container
/// uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageListed {
    #[serde(flatten)]
    pub image: ImageSummary,
    pub in_use: bool,
}
