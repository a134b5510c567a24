//! Reading CSV (with header) and Parquet input as record batches of strings, and writing CSV or
//! Parquet output through a staging file renamed into place.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use sha2::{Digest, Sha256};

use crate::error::{DeidError, Result};

/// Rows per batch when reading.
pub const BATCH_ROWS: usize = 65_536;

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A CSV file with a header row (delimiter from the policy).
    Csv(PathBuf),
    /// A Parquet file.
    Parquet(PathBuf),
    /// Record batches in memory.
    Batches(Vec<RecordBatch>),
    /// Batches produced anew on every pass (e.g. the sealed parts of a dataset, opened one at a
    /// time): memory is bounded by what the source holds at once, not by the whole input.
    Stream(BatchSource),
}

/// Calls its argument with every batch of a source, in order, each time it is called.
type EachBatch = dyn Fn(&mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> + Send + Sync;

/// A re-readable source of batches for [`Input::Stream`], with a name for errors.
#[derive(Clone)]
pub struct BatchSource {
    name: String,
    each: Arc<EachBatch>,
}

impl BatchSource {
    /// A source named `name` (in errors and reports) whose batches `each` passes to its callback.
    pub fn new(
        name: impl Into<String>,
        each: impl Fn(&mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        BatchSource { name: name.into(), each: Arc::new(each) }
    }
    /// Reads the source once, passing every batch to `f`.
    pub fn for_each(&self, f: &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> {
        (self.each)(f)
    }
}

impl std::fmt::Debug for BatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchSource({})", self.name)
    }
}

/// Takes output batches one at a time for [`Output::Stream`] (e.g. writes them as sealed parts).
type TakeBatch = dyn FnMut(RecordBatch) -> Result<()> + Send;

/// A consumer of output batches for [`Output::Stream`].
#[derive(Clone)]
pub struct BatchConsumer(Arc<std::sync::Mutex<Box<TakeBatch>>>);

impl BatchConsumer {
    /// A consumer that passes every output batch to `take`.
    pub fn new(take: impl FnMut(RecordBatch) -> Result<()> + Send + 'static) -> Self {
        BatchConsumer(Arc::new(std::sync::Mutex::new(Box::new(take))))
    }
    fn take(&self, b: RecordBatch) -> Result<()> {
        (self.0.lock().unwrap_or_else(|p| p.into_inner()))(b)
    }
}

impl std::fmt::Debug for BatchConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchConsumer")
    }
}

impl Input {
    /// Chooses CSV or Parquet by the file extension (`.parquet`/`.pq` is Parquet, anything else CSV).
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet" | "pq") => Input::Parquet(path),
            _ => Input::Csv(path),
        }
    }
    /// The input's name in errors: its path, `<batches>` or the stream source's name.
    pub(crate) fn name(&self) -> String {
        match self {
            Input::Csv(p) | Input::Parquet(p) => p.display().to_string(),
            Input::Batches(_) => "<batches>".to_owned(),
            Input::Stream(s) => s.name.clone(),
        }
    }
}

/// Where the processed records go.
#[derive(Debug, Clone)]
pub enum Output {
    /// A CSV file with a header row.
    Csv(PathBuf),
    /// A Parquet file.
    Parquet(PathBuf),
    /// Returned in memory.
    Memory,
    /// Passed batch by batch to a consumer, never held together (its digest is the consumer's to make).
    Stream(BatchConsumer),
}

impl Output {
    /// Chooses CSV or Parquet by the file extension.
    pub fn from_path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        match path.extension().and_then(|e| e.to_str()) {
            Some("parquet" | "pq") => Output::Parquet(path),
            _ => Output::Csv(path),
        }
    }
}

