//! Bounded memory on inputs far larger than RAM (issue 5, item 7): each streaming reader is fed N GB
//! made on the fly by a [`Read`] (no big file on disk) and writes the canonical tables to Parquet
//! in a temp dir, as `kiban formats convert` does; the resident set is sampled as the input flows.
//! `KIBAN_BENCH_STREAM_GB=10 cargo bench -p kiban-formats --bench formats`
//! (`KIBAN_BENCH_STREAM_SAME_PEOPLE=1`: the same persons in every repetition).
//!
//! Measured (release, loaded 2-core machine, 2026-11-22): 10 GB of UKE with new persons in every
//! repetition (about 11M persons) ran at 128 MB resident after 256 MB and 306 MB at most; 2 GB
//! with the same 2,640 persons repeated stayed at 83–90 MB. So the growth is the reader's set of
//! persons already written (one 8-byte hash each, about 16 bytes with the table), not the input:
//! a real file (one provider, one month) holds at most some 10^5 persons. CSV: flat, 165 MB at
//! 10 GB.

use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

use arrow::record_batch::RecordBatch;
use kiban_model::synth::{SynthConfig, generate_chunk};
use parquet::arrow::ArrowWriter;

use crate::canonical::{BatchSink, Quarantined, Record, Table, records_from_synth};
use crate::convert::{InputFormat, write_format};
use crate::masters::Masters;

/// Resident set (current, peak) of this process in bytes, from `/proc/self/status` (Linux).
pub fn rss() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let l = s.lines().find(|l| l.starts_with(key))?;
        l[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmHWM:")?))
}

/// CPU seconds (user + system) of this process, from `/proc/self/stat`.
fn process_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name and state.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A template file repeated until `target` bytes have been produced: the head once, then the body
/// again and again with a suffix (`r<n>`) inserted at fixed byte offsets (the patient and encounter
/// ids), so every repetition is new people and nothing the reader keeps per person is reused, then
/// the tail made by `tail(repetitions)`. The resident set is sampled every 256 MB.
pub struct Repeated {
    head: Vec<u8>,
    body: Vec<u8>,
    marks: Vec<usize>,
    tail: Box<dyn Fn(u64) -> Vec<u8>>,
    target: u64,
    produced: u64,
    reps: u64,
    buf: Vec<u8>,
    pos: usize,
    stage: u8,
    next_sample: u64,
    /// (bytes produced, resident set) at each sample.
    pub samples: Vec<(u64, u64)>,
}

const SAMPLE_EVERY: u64 = 256 << 20;

impl Repeated {
    /// A source of about `target` bytes.
    pub fn new(
        head: Vec<u8>,
        body: Vec<u8>,
        marks: Vec<usize>,
        tail: Box<dyn Fn(u64) -> Vec<u8>>,
        target: u64,
    ) -> Self {
        Repeated {
            head,
            body,
            marks,
            tail,
            target,
            produced: 0,
            reps: 0,
            buf: Vec::new(),
            pos: 0,
            stage: 0,
            next_sample: SAMPLE_EVERY,
            samples: Vec::new(),
        }
    }
    /// Bytes handed out so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }
    /// The same people in every repetition (no id suffix): what the reader keeps per person
    /// then stays constant, which separates it from any growth with the input's size.
    pub fn same_people(mut self) -> Self {
        self.marks.clear();
        self
    }
    /// Repetitions of the body so far.
    pub fn repetitions(&self) -> u64 {
        self.reps
    }
    fn refill(&mut self) -> bool {
        self.buf.clear();
        self.pos = 0;
        match self.stage {
            0 => {
                self.buf.extend_from_slice(&self.head);
                self.stage = 1;
            }
            1 if self.produced < self.target => {
                let suffix = format!("r{}", self.reps);
                let mut at = 0;
                for &m in &self.marks {
                    self.buf.extend_from_slice(&self.body[at..m]);
                    self.buf.extend_from_slice(suffix.as_bytes());
                    at = m;
                }
                self.buf.extend_from_slice(&self.body[at..]);
                self.reps += 1;
            }
            1 => {
                self.buf = (self.tail)(self.reps);
                self.stage = 2;
            }
            _ => return false,
        }
        true
    }
}

impl Read for Repeated {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if !self.refill() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.produced += n as u64;
        if self.produced >= self.next_sample {
            self.next_sample += SAMPLE_EVERY;
            if let Some((now, _)) = rss() {
                self.samples.push((self.produced, now));
            }
        }
        Ok(n)
    }
}

/// Offsets (in `line`, relative to its start) of the ends of fields `fields` (0-based, comma
/// separated, the line ending not counted), for the non-empty ones.
fn field_ends(line: &[u8], fields: &[usize]) -> Vec<usize> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut ends = Vec::new();
    let mut start = 0;
    for (i, part) in line.split(|&b| b == b',').enumerate() {
        if fields.contains(&i) && !part.is_empty() {
            ends.push(start + part.len());
        }
        start += part.len() + 1;
    }
    ends
}

