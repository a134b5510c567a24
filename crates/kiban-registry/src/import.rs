//! Bulk import of notices and opt-outs from CSV, the way a hospital's system exports them.
//! A bad row is reported with its line, field and rule; it never rejects the rest of the file.
//!
//! Notices: `provider_id,patient_id,notice_date,method,recipient,guardian_name,patient_birth_date,lacks_capacity,text_version`
//! Opt-outs: `provider_id,patient_id,requester_kind,requester_name,requester_detail,channel,person_deceased,received_at`
//! Dates are `YYYY-MM-DD`; `received_at` is RFC 3339 or a date (taken as 00:00 JST); booleans are
//! `1/0`, `true/false` or `yes/no`. Columns may come in any order; extra columns are ignored.

use std::collections::HashMap;
use std::io::Read;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::records::{Channel, NoticeInput, NoticeMethod, OptOutInput, Recipient, RecordError, RequesterKind, invalid};
use crate::store::Registry;

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// Line in the file (the header is line 1).
    pub line: u64,
    /// The field.
    pub field: String,
    /// The rule.
    pub rule: String,
    /// What is wrong.
    pub message: String,
}

/// The outcome of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Data rows read.
    pub rows: u64,
    /// Rows recorded.
    pub recorded: u64,
    /// Rows rejected, each with its reason.
    pub errors: Vec<RowError>,
    /// Ids of the recorded events (opt-out imports: the opt-out ids, whose confirmations were issued).
    pub ids: Vec<String>,
    /// The character encoding the file was read in (`utf-8` or `shift_jis`).
    pub encoding: String,
}

struct Rows {
    header: HashMap<String, usize>,
    reader: csv::Reader<Box<dyn Read + Send>>,
    encoding: &'static str,
}

/// Hospital systems in Japan often export Shift_JIS (Windows-31J). The first MiB decides: valid
/// UTF-8 (with or without a BOM) is read as is; anything else is decoded as Shift_JIS, and the
/// report says which encoding was used so a wrong guess is visible.
fn decode(mut input: Box<dyn Read + Send>) -> Result<(Box<dyn Read + Send>, &'static str), RecordError> {
    let mut head = Vec::with_capacity(1 << 20);
    (&mut input)
        .take(1 << 20)
        .read_to_end(&mut head)
        .map_err(|e| invalid("file", "P1", format!("cannot read the CSV: {e}")))?;
    let utf8 = match std::str::from_utf8(&head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sniffed prefix is still UTF-8.
        Err(e) => e.error_len().is_none(),
    };
    let whole: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(head).chain(input));
    if utf8 {
        return Ok((whole, "utf-8"));
    }
    let decoder = encoding_rs_io::DecodeReaderBytesBuilder::new().encoding(Some(encoding_rs::SHIFT_JIS)).build(whole);
    Ok((Box::new(decoder), "shift_jis"))
}

fn open(input: Box<dyn Read + Send>, required: &[&str]) -> Result<Rows, RecordError> {
    let (input, encoding) = decode(input)?;
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(input);
    let header: HashMap<String, usize> = reader
        .headers()
        .map_err(|e| invalid("header", "P1", format!("cannot read the CSV header: {e}")))?
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim_start_matches('\u{feff}').to_ascii_lowercase(), i))
        .collect();
    for r in required {
        if !header.contains_key(*r) {
            return Err(invalid("header", "P1", format!("the CSV has no {r} column (needs {})", required.join(","))));
        }
    }
    Ok(Rows { header, reader, encoding })
}

fn get<'a>(h: &HashMap<String, usize>, rec: &'a csv::StringRecord, k: &str) -> &'a str {
    h.get(k).and_then(|&i| rec.get(i)).unwrap_or("")
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn boolean(field: &'static str, rule: &'static str, s: &str) -> Result<bool, RecordError> {
    match s.to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "n" => Ok(false),
        "1" | "true" | "yes" | "y" => Ok(true),
        _ => Err(invalid(field, rule, format!("{s:?} is not a yes/no value"))),
    }
}

