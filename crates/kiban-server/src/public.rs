//! The public site (no login): the data catalogue with dummy data (K1), the statistics search
//! (K2) and the published business documents (B1, B3). Pages read only what `kiban publish`
//! wrote under `<data-dir>/public/` and the registry's published documents; Japanese first, English
//! with `?lang=en` (remembered in the `kiban_lang` cookie).

// Handlers return `Result<Response, Response>`, axum's usual shape; both sides are responses.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use kiban_disclosure::catalogue::Catalogue;
use kiban_disclosure::stats::{LABEL, Query as StatsQuery, StatsRelease};
use sha2::{Digest, Sha256};

use crate::{AppState, RouteDesc, error};

/// The public routes (all allowed for anonymous visitors in `authz.toml`).
pub fn descriptors() -> Vec<RouteDesc> {
    vec![
        route!(get, "/public", index),
        route!(get, "/public/catalogue", catalogue),
        route!(get, "/public/catalogue/{id}/dummy.csv", dummy),
        route!(get, "/public/stats", stats),
        route!(get, "/public/stats.csv", stats_csv),
        route!(get, "/public/business", business),
        route!(get, "/public/business/{id}", business_file),
    ]
}

/// The language cookie's name.
pub const LANG_COOKIE: &str = "kiban_lang";

/// English when `?lang=en`, or when the cookie says so and the query does not say otherwise; the
/// cookie to set when the query chose.
pub fn lang(query: Option<&str>, headers: &HeaderMap) -> (bool, Option<HeaderValue>) {
    match query {
        Some(l @ ("en" | "ja")) => {
            let c = HeaderValue::from_str(&format!("{LANG_COOKIE}={l}; Path=/; Max-Age=31536000; SameSite=Lax")).ok();
            (l == "en", c)
        }
        _ => {
            let cookie = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let en = cookie
                .split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .any(|(k, v)| k == LANG_COOKIE && v == "en");
            (en, None)
        }
    }
}

fn page(t: &impl Template, cookie: Option<HeaderValue>) -> Response {
    match t.render() {
        Ok(body) => {
            let mut r = Html(body).into_response();
            if let Some(c) = cookie {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            r
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("template: {e}")),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(st: &AppState, name: &str) -> Option<T> {
    let bytes = std::fs::read(st.data_dir.join("public").join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn pairs_lang(q: &[(String, String)]) -> Option<&str> {
    q.iter().find(|(k, _)| k == "lang").map(|(_, v)| v.as_str())
}

#[derive(Template)]
#[template(path = "public/index.html")]
struct IndexPage {
    /// The shared layout's frame.
    p: crate::console::PublicChrome,
    en: bool,
}

async fn index(headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let (en, c) = lang(pairs_lang(&q), &headers);
    page(&IndexPage { p: crate::console::PublicChrome::new(en, "/public"), en }, c)
}

#[derive(Template)]
#[template(path = "public/catalogue.html")]
struct CataloguePage {
    /// The shared layout's frame.
    p: crate::console::PublicChrome,
    en: bool,
    cat: Option<Catalogue>,
}

async fn catalogue(State(st): State<AppState>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let (en, c) = lang(pairs_lang(&q), &headers);
    let cat: Option<Catalogue> = read_json(&st, "catalogue.json");
    if q.iter().any(|(k, v)| k == "format" && v == "json") {
        return axum::Json(serde_json::json!({ "catalogue": cat })).into_response();
    }
    page(&CataloguePage { p: crate::console::PublicChrome::new(en, "/public/catalogue"), en, cat }, c)
}

async fn dummy(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    // Only names the catalogue lists: the path never reaches the file system unchecked.
    let cat: Option<Catalogue> = read_json(&st, "catalogue.json");
    let Some(db) = cat.and_then(|c| c.databases.into_iter().find(|d| d.name == name)) else {
        return error(StatusCode::NOT_FOUND, "no such database in the catalogue");
    };
    match std::fs::read(st.data_dir.join("public/dummy").join(format!("{}.csv", db.name))) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"dummy_{}.csv\"", db.name)),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, "the dummy data has not been built"),
    }
}

#[derive(Template)]
#[template(path = "public/stats.html")]
struct StatsPage {
    /// The shared layout's frame.
    p: crate::console::PublicChrome,
    en: bool,
    rel: Option<StatsRelease>,
    by: Vec<String>,
    filter: BTreeMap<String, String>,
    header: Vec<String>,
    rows: Vec<(Vec<String>, Option<i64>)>,
    error: Option<String>,
    label: &'static str,
}

/// Parses the search parameters: `by` (repeatable or comma-separated) and `<dimension>=<level>`.
fn stats_query(rel: &StatsRelease, q: &[(String, String)]) -> StatsQuery {
    let mut out = StatsQuery::default();
    for (k, v) in q {
        if k == "by" {
            out.by.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned));
        } else if !v.is_empty() && rel.dims.iter().any(|d| d.name == *k) {
            out.filter.insert(k.clone(), v.clone());
        }
    }
    out
}