/// Calls `f` with every batch of the input, every column cast to UTF-8 strings.
pub fn for_each_batch(input: &Input, delimiter: u8, mut f: impl FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
    let name = input.name();
    // Records read so far, so that a value that is not text is named by its record number.
    let mut seen = 0u64;
    let mut to_strings = |batch: &RecordBatch, name: &str| {
        let r = to_strings(batch, name, seen);
        seen += batch.num_rows() as u64;
        r
    };
    match input {
        Input::Batches(b) => {
            for batch in b {
                f(&to_strings(batch, &name)?)?;
            }
        }
        Input::Stream(s) => s.for_each(&mut |batch| f(&to_strings(&batch, &name)?))?,
        Input::Parquet(p) => {
            let file = File::open(p).map_err(|e| DeidError::Io { path: name.clone(), source: e })?;
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| DeidError::format(&name, e))?
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| DeidError::format(&name, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| DeidError::format(&name, e))?;
                f(&to_strings(&batch, &name)?)?;
            }
        }
        Input::Csv(p) => {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .has_headers(true)
                .from_path(p)
                .map_err(|e| DeidError::format(&name, e))?;
            let headers: Vec<String> =
                rdr.headers().map_err(|e| DeidError::format(&name, e))?.iter().map(|h| h.trim().to_owned()).collect();
            let schema: SchemaRef =
                Arc::new(Schema::new(headers.iter().map(|h| Field::new(h, DataType::Utf8, true)).collect::<Vec<_>>()));
            let mut builders: Vec<StringBuilder> = headers.iter().map(|_| StringBuilder::new()).collect();
            let mut rows = 0;
            let mut rec = csv::StringRecord::new();
            let flush = |builders: &mut Vec<StringBuilder>| -> Result<RecordBatch> {
                let cols: Vec<ArrayRef> = builders.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
                RecordBatch::try_new(schema.clone(), cols).map_err(|e| DeidError::format(&name, e))
            };
            loop {
                let more = rdr.read_record(&mut rec).map_err(|e| DeidError::format(&name, e))?;
                if !more {
                    break;
                }
                if rec.len() != headers.len() {
                    let line = rec.position().map_or(0, |p| p.line());
                    return Err(DeidError::format(
                        &name,
                        format!(
                            "line {line}: {} fields where the header has {} (rule: rectangular CSV)",
                            rec.len(),
                            headers.len()
                        ),
                    ));
                }
                for (b, v) in builders.iter_mut().zip(rec.iter()) {
                    b.append_value(v.trim());
                }
                rows += 1;
                if rows == BATCH_ROWS {
                    f(&flush(&mut builders)?)?;
                    rows = 0;
                }
            }
            if rows > 0 {
                f(&flush(&mut builders)?)?;
            }
        }
    }
    Ok(())
}

/// Every column of `batch` as text; a column that cannot be read as text is refused naming it and,
/// for bytes that are not UTF-8, the first such record (counted from 1 over the whole input, the
/// batch starting after `before` records).
fn to_strings(batch: &RecordBatch, name: &str, before: u64) -> Result<RecordBatch> {
    if batch.schema().fields().iter().all(|f| f.data_type() == &DataType::Utf8) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut cols = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        // Arrow's cast would turn bytes that are not UTF-8 into nulls: refused instead, by record.
        if let Some(r) = invalid_utf8_row(c.as_ref()) {
            return Err(DeidError::format(
                name,
                format!(
                    "column {}, record {}: bytes that are not UTF-8 (rule: text is UTF-8; nothing is dropped)",
                    f.name(),
                    before + r as u64 + 1
                ),
            ));
        }
        let c = arrow::compute::cast(c, &DataType::Utf8)
            .map_err(|e| DeidError::format(name, format!("column {}: cannot read as text: {e}", f.name())))?;
        fields.push(Field::new(f.name(), DataType::Utf8, true));
        cols.push(c);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(|e| DeidError::format(name, e))
}

/// The first row of a binary column whose bytes are not UTF-8.
fn invalid_utf8_row(c: &dyn Array) -> Option<usize> {
    use arrow::array::AsArray;
    fn first<'a>(mut it: impl Iterator<Item = Option<&'a [u8]>>) -> Option<usize> {
        it.position(|v| v.is_some_and(|b| std::str::from_utf8(b).is_err()))
    }
    match c.data_type() {
        DataType::Binary => first(c.as_binary::<i32>().iter()),
        DataType::LargeBinary => first(c.as_binary::<i64>().iter()),
        DataType::BinaryView => first(c.as_binary_view().iter()),
        _ => None,
    }
}

/// The string column `i` of a batch produced by [`for_each_batch`].
pub fn strings(batch: &RecordBatch, i: usize) -> &StringArray {
    batch.column(i).as_any().downcast_ref::<StringArray>().expect("for_each_batch yields UTF-8 columns")
}

