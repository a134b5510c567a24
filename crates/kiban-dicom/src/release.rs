//! The pseudonymization hook of a DICOM release (issue 4 item 4, A3): Patient ID pseudonyms, keyed
//! UIDs and per-person date offsets all come from the release's own pseudonym domain of
//! `kiban-identity` ([`kiban_identity::release`]), so two releases of the same images cannot be joined
//! on any of them, unless the review committee's decision allows linkage with an earlier release —
//! then that release's domain is reused and its tokens, UIDs and offsets come out the same.
//!
//! The same domain key serves the tabular pseudonymization of the release, so a patient known to the
//! identity vault carries one token in both the tables and the images of one release.

use kiban_identity::keystore::KeyStore;
use kiban_identity::pseudonym::PseudonymKey;
use kiban_identity::release::{LinkageDecision, ReleaseDomain, ReleaseError, release_key};

use crate::deid::{Keyring, PersonResolver};

/// The key of one release's pseudonym domain and its register entry (which holds no key).
pub struct ReleaseKeys {
    key: PseudonymKey,
    domain: ReleaseDomain,
}

impl std::fmt::Debug for ReleaseKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key's own Debug already hides it; the domain entry names no key.
        f.debug_struct("ReleaseKeys").field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl ReleaseKeys {
    /// The keys of `release`: a new domain of its own, or with the committee's `linkage` decision the
    /// earlier release's domain. Asking again for a registered release gives the same keys.
    pub fn for_release(
        ks: &mut KeyStore,
        release: &str,
        linkage: Option<&LinkageDecision>,
    ) -> Result<ReleaseKeys, ReleaseError> {
        let (key, domain) = release_key(ks, release, linkage)?;
        Ok(ReleaseKeys { key, domain })
    }

    /// The keyring the de-identification runs with; `resolve` maps (Patient ID, Issuer) to the
    /// identity vault's person key, whose release token then becomes the Patient ID.
    pub fn keyring<'a>(&'a self, resolve: Option<&'a PersonResolver>) -> Keyring<'a> {
        Keyring { key: &self.key, resolve }
    }

    /// The release's register entry: domain, root key version, linkage and decision.
    pub fn domain(&self) -> &ReleaseDomain {
        &self.domain
    }
}