/// A UKE receipt file of about `bytes` made from `patients` synthetic persons: the IR line, the
/// receipts again and again (RE.13 patient and RE.20 encounter ids made new each time), and a GO
/// line with the right receipt count. Also returns the code masters the receipts need.
pub fn uke_source(patients: u64, bytes: u64) -> Result<(Repeated, Masters), String> {
    let tmp = std::env::temp_dir().join(format!("kiban-bench-stream-uke-{}", std::process::id()));
    let cfg = SynthConfig { patients, ..Default::default() };
    let recs: Vec<Record> = records_from_synth(&generate_chunk(&cfg, 0..patients));
    let mine: Vec<Record> = recs.into_iter().filter(|r| r.provider_id() == "prov-a").collect();
    let mut m = Masters::default();
    write_format(InputFormat::Uke, &mine, &tmp, 0, &mut m).map_err(|e| e.to_string())?;
    let file = std::fs::read(tmp.join("receipts-00000.uke")).map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&tmp);
    let file = file?;
    let (mut head, mut body, mut marks) = (Vec::new(), Vec::new(), Vec::new());
    let mut receipts = 0u64;
    for line in file.split_inclusive(|&b| b == b'\n') {
        match line.get(..3) {
            Some(b"IR,") => head.extend_from_slice(line),
            Some(b"GO,") => {}
            Some(b"RE,") => {
                receipts += 1;
                marks.extend(field_ends(line, &[13, 20]).into_iter().map(|e| body.len() + e));
                body.extend_from_slice(line);
            }
            _ => body.extend_from_slice(line),
        }
    }
    let tail = Box::new(move |reps: u64| format!("GO,{},0,99\r\n", receipts * reps).into_bytes());
    Ok((Repeated::new(head, body, marks, tail, bytes), m))
}

/// A CSV lab file of about `bytes` (UTF-8, a header, the lab rows of `patients` synthetic persons
/// again and again with new patient and encounter ids each time).
pub fn csv_source(patients: u64, bytes: u64) -> Repeated {
    let cfg = SynthConfig { patients, ..Default::default() };
    let recs: Vec<Record> = records_from_synth(&generate_chunk(&cfg, 0..patients));
    let head = b"patient_id,encounter_id,result_date,test_code,test_name,value,unit\n".to_vec();
    let (mut body, mut marks) = (Vec::new(), Vec::new());
    for r in &recs {
        if let Record::Lab(l) = r {
            let line = format!(
                "{},{},{},{},{},{},{}\n",
                l.patient_id, l.encounter_id, l.result_date, l.test_code, l.test_name, l.value, l.unit
            );
            marks.extend(field_ends(line.as_bytes(), &[0, 1]).into_iter().map(|e| body.len() + e));
            body.extend_from_slice(line.as_bytes());
        }
    }
    Repeated::new(head, body, marks, Box::new(|_| Vec::new()), bytes)
}

/// What one streamed run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamRun {
    /// Reader name.
    pub reader: &'static str,
    /// Input bytes read.
    pub bytes: u64,
    /// Canonical rows written (all tables).
    pub rows: u64,
    /// Rows of the patients table (distinct persons: the UKE reader keeps one 8-byte hash per
    /// person of a file, to write each person once).
    pub patients: u64,
    /// Quarantine entries.
    pub quarantined: u64,
    /// Parquet bytes written.
    pub parquet_bytes: u64,
    /// Wall seconds.
    pub wall_s: f64,
    /// Process CPU seconds (user + system).
    pub cpu_s: f64,
    /// Resident set after the first 256 MB of input, bytes.
    pub rss_first: u64,
    /// Largest resident set sampled during the run, bytes.
    pub rss_max: u64,
    /// Peak resident set of the process at the end (VmHWM), bytes.
    pub hwm: u64,
    /// The first quarantine problems (there should be none).
    pub problems: Vec<String>,
}