fn day(field: &'static str, rule: &'static str, s: &str) -> Result<NaiveDate, RecordError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| invalid(field, rule, format!("{s:?} is not a date YYYY-MM-DD")))
}

fn row_error(line: u64, e: RecordError) -> RowError {
    match e {
        RecordError::Invalid { field, rule, message } => {
            RowError { line, field: field.into(), rule: rule.into(), message }
        }
        other => RowError { line, field: "row".into(), rule: "C3".into(), message: other.to_string() },
    }
}

impl Registry {
    async fn provider_cache(&self, cache: &mut HashMap<String, bool>, id: &str) -> Result<bool, RecordError> {
        if let Some(&k) = cache.get(id) {
            return Ok(k);
        }
        let known = self.provider(id).await?.is_some();
        cache.insert(id.to_owned(), known);
        Ok(known)
    }

    /// Imports notices from CSV; `source` names the file in each row's provenance.
    pub async fn import_notices(&self, input: Box<dyn Read + Send>, source: &str) -> Result<ImportReport, RecordError> {
        self.import_notices_for(input, source, None).await
    }

    /// [`Registry::import_notices`] for an account that acts only for the providers in `scope`
    /// (a provider clerk): rows of any other provider are refused per row (X1).
    pub async fn import_notices_for(
        &self,
        input: Box<dyn Read + Send>,
        source: &str,
        scope: Option<&[String]>,
    ) -> Result<ImportReport, RecordError> {
        let mut rows =
            open(input, &["provider_id", "patient_id", "notice_date", "method", "recipient", "text_version"])?;
        let today = crate::records::today_jst();
        let mut rep = ImportReport { encoding: rows.encoding.to_owned(), ..ImportReport::default() };
        let mut good = Vec::new();
        let mut known = HashMap::new();
        for (i, rec) in rows.reader.records().enumerate() {
            let line = i as u64 + 2;
            rep.rows += 1;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    rep.errors.push(RowError { line, field: "row".into(), rule: "P1".into(), message: e.to_string() });
                    continue;
                }
            };
            let h = &rows.header;
            let parsed = (|| -> Result<NoticeInput, RecordError> {
                let birth = get(h, &rec, "patient_birth_date");
                Ok(NoticeInput {
                    provider_id: get(h, &rec, "provider_id").to_owned(),
                    patient_id: get(h, &rec, "patient_id").to_owned(),
                    notice_date: day("notice_date", "P1", get(h, &rec, "notice_date"))?,
                    method: NoticeMethod::parse(get(h, &rec, "method"))?,
                    recipient: Recipient::parse(get(h, &rec, "recipient"))?,
                    guardian_name: opt(get(h, &rec, "guardian_name")),
                    patient_birth_date: if birth.is_empty() {
                        None
                    } else {
                        Some(day("patient_birth_date", "P1", birth)?)
                    },
                    lacks_capacity: boolean("lacks_capacity", "P1", get(h, &rec, "lacks_capacity"))?,
                    text_version: get(h, &rec, "text_version").to_owned(),
                    corrects: None,
                    source: format!("import:{source}:{line}"),
                })
            })();
            let checked = match parsed {
                Ok(n) => n.validate(today).map(|_| n),
                Err(e) => Err(e),
            };
            match checked {
                Ok(n) if !in_scope(scope, &n.provider_id) => {
                    rep.errors.push(row_error(line, out_of_scope(&n.provider_id)))
                }
                Ok(n) if !self.provider_cache(&mut known, &n.provider_id).await? => rep.errors.push(row_error(
                    line,
                    invalid("provider_id", "C1", format!("provider {} is not registered", n.provider_id)),
                )),
                Ok(n) => good.push(n),
                Err(e) => rep.errors.push(row_error(line, e)),
            }
        }
        for chunk in good.chunks(5000) {
            let done = self.add_notices(chunk).await?;
            rep.recorded += done.len() as u64;
            rep.ids.extend(done.into_iter().map(|n| n.notice_id));
        }
        Ok(rep)
    }

    /// Imports opt-outs from CSV, issuing each one's confirmation document (P4).
    pub async fn import_optouts(&self, input: Box<dyn Read + Send>, source: &str) -> Result<ImportReport, RecordError> {
        self.import_optouts_for(input, source, None).await
    }

    /// [`Registry::import_optouts`] for an account that acts only for the providers in `scope`
    /// (a provider clerk): rows of any other provider are refused per row (X1).
    pub async fn import_optouts_for(
        &self,
        input: Box<dyn Read + Send>,
        source: &str,
        scope: Option<&[String]>,
    ) -> Result<ImportReport, RecordError> {
        let mut rows =
            open(input, &["provider_id", "patient_id", "requester_kind", "requester_name", "channel", "received_at"])?;
        let mut rep = ImportReport { encoding: rows.encoding.to_owned(), ..ImportReport::default() };
        let mut good = Vec::new();
        let mut known = HashMap::new();
        let now = Utc::now();
        for (i, rec) in rows.reader.records().enumerate() {
            let line = i as u64 + 2;
            rep.rows += 1;
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    rep.errors.push(RowError { line, field: "row".into(), rule: "P3".into(), message: e.to_string() });
                    continue;
                }
            };
            let h = &rows.header;
            let parsed = (|| -> Result<OptOutInput, RecordError> {
                Ok(OptOutInput {
                    provider_id: get(h, &rec, "provider_id").to_owned(),
                    patient_id: get(h, &rec, "patient_id").to_owned(),
                    requester_kind: RequesterKind::parse(get(h, &rec, "requester_kind"))?,
                    requester_name: get(h, &rec, "requester_name").to_owned(),
                    requester_detail: get(h, &rec, "requester_detail").to_owned(),
                    channel: Channel::parse(get(h, &rec, "channel"))?,
                    person_deceased: boolean("person_deceased", "P3", get(h, &rec, "person_deceased"))?,
                    received_at: Some(parse_instant(get(h, &rec, "received_at"))?),
                    source: format!("import:{source}:{line}"),
                })
            })();
            let checked = parsed.and_then(|o| {
                crate::records::validate_optout(&o, now)?;
                Ok(o)
            });
            match checked {
                Ok(o) if !in_scope(scope, &o.provider_id) => {
                    rep.errors.push(row_error(line, out_of_scope(&o.provider_id)))
                }
                Ok(o) if !self.provider_cache(&mut known, &o.provider_id).await? => rep.errors.push(row_error(
                    line,
                    invalid("provider_id", "C1", format!("provider {} is not registered", o.provider_id)),
                )),
                Ok(o) => good.push(o),
                Err(e) => rep.errors.push(row_error(line, e)),
            }
        }
        for chunk in good.chunks(2000) {
            let done = self.add_optouts(chunk).await?;
            rep.recorded += done.len() as u64;
            rep.ids.extend(done.into_iter().map(|(e, _)| e.event_id));
        }
        Ok(rep)
    }
}

/// `received_at`: RFC 3339, or a date meaning 00:00 JST of that day.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, RecordError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = day("received_at", "P3", s)?;
    let jst = chrono::FixedOffset::east_opt(9 * 3600).expect("JST");
    Ok(jst
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
        .single()
        .expect("fixed offset")
        .with_timezone(&Utc))
}

fn in_scope(scope: Option<&[String]>, provider: &str) -> bool {
    scope.is_none_or(|s| s.iter().any(|p| p == provider))
}

fn out_of_scope(provider: &str) -> RecordError {
    invalid("provider_id", "X1", format!("this account does not act for provider {provider}"))
}
