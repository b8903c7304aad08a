//! Chain IDs (OCI image spec, "Layer ChainID"): a layer's identity together
//! with everything below it, so one directory serves every image whose
//! stack up to that layer is the same.

use crate::images::digest::Digest;
use crate::images::store::Layer;

/// The chain ID of each layer, lowest first: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
pub fn chain_ids(layers: &[Layer]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(layers.len());
    for layer in layers {
        let next = match out.last() {
            None => layer.diff_id.clone(),
            Some(below) => Digest::of(format!("{below} {}", layer.diff_id).as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::manifest::Compression;

    fn layer(diff_id: &Digest) -> Layer {
        Layer {
            digest: diff_id.clone(),
            media_type: Compression::Plain,
            size: 0,
            diff_id: diff_id.clone(),
        }
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[layer(&a), layer(&b)]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        // The same layer on another base is another chain.
        assert_ne!(chain_ids(&[layer(&b)])[0], ids[1]);
        assert!(chain_ids(&[]).is_empty());
    }
}