async fn stats(State(st): State<AppState>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    let (en, c) = lang(pairs_lang(&q), &headers);
    let json = q.iter().any(|(k, v)| k == "format" && v == "json");
    let Some(rel) = read_json::<StatsRelease>(&st, "stats.json") else {
        if json {
            return error(StatusCode::NOT_FOUND, "no statistics are published");
        }
        let p = StatsPage {
            p: crate::console::PublicChrome::new(en, "/public/stats"),
            en,
            rel: None,
            by: vec![],
            filter: BTreeMap::new(),
            header: vec![],
            rows: vec![],
            error: None,
            label: LABEL,
        };
        return page(&p, c);
    };
    let sq = stats_query(&rel, &q);
    let answer = rel.answer(&sq);
    if json {
        return match answer {
            Ok(rows) => axum::Json(serde_json::json!({
                "title": rel.title, "table_sha256": rel.table_sha256, "rows": rows.iter().map(|r| serde_json::json!({
                    "levels": r.levels.iter().cloned().collect::<BTreeMap<_, _>>(), "value": r.value,
                })).collect::<Vec<_>>(),
            }))
            .into_response(),
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e.to_string()),
        };
    }
    let shown: Vec<usize> =
        rel.dims.iter().enumerate().filter(|(_, d)| sq.by.contains(&d.name)).map(|(i, _)| i).collect();
    let header =
        shown.iter().map(|&i| if en { rel.dims[i].label_en.clone() } else { rel.dims[i].label_ja.clone() }).collect();
    let (rows, err) = match answer {
        Ok(rows) => (
            rows.into_iter().map(|r| (shown.iter().map(|&i| r.levels[i].1.clone()).collect(), r.value)).collect(),
            None,
        ),
        Err(e) => (vec![], Some(e.to_string())),
    };
    let p = StatsPage {
        p: crate::console::PublicChrome::new(en, "/public/stats"),
        en,
        by: sq.by.clone(),
        filter: sq.filter.clone(),
        rel: Some(rel),
        header,
        rows,
        error: err,
        label: LABEL,
    };
    page(&p, c)
}

async fn stats_csv(State(st): State<AppState>) -> Response {
    match read_json::<StatsRelease>(&st, "stats.json") {
        Some(rel) => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (header::CONTENT_DISPOSITION, "attachment; filename=\"stats_protected.csv\""),
            ],
            rel.to_csv(),
        )
            .into_response(),
        None => error(StatusCode::NOT_FOUND, "no statistics are published"),
    }
}

/// A business document as the page lists it.
struct DocRow {
    id: String,
    kind: String,
    file_name: String,
    size: i64,
    submitted: String,
    published: String,
    sha_short: String,
}

struct YearBlock {
    label: String,
    docs: Vec<DocRow>,
    figures: Option<Vec<(String, i64)>>,
}

#[derive(Template)]
#[template(path = "public/business.html")]
struct BusinessPage {
    /// The shared layout's frame.
    p: crate::console::PublicChrome,
    en: bool,
    years: Vec<YearBlock>,
}

/// Business documents shown publicly: the four statutory kinds, published on or before today.
async fn published_documents(st: &AppState) -> Result<Vec<kiban_registry::business::Document>, Response> {
    let today = crate::now().date_naive().to_string();
    let docs = st
        .reg
        .documents("business")
        .await
        .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the registry is unavailable"))?;
    Ok(docs
        .into_iter()
        .filter(|d| matches!(d.item.as_str(), "plan" | "budget" | "report" | "statement"))
        .filter(|d| d.published_on.as_deref().is_some_and(|p| p <= today.as_str()))
        .collect())
}