/// SHA-256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DeidError::Io { path: path.display().to_string(), source: e })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DeidError::Io { path: path.display().to_string(), source: e })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Hashes batch contents (column names and values, unit-separated) into `h`.
pub fn hash_batch(h: &mut Sha256, batch: &RecordBatch) {
    for f in batch.schema().fields() {
        h.update(f.name().as_bytes());
        h.update([0x1f]);
    }
    // The same byte stream as one update per value and separator, fed in large blocks.
    let cols: Vec<&StringArray> = (0..batch.num_columns()).map(|c| strings(batch, c)).collect();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    for r in 0..batch.num_rows() {
        for a in &cols {
            if a.is_valid(r) {
                buf.extend_from_slice(a.value(r).as_bytes());
            } else {
                buf.push(0);
            }
            buf.push(0x1f);
        }
        buf.push(0x1e);
        if buf.len() >= 1 << 16 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
}

/// BLAKE3 of one text column straight from its Arrow buffers (no per-value update): the row count
/// (u64 LE), then either `0x01` and one length byte per value (when every value is shorter than 256
/// bytes: a quarter of the bytes to hash) or `0x04` and the value offsets from 0 (i32 LE, rows + 1
/// of them), then the value bytes, and a validity byte per row when the column has nulls.
pub fn column_digest(a: &StringArray) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(a.len() as u64).to_le_bytes());
    let offs = a.value_offsets();
    // Lengths of short values as bytes, in a branch-free pass that vectorizes.
    let lens: Vec<u8> = offs[1..].iter().zip(&offs[..offs.len() - 1]).map(|(e, s)| (e - s).min(255) as u8).collect();
    if !lens.contains(&255) {
        h.update(&[0x01]);
        h.update(&lens);
    } else if offs[0] == 0 && cfg!(target_endian = "little") {
        h.update(&[0x04]);
        // The offsets buffer already is the i32 LE bytes starting at 0.
        h.update(a.offsets().inner().inner().as_slice());
    } else {
        h.update(&[0x04]);
        let mut rebased: Vec<u8> = Vec::with_capacity(offs.len() * 4);
        for o in offs {
            rebased.extend_from_slice(&(o - offs[0]).to_le_bytes());
        }
        h.update(&rebased);
    }
    let (first, last) = (offs[0] as usize, offs[a.len()] as usize);
    h.update(&a.value_data()[first..last]);
    if a.null_count() > 0 {
        let v: Vec<u8> = (0..a.len()).map(|r| a.is_valid(r) as u8).collect();
        h.update(&v);
    }
    *h.finalize().as_bytes()
}

/// Feeds a batch into a digest as, per column, its name, 0x1f and its [`column_digest`] (given in
/// `known` when already computed, e.g. for a column passed through unchanged). Pseudonymization's
/// digest of in-memory batches (files are hashed with SHA-256 as they are).
pub fn digest_batch_columns(h: &mut blake3::Hasher, batch: &RecordBatch, known: &[Option<[u8; 32]>]) {
    for (c, f) in batch.schema().fields().iter().enumerate() {
        let d = known.get(c).copied().flatten().unwrap_or_else(|| column_digest(strings(batch, c)));
        h.update(f.name().as_bytes());
        h.update(&[0x1f]);
        h.update(&d);
    }
}

/// A writer of output batches to CSV or Parquet through `<path>.partial`, renamed on `finish`.
/// Each batch becomes one Parquet row group (or a run of CSV lines), encoded by [`Sink::encoder`]
/// on any thread, so a pipeline's workers compress while this writer only appends in order.
pub enum Sink {
    /// CSV.
    Csv(Box<File>, PathBuf),
    /// Parquet.
    Parquet(Box<parquet::file::writer::SerializedFileWriter<File>>, Arc<Encoder>, PathBuf),
    /// Memory.
    Memory(Vec<RecordBatch>),
    /// Handed on batch by batch.
    Stream(BatchConsumer),
}

/// A batch encoded for a [`Sink`]: Parquet column chunks of one row group or CSV lines.
pub enum Encoded {
    /// Column chunks of one row group and its rows.
    Parquet(Vec<parquet::arrow::arrow_writer::ArrowColumnChunk>, usize),
    /// CSV lines (no header).
    Csv(Vec<u8>),
    /// Kept as a batch (memory output).
    Batch(RecordBatch),
}

/// Encodes output batches for a file [`Sink`]; shareable between threads.
pub enum Encoder {
    /// Parquet column writers from the file's factory.
    Parquet(parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory, SchemaRef),
    /// CSV lines.
    Csv,
    /// Batches kept as they are.
    Memory,
}

