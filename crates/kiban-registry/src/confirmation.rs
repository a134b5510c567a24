//! The confirmation document issued on an opt-out (P4; 003 art.31, 32), in Japanese, as HTML.
//! It holds the six items of art.31 in the order of the article.

use chrono::NaiveDate;
use kiban_model::wareki::WarekiDate;

use crate::records::OptOutEvent;

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A date as 和暦 with the Western date beside it.
pub fn ja_date(d: NaiveDate) -> String {
    match WarekiDate::from_date(d) {
        Ok(w) => format!("{w}（{}）", d.format("%Y年%-m月%-d日")),
        Err(_) => d.format("%Y年%-m月%-d日").to_string(),
    }
}

/// Renders the confirmation of `ev`, issued by provider `provider_name` on `issued_on`.
pub fn render(ev: &OptOutEvent, provider_name: &str, issued_on: NaiveDate) -> String {
    let o = &ev.input;
    let received = o.received_at.map(crate::records::jst).unwrap_or(ev.effective_on);
    let deceased = if o.person_deceased { "（故人）" } else { "" };
    format!(
        r#"<!DOCTYPE html>
<html lang="ja">
<head><meta charset="utf-8"><title>医療情報の提供の停止の求めに係る確認書</title>
<style>body{{font-family:serif;max-width:42em;margin:2em auto;line-height:1.8}}th{{text-align:left;vertical-align:top;padding-right:1em;white-space:nowrap}}</style>
</head>
<body>
<h1>医療情報の提供の停止の求めに係る確認書</h1>
<p>医療情報取扱事業者：{provider}</p>
<p>対象となる本人の患者番号：{patient}{deceased}</p>
<table>
<tr><th>一　求めがあった旨</th><td>医療分野の研究開発に資するための匿名加工医療情報及び仮名加工医療情報に関する法律第三十条第一項に規定する、認定作成事業者への医療情報の提供の停止の求めがありました（{channel}による）。</td></tr>
<tr><th>二　求めを行った者</th><td>氏名：{name}（{kind}）<br>当該者を特定するに足りる事項：{detail}</td></tr>
<tr><th>三　求めを受けた年月日</th><td>{received}</td></tr>
<tr><th>四　本書面を交付する旨</th><td>同法第三十一条第一項の規定により、本書面を交付します。</td></tr>
<tr><th>五　医療情報の提供の停止の年月日</th><td>{stopped}</td></tr>
<tr><th>六　本書面の交付年月日</th><td>{issued}</td></tr>
</table>
<p>この書面の写し（電磁的記録）は、交付の日から三年間保存します（同法施行規則第三十二条）。保存期限：{retention}</p>
<p><small>記録番号 {event_id}</small></p>
</body>
</html>
"#,
        provider = esc(provider_name),
        patient = esc(&o.patient_id),
        channel = o.channel.label_ja(),
        name = esc(&o.requester_name),
        kind = o.requester_kind.label_ja(),
        detail = esc(&o.requester_detail),
        received = ja_date(received),
        stopped = ja_date(ev.effective_on),
        issued = ja_date(issued_on),
        retention = ja_date(kiban_model::retention::RetentionRule::ThreeYears.end_date(issued_on)),
        event_id = esc(&ev.event_id),
    )
}
