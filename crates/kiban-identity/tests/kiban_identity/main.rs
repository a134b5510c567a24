//! kiban-identity's one integration-test binary: the published normalization and linkage vectors.
//! Run one group with e.g. `cargo test -p kiban-identity --test kiban_identity linkage_vectors`.

mod linkage_vectors;
mod normalization_vectors;
mod shared_vault;
