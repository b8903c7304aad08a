//! Images: references, the content store (an OCI image layout under the
//! work dir), and the documents it holds. Image content is untrusted: every
//! blob is verified against its digest before it is used, and no path is
//! built from anything but a validated digest. See
//! docs/decisions/0021-image-store-and-registry-client.md.

pub mod archive;
pub mod digest;
pub mod docker_config;
pub mod ensure;
pub mod load;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod settings;
pub mod store;
pub mod tls;
pub mod unpack;

pub use digest::{Digest, DigestError};
pub use ensure::{EnsureError, Images, PullPolicy};
pub use manifest::{Compression, ImageConfig, Platform};
pub use reference::{Reference, ReferenceError};
pub use store::{ImageStore, ImageStoreError, ImageSummary, Layer, StoredImage};