impl Encoder {
    /// Encodes one batch (of the sink's schema).
    pub fn encode(&self, batch: RecordBatch) -> Result<Encoded> {
        let err = |e: parquet::errors::ParquetError| DeidError::format("output", e);
        match self {
            Encoder::Memory => Ok(Encoded::Batch(batch)),
            Encoder::Csv => {
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
                let cols: Vec<&StringArray> = (0..batch.num_columns()).map(|i| strings(&batch, i)).collect();
                for r in 0..batch.num_rows() {
                    w.write_record(cols.iter().map(|c| if c.is_valid(r) { c.value(r) } else { "" }))
                        .map_err(|e| DeidError::format("output", e))?;
                }
                w.into_inner().map(Encoded::Csv).map_err(|e| DeidError::format("output", e.to_string()))
            }
            Encoder::Parquet(factory, schema) => {
                let mut writers = factory.create_column_writers(0).map_err(err)?;
                let mut next = writers.iter_mut();
                for (a, f) in batch.columns().iter().zip(schema.fields()) {
                    for leaf in parquet::arrow::arrow_writer::compute_leaves(f, a).map_err(err)? {
                        next.next()
                            .ok_or_else(|| DeidError::format("output", "more leaves than columns"))?
                            .write(&leaf)
                            .map_err(err)?;
                    }
                }
                let chunks =
                    writers.into_iter().map(|w| w.close()).collect::<std::result::Result<Vec<_>, _>>().map_err(err)?;
                Ok(Encoded::Parquet(chunks, batch.num_rows()))
            }
        }
    }
}

fn staging(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

impl Sink {
    /// Opens the sink for batches of `schema`.
    pub fn open(output: &Output, schema: SchemaRef) -> Result<Sink> {
        match output {
            Output::Memory => Ok(Sink::Memory(Vec::new())),
            Output::Stream(c) => Ok(Sink::Stream(c.clone())),
            Output::Csv(p) => {
                let file =
                    File::create(staging(p)).map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?;
                let mut w = csv::Writer::from_writer(file);
                w.write_record(schema.fields().iter().map(|f| f.name().as_str()))
                    .map_err(|e| DeidError::format(p.display().to_string(), e))?;
                let file = w.into_inner().map_err(|e| DeidError::format(p.display().to_string(), e.to_string()))?;
                Ok(Sink::Csv(Box::new(file), p.clone()))
            }
            Output::Parquet(p) => {
                let file =
                    File::create(staging(p)).map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?;
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build();
                // The ArrowWriter sets up the file (with the Arrow schema in its metadata); row groups
                // are then encoded by column writers from its factory, on whichever thread.
                let w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))
                    .map_err(|e| DeidError::format(p.display().to_string(), e))?;
                let (writer, factory) =
                    w.into_serialized_writer().map_err(|e| DeidError::format(p.display().to_string(), e))?;
                Ok(Sink::Parquet(Box::new(writer), Arc::new(Encoder::Parquet(factory, schema)), p.clone()))
            }
        }
    }

    /// The encoder of this sink's batches, to run on other threads before [`Sink::write_encoded`].
    pub fn encoder(&self) -> Arc<Encoder> {
        match self {
            Sink::Parquet(_, e, _) => e.clone(),
            Sink::Csv(..) => Arc::new(Encoder::Csv),
            Sink::Memory(_) | Sink::Stream(_) => Arc::new(Encoder::Memory),
        }
    }

    /// Writes one batch.
    pub fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let e = self.encoder().encode(batch)?;
        self.write_encoded(e)
    }

    /// Appends one encoded batch (encoded by this sink's [`Sink::encoder`]).
    pub fn write_encoded(&mut self, e: Encoded) -> Result<()> {
        use std::io::Write;
        match (self, e) {
            (Sink::Memory(v), Encoded::Batch(b)) => v.push(b),
            (Sink::Stream(c), Encoded::Batch(b)) => c.take(b)?,
            (Sink::Csv(f, p), Encoded::Csv(bytes)) => {
                f.write_all(&bytes).map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?
            }
            (Sink::Parquet(w, _, p), Encoded::Parquet(chunks, rows)) => {
                if rows == 0 {
                    return Ok(());
                }
                let err = |e: parquet::errors::ParquetError| DeidError::format(p.display().to_string(), e);
                let mut rg = w.next_row_group().map_err(err)?;
                for c in chunks {
                    c.append_to_row_group(&mut rg).map_err(err)?;
                }
                rg.close().map_err(err)?;
            }
            _ => return Err(DeidError::format("output", "a batch encoded for another kind of output")),
        }
        Ok(())
    }

    /// Finishes the file, renames it into place and returns its SHA-256 and the batches kept in memory.
    pub fn finish(self, memory_hash: Sha256) -> Result<(String, Vec<RecordBatch>)> {
        let path = match self {
            Sink::Memory(v) => return Ok((hex::encode(memory_hash.finalize()), v)),
            Sink::Stream(_) => return Ok((hex::encode(memory_hash.finalize()), Vec::new())),
            Sink::Csv(mut f, p) => {
                use std::io::Write;
                f.flush().map_err(|e| DeidError::Io { path: p.display().to_string(), source: e })?;
                p
            }
            Sink::Parquet(w, _, p) => {
                w.close().map_err(|e| DeidError::format(p.display().to_string(), e))?;
                p
            }
        };
        std::fs::rename(staging(&path), &path)
            .map_err(|e| DeidError::Io { path: path.display().to_string(), source: e })?;
        Ok((file_sha256(&path)?, Vec::new()))
    }
}

