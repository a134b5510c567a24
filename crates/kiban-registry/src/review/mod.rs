//! Applications, the review committee, decisions, agreements, releases and supervision (R1–R14, D1–D9).
//!
//! The workflow of one application is a pure, typed state machine in [`workflow`]: a command and the
//! current state give events or a typed error naming the rule; the state is the fold of the events.
//! Nothing in [`committee`], [`application`], [`agreement`], [`workflow`], [`sanction`] or [`notice`]
//! touches SQL or the clock, so every invariant is tested in plain Rust (and with proptest over random
//! command sequences). The registry ([`db`]) stores each application's events append-only, the
//! committee roster, violations and sanctions, and writes the statutory ledger ([`crate::ledger`]) when
//! a release event is stored.

pub mod agreement;
pub mod application;
pub mod committee;
pub mod contracts;
pub mod db;
pub mod notice;
pub mod package;
pub mod sample;
pub mod sanction;
pub mod workflow;

#[cfg(test)]
mod tests;