/// Streams `src` through `read` (a reader writing into the given sink) into Parquet files under a
/// temp dir, as `convert` writes them, and reports throughput and resident set.
fn run_one(
    reader: &'static str,
    src: Repeated,
    read: impl FnOnce(&mut BufReader<Repeated>, &mut dyn crate::canonical::Sink),
) -> Result<StreamRun, String> {
    let dir = std::env::temp_dir().join(format!("kiban-bench-stream-{reader}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut writers: Vec<Option<ArrowWriter<File>>> = Table::ALL.iter().map(|_| None).collect();
    let (mut rows, mut quarantined, mut problems, mut err) = (0u64, 0u64, Vec::new(), None::<String>);
    let mut patients = 0u64;
    let (t, c0) = (Instant::now(), process_cpu().unwrap_or(0.0));
    let mut input = BufReader::with_capacity(1 << 16, src);
    {
        let flush = |table: Table, b: RecordBatch| {
            rows += b.num_rows() as u64;
            if table == Table::Patients {
                patients += b.num_rows() as u64;
            }
            let i = Table::ALL.iter().position(|&x| x == table).expect("listed");
            if writers[i].is_none() {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_max_row_group_row_count(Some(128 * 1024))
                    .build();
                let f = File::create(dir.join(format!("{}.parquet", table.name())));
                match f
                    .map_err(|e| e.to_string())
                    .and_then(|f| ArrowWriter::try_new(f, table.schema(), Some(props)).map_err(|e| e.to_string()))
                {
                    Ok(w) => writers[i] = Some(w),
                    Err(e) => {
                        err.get_or_insert(e);
                        return;
                    }
                }
            }
            if let Err(e) = writers[i].as_mut().expect("made").write(&b) {
                err.get_or_insert(e.to_string());
            }
        };
        let q = |x: Quarantined| {
            quarantined += 1;
            if problems.len() < 5 {
                problems.push(x.to_string());
            }
        };
        let mut sink = BatchSink::new(64 * 1024, flush, q);
        read(&mut input, &mut sink);
        sink.finish();
    }
    for w in writers.into_iter().flatten() {
        w.close().map_err(|e| e.to_string())?;
    }
    let (wall_s, cpu_s) = (t.elapsed().as_secs_f64(), process_cpu().unwrap_or(0.0) - c0);
    if let Some(e) = err {
        return Err(e);
    }
    let parquet_bytes = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    let _ = std::fs::remove_dir_all(&dir);
    let src = input.into_inner();
    let rss_first = src.samples.first().map_or(0, |s| s.1);
    let rss_max = src.samples.iter().map(|s| s.1).max().unwrap_or(0);
    Ok(StreamRun {
        reader,
        bytes: src.produced(),
        rows,
        patients,
        quarantined,
        parquet_bytes,
        wall_s,
        cpu_s,
        rss_first,
        rss_max,
        hwm: rss().map_or(0, |r| r.1),
        problems,
    })
}

/// Streams `gb` GB of UKE and of CSV (made on the fly from `patients` persons, new ones in every
/// repetition unless `same_people`) into Parquet.
pub fn run(gb: f64, patients: u64, same_people: bool) -> Result<Vec<StreamRun>, String> {
    let bytes = (gb * 1e9) as u64;
    let people = |r: Repeated| if same_people { r.same_people() } else { r };
    let (src, masters) = uke_source(patients, bytes)?;
    let src = people(src);
    let uke = run_one("UKE", src, |input, sink| {
        crate::uke::read(input, "stream.uke", "prov-a", &masters, sink).expect("an in-memory source does not fail");
    })?;
    drop(masters);
    let (schema, table) = crate::tabular::SchemaFile::parse(
        "table = \"labs\"\nprovider_id = \"prov-a\"\n[columns]\npatient_id = \"patient_id\"\nencounter_id = \"encounter_id\"\nresult_date = \"result_date\"\ntest_code = \"test_code\"\ntest_name = \"test_name\"\nvalue = \"value\"\nunit = \"unit\"",
    )?;
    let csv = run_one("CSV", people(csv_source(patients, bytes)), |input, sink| {
        crate::tabular::read_csv(input, &schema, table, "stream.csv", sink);
    })?;
    Ok(vec![uke, csv])
}

/// The Markdown table of a streamed run.
pub fn table(runs: &[StreamRun]) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let mut s = String::from(
        "| streamed → Parquet | input GB | rows | persons | quarantined | Parquet MB | MB/s (CPU) | MB/s (wall) | RSS after 256 MB | RSS max sampled | peak RSS (VmHWM) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        s += &format!(
            "| {} | {:.2} | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.0} MB | {:.0} MB | {:.0} MB |\n",
            r.reader,
            r.bytes as f64 / 1e9,
            r.rows,
            r.patients,
            r.quarantined,
            mb(r.parquet_bytes),
            mb(r.bytes) / r.cpu_s,
            mb(r.bytes) / r.wall_s,
            mb(r.rss_first),
            mb(r.rss_max),
            mb(r.hwm)
        );
        for p in &r.problems {
            s += &format!("  quarantined in {}: {p}\n", r.reader);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_ends_finds_the_ends_of_non_empty_fields() {
        assert_eq!(field_ends(b"RE,1,,abc,de\r\n", &[2, 3]), vec![9]);
        assert_eq!(field_ends(b"a,b\r\n", &[0, 1]), vec![1, 3]);
    }

    #[test]
    fn repeated_inserts_the_suffix_at_each_mark_and_ends_with_the_tail() {
        let mut r = Repeated::new(
            b"H\n".to_vec(),
            b"p,e\n".to_vec(),
            vec![1, 3],
            Box::new(|n| format!("T{n}\n").into_bytes()),
            11,
        );
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "H\npr0,er0\npr1,er1\nT2\n");
        assert_eq!(r.repetitions(), 2);
    }
}