/// Threads that transform batches in [`par_map_batches`]: every core (the reader and the ordered
/// consumer run beside them and mostly wait on I/O or on the workers).
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16)
}

/// Streams the input's batches (as [`for_each_batch`] gives them) through `f` on [`workers`]
/// threads and hands each result to `consume` in input order, with the index of the batch's first
/// record. A reader thread decodes ahead; at most a few batches per worker are in flight, so memory
/// stays bounded whatever the input's size. The first error (reading, `f` or `consume`) stops the
/// run and is returned.
pub fn par_map_batches<T: Send>(
    input: &Input,
    delimiter: u8,
    f: impl Fn(&RecordBatch, u64) -> Result<T> + Sync,
    mut consume: impl FnMut(&RecordBatch, T) -> Result<()>,
) -> Result<()> {
    use std::sync::mpsc::{Receiver, sync_channel};
    use std::sync::{Arc as StdArc, Mutex};
    type Job = (u64, u64, RecordBatch);
    let n = workers();
    std::thread::scope(|s| -> Result<()> {
        let (job_tx, job_rx) = sync_channel::<Job>(n);
        let (res_tx, res_rx) = sync_channel::<(u64, RecordBatch, Result<T>)>(2 * n);
        let reader = s.spawn(move || -> Result<u64> {
            let (mut seq, mut first) = (0u64, 0u64);
            let r = for_each_batch(input, delimiter, |b| {
                let rows = b.num_rows() as u64;
                // A closed channel means the consumer stopped on an error it reports itself.
                job_tx.send((seq, first, b.clone())).map_err(|_| DeidError::format("pipeline", "stopped"))?;
                seq += 1;
                first += rows;
                Ok(())
            });
            match r {
                Err(DeidError::Format { ref path, .. }) if path == "pipeline" => Ok(seq),
                r => r.map(|()| seq),
            }
        });
        let job_rx: StdArc<Mutex<Receiver<Job>>> = StdArc::new(Mutex::new(job_rx));
        for _ in 0..n {
            let (job_rx, res_tx, f) = (job_rx.clone(), res_tx.clone(), &f);
            s.spawn(move || {
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, first, batch))) = job else { break };
                    let out = f(&batch, first);
                    if res_tx.send((seq, batch, out)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(res_tx);
        drop(job_rx);
        let consumed = (move || -> Result<u64> {
            let mut pending: std::collections::BTreeMap<u64, (RecordBatch, T)> = Default::default();
            let mut next = 0u64;
            for (seq, batch, out) in res_rx.iter() {
                pending.insert(seq, (batch, out?));
                while let Some((b, t)) = pending.remove(&next) {
                    consume(&b, t)?;
                    next += 1;
                }
            }
            Ok(next)
        })();
        // On an error the result channel is already dropped, so the workers and then the reader stop.
        let read = reader.join().map_err(|_| DeidError::format("pipeline", "the reader panicked"))?;
        let done = consumed?;
        let sent = read?;
        if done != sent {
            // A worker died with a batch: never return a partial result as complete.
            return Err(DeidError::format("pipeline", format!("{} of {sent} batches processed", done)));
        }
        Ok(())
    })
}