fn kind_label(k: &str, en: bool) -> &'static str {
    match (k, en) {
        ("plan", false) => "事業計画書",
        ("budget", false) => "収支予算書",
        ("report", false) => "事業報告書",
        ("statement", false) => "財務諸表",
        ("plan", true) => "Business plan",
        ("budget", true) => "Budget",
        ("report", true) => "Business report",
        _ => "Financial statement",
    }
}

async fn business(State(st): State<AppState>, headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Res {
    let (en, c) = lang(pairs_lang(&q), &headers);
    let docs = published_documents(&st).await?;
    let mut by_year: BTreeMap<i64, Vec<_>> = BTreeMap::new();
    for d in docs {
        by_year.entry(d.fiscal_year.unwrap_or(0)).or_default().push(d);
    }
    let mut years = Vec::new();
    for (y, docs) in by_year.into_iter().rev() {
        let figures = if docs.iter().any(|d| d.item == "report") {
            let f = st
                .reg
                .year_figures(y)
                .await
                .map_err(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the registry is unavailable"))?;
            let lab = |ja: &str, en_: &str| if en { en_.to_owned() } else { ja.to_owned() };
            Some(vec![
                (lab("医療情報取扱事業者数（年度末・登録）", "Providers registered (year end)"), f.providers),
                (lab("うち届出公表済み", "of which published"), f.providers_published),
                (lab("医療情報の受領件数", "Submissions received"), f.receipts),
                (lab("受領した患者数", "Patients received"), f.patients),
                (lab("提供停止の求め", "Opt-outs"), f.optouts),
                (lab("消去の記録", "Deletions"), f.deletions),
                (lab("匿名加工・仮名加工医療情報の提供件数", "Releases to users"), f.releases),
                (lab("利用者アカウント数（年度末）", "User accounts (year end)"), f.users),
                (lab("インシデント", "Incidents"), f.incidents),
                (lab("漏えい等報告", "Leak reports"), f.leak_reports),
                (lab("苦情", "Complaints"), f.complaints),
            ])
        } else {
            None
        };
        let label = if en {
            format!("Fiscal year {y} (April {y} – March {})", y + 1)
        } else {
            format!("{y}年度（令和{}年度）", y - 2018)
        };
        let docs = docs
            .into_iter()
            .map(|d| DocRow {
                kind: kind_label(&d.item, en).to_owned(),
                sha_short: d.sha256.get(..16).unwrap_or("").to_owned(),
                id: d.document_id,
                file_name: d.file_name,
                size: d.size_bytes,
                submitted: d.submitted_on.unwrap_or_else(|| "-".into()),
                published: d.published_on.unwrap_or_else(|| "-".into()),
            })
            .collect();
        years.push(YearBlock { label, docs, figures });
    }
    Ok(page(&BusinessPage { p: crate::console::PublicChrome::new(en, "/public/business"), en, years }, c))
}

type Res = Result<Response, Response>;

async fn business_file(State(st): State<AppState>, Path(id): Path<String>) -> Res {
    let docs = published_documents(&st).await?;
    let Some(d) = docs.into_iter().find(|d| d.document_id == id) else {
        return Err(error(StatusCode::NOT_FOUND, "no such published document"));
    };
    let rel = std::path::Path::new(&d.stored_path);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the document's stored path is not inside the data directory",
        ));
    }
    let bytes = std::fs::read(st.data_dir.join(rel))
        .map_err(|_| error(StatusCode::NOT_FOUND, "the document's file is missing"))?;
    // The file must be the one recorded: a changed file is not published as if it were.
    if hex::encode(Sha256::digest(&bytes)) != d.sha256 {
        return Err(error(StatusCode::CONFLICT, "the document's file differs from its recorded SHA-256"));
    }
    let name: String = d.file_name.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    let ascii: String = name.chars().map(|c| if c.is_ascii() { c } else { '_' }).collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{ascii}\"")),
        ],
        bytes,
    )
        .into_response())
}
