//! kiban-identity owns everything that can identify a person: the identity vault (IDAT: names in
//! kanji and kana, birth date, sex, address, phone, insurer and card numbers, provider patient ids),
//! the versioned canonical form of Japanese names and numbers that matching runs on, the master
//! patient index that decides which provider records are one person and hands out the random
//! [`kiban_model::id::PersonKey`], the key store (master key, per-domain pseudonym keys, envelope
//! encryption), pseudonym tokens, and the one-way linkage keys for the NDB, DPC and long-term-care
//! databases (L1, L2). Architecture invariants: only kiban-identity reads the vault, and every vault
//! access goes through the caller's audit hook; no crate but kiban-identity holds a pseudonym key or
//! the master key, and no key ever appears in `Debug` output, an error, a log or a test snapshot;
//! the clinical store sees person keys and tokens only; bad input never matches silently — it is
//! rejected per record with an error naming the field and the rule.

pub mod eval;
pub mod identity;
pub mod keystore;
pub mod linkage;
pub mod mpi;
pub mod normalize;
pub mod pseudonym;
pub mod release;
pub mod store;
pub mod vault;
