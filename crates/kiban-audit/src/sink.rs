//! The interface other crates take to record their operations.

use std::sync::{Arc, Mutex};

use crate::AuditError;
use crate::event::{Event, Seq};

/// Where auditable operations are recorded; other crates take `&dyn AuditSink` (or `Arc<dyn AuditSink>`).
///
/// Call it for every read or write of medical information, identities, keys, ledgers and releases,
/// after the operation with its outcome (also when it failed or was denied). An error means the
/// operation could not be recorded: the caller must not report the operation as done.
pub trait AuditSink: Send + Sync {
    /// Records one event and returns its sequence number.
    fn record(&self, event: Event) -> Result<Seq, AuditError>;
}

impl<T: AuditSink + ?Sized> AuditSink for Arc<T> {
    fn record(&self, event: Event) -> Result<Seq, AuditError> {
        (**self).record(event)
    }
}

impl<T: AuditSink + ?Sized> AuditSink for &T {
    fn record(&self, event: Event) -> Result<Seq, AuditError> {
        (**self).record(event)
    }
}

/// A sink that keeps events in memory, for other crates' tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl AuditSink for MemorySink {
    fn record(&self, event: Event) -> Result<Seq, AuditError> {
        let mut ev = self.events.lock().unwrap_or_else(|e| e.into_inner());
        ev.push(event);
        Ok(Seq(ev.len() as u64))
    }
}
