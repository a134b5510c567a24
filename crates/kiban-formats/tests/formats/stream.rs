//! Item 7 (bounded memory on a 10 GB input): the UKE and CSV readers map records while most of a
//! large input is still unread, so they never hold the whole input. The input is made on the fly
//! by `bench_stream`'s generator (the one the 10 GB benchmark uses), so nothing big is on disk.

use std::cell::Cell;
use std::io::{BufReader, Read};
use std::rc::Rc;

use kiban_formats::bench_stream::{csv_source, uke_source};
use kiban_formats::canonical::{Quarantined, Record, Sink};
use kiban_formats::tabular::SchemaFile;

/// Counts the bytes the reader has pulled from its input.
struct Counting<R> {
    inner: R,
    pulled: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pulled.set(self.pulled.get() + n as u64);
        Ok(n)
    }
}

/// Notes, every 256 records, how much input had been pulled when they arrived.
struct Watch {
    pulled: Rc<Cell<u64>>,
    records: u64,
    marks: Vec<(u64, u64)>,
    quarantined: Vec<String>,
}

impl Watch {
    fn new(pulled: Rc<Cell<u64>>) -> Self {
        Watch { pulled, records: 0, marks: Vec::new(), quarantined: Vec::new() }
    }
    fn seen(&mut self) {
        if self.records.is_multiple_of(256) {
            self.marks.push((self.records, self.pulled.get()));
        }
        self.records += 1;
    }
    /// Input pulled when record `k` (a multiple of 256) arrived.
    fn pulled_at(&self, k: u64) -> u64 {
        self.marks.iter().find(|m| m.0 >= k).expect("mark").1
    }
}

impl Sink for Watch {
    fn record(&mut self, _: Record) {
        self.seen()
    }
    fn record_ref(&mut self, _: Record<&str>) {
        self.seen()
    }
    fn quarantine(&mut self, q: Quarantined) {
        self.quarantined.push(q.to_string())
    }
}

const INPUT: u64 = 4 << 20;
const BUF: usize = 64 << 10;

/// Records are mapped in step with the input: the first within the first buffers, the one half-way
/// through the records when about half of the input has been pulled.
fn check(w: &Watch, produced: u64, what: &str) {
    assert!(w.quarantined.is_empty(), "{what}: {:?}", &w.quarantined[..w.quarantined.len().min(3)]);
    assert!(produced >= INPUT, "{what}: {produced} bytes");
    assert_eq!(w.pulled.get(), produced, "{what}: the whole input is read");
    let first = w.pulled_at(0);
    assert!(first <= (1 << 20), "{what}: first record only after {first} bytes");
    let half = w.pulled_at(w.records / 2);
    let slack = 1 << 20;
    assert!(
        half + slack >= produced / 2 && half <= produced / 2 + slack,
        "{what}: the middle record arrived after {half} of {produced} bytes"
    );
}

#[test]
fn b2_item7_uke_reader_maps_receipts_while_most_of_the_input_is_unread() {
    let (src, masters) = uke_source(100, INPUT).unwrap();
    let pulled = Rc::new(Cell::new(0));
    let mut input = BufReader::with_capacity(BUF, Counting { inner: src, pulled: pulled.clone() });
    let mut w = Watch::new(pulled);
    kiban_formats::uke::read(&mut input, "big.uke", "prov-a", &masters, &mut w).unwrap();
    let src = &input.get_ref().inner;
    assert!(src.repetitions() > 10, "{} repetitions of the template", src.repetitions());
    check(&w, src.produced(), "UKE");
}

#[test]
fn b2_item7_csv_reader_maps_rows_while_most_of_the_input_is_unread() {
    let (schema, table) = SchemaFile::parse(
        "table = \"labs\"\nprovider_id = \"prov-a\"\n[columns]\npatient_id = \"patient_id\"\nencounter_id = \"encounter_id\"\nresult_date = \"result_date\"\ntest_code = \"test_code\"\ntest_name = \"test_name\"\nvalue = \"value\"\nunit = \"unit\"",
    )
    .unwrap();
    let pulled = Rc::new(Cell::new(0));
    let mut w = Watch::new(pulled.clone());
    let counting = Counting { inner: csv_source(100, INPUT), pulled };
    let n = kiban_formats::tabular::read_csv(counting, &schema, table, "big.csv", &mut w);
    assert_eq!(n, w.records, "rows read = rows mapped");
    // The generator's size is what was pulled (the reader owned and dropped it).
    let produced = w.pulled.get();
    check(&w, produced, "CSV");
}
