//! The decision notice (承諾通知書 / 不承諾通知書, D3) as a Japanese HTML document.

use chrono::NaiveDate;

use super::workflow::{Decision, State};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "<p>なし</p>".to_owned();
    }
    let li: String = items.iter().map(|i| format!("<li>{}</li>", esc(i))).collect();
    format!("<ol>{li}</ol>")
}

fn jdate(d: NaiveDate) -> String {
    d.format("%Y年%-m月%-d日").to_string()
}

/// Renders the decision notice of the last decision, or None when nothing was decided.
/// Approval carries D3 items i)–v) (004 第4-4(1)); refusal carries its reasons (第4-4(2)).
pub fn decision_notice_html(application_id: &str, s: &State, creator: &str) -> Option<String> {
    let (decision, on) = s.decision.as_ref()?;
    let app = s.application.as_ref()?;
    let applicant = app.applicants.first().map(|a| a.name.as_str()).unwrap_or("");
    let (title, body) = match decision {
        Decision::Approve { expected_provision, conditions, guidelines, remarks, .. } => (
            "承諾通知書",
            format!(
                "<p>貴殿から申出のあった下記の提供申出について、審査委員会の審査を踏まえ、承諾したので通知します。</p>\
                 <h2>i) 提供を行う旨</h2><p>申出のあった情報の提供を行います（提供方法：{}、媒体数：{}）。</p>\
                 <h2>ii) 提供予定時期</h2><p>{}</p>\
                 <h2>iii) 提供に当たり付した条件</h2>{}\
                 <h2>iv) 遵守すべき他の指針等</h2>{}\
                 <h2>v) その他の留意事項</h2><p>{}</p>",
                app.provision_method.ja(),
                app.media_count,
                esc(expected_provision),
                list(conditions),
                list(guidelines),
                esc(if remarks.is_empty() { "なし" } else { remarks }),
            ),
        ),
        Decision::Refuse { reasons } => (
            "不承諾通知書",
            format!(
                "<p>貴殿から申出のあった下記の提供申出について、審査委員会の審査を踏まえ、承諾しないこととしたので通知します。</p>\
                 <h2>理由</h2>{}",
                list(reasons)
            ),
        ),
        Decision::Revise { requests } => (
            "再提出依頼書",
            format!(
                "<p>貴殿から申出のあった下記の提供申出について、審査委員会は次の点の修正を求めます。修正の上、再度提出してください。</p>\
                 <h2>修正を求める事項</h2>{}",
                list(requests)
            ),
        ),
    };
    Some(format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\
         <h1>{title}</h1><p>{}</p><p>{} 様</p><p>{}</p>\
         <table><tr><th>申出番号</th><td>{}</td></tr><tr><th>研究の名称</th><td>{}</td></tr>\
         <tr><th>利用目的</th><td>{}</td></tr><tr><th>利用期間</th><td>{}～{}</td></tr></table>{body}</body></html>\n",
        jdate(*on),
        esc(applicant),
        esc(creator),
        esc(application_id),
        esc(&app.plan.title),
        app.plan.purpose.ja(),
        jdate(app.usage_from),
        jdate(app.usage_to),
    ))
}
