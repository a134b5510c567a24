//! The console's words, Japanese first with English: one table, so both languages stay complete
//! (a test fails when a key lacks a language or a template names a key not here).

/// The console's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// 日本語 (the default).
    #[default]
    Ja,
    /// English.
    En,
}

impl Lang {
    /// Parses `ja` / `en`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The code (`ja`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    /// The other language (for the switch link).
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }
}

/// Every key with its Japanese and English text.
pub const STRINGS: &[(&str, &str, &str)] = &[
    ("app.title", "kiban 管理コンソール", "kiban console"),
    ("app.switch", "English", "日本語"),
    ("app.logout", "ログアウト", "Log out"),
    ("app.skip", "本文へ移動", "Skip to content"),
    ("app.signed_in_as", "ログイン中", "Signed in as"),
    ("app.nav", "メニュー", "Menu"),
    ("app.saved", "登録しました。", "Recorded."),
    ("app.none", "記録はありません。", "No records."),
    ("app.submit", "登録する", "Record"),
    ("app.errors", "入力内容を確認してください。", "Please check the form."),
    ("nav.home", "ホーム", "Home"),
    ("nav.providers", "提供事業者・届出", "Providers and filings"),
    ("nav.optouts", "通知・オプトアウト", "Notices and opt-outs"),
    ("nav.runs", "取込・処理の実行記録", "Intake and processing runs"),
    ("nav.identity", "名寄せ確認待ち", "Identity review queue"),
    ("nav.deid", "自由記述の匿名化", "Free-text de-identification"),
    ("nav.applications", "利用申出・審査", "Applications and review"),
    ("nav.ledger", "提供記録台帳", "Provision ledger"),
    ("nav.alerts", "監視アラート", "Monitoring alerts"),
    ("nav.audit", "監査ログ検証", "Audit log verification"),
    ("nav.compliance", "要件トレーサビリティ", "Requirement traceability"),
    ("compliance.title", "要件トレーサビリティ表", "Requirement traceability matrix"),
    (
        "compliance.intro",
        "各要件と、それを実装するコード・証明する試験、その結果の一覧です。`kiban compliance matrix --results 結果 --publish` で作成・更新します。",
        "Every requirement with the code that implements it, the tests that prove it and their results. Made and updated by `kiban compliance matrix --results RESULTS --publish`.",
    ),
    ("compliance.made", "作成日時", "Made at"),
    ("compliance.open", "表を開く", "Open the matrix"),
    ("compliance.none", "まだ作成されていません。", "Not made yet."),
    ("nav.incidents", "インシデント", "Incidents"),
    ("nav.complaints", "苦情", "Complaints"),
    ("nav.accounts", "アカウント", "Accounts"),
    ("home.title", "ホーム", "Home"),
    ("home.intro", "役割に応じた業務を左のメニューから選んでください。", "Choose a task for your role from the menu."),
    ("home.role", "役割", "Role"),
    ("home.today", "本日", "Today"),
    ("role.provider_clerk", "提供事業者事務担当", "Provider clerk"),
    ("role.intake_operator", "受領担当", "Intake operator"),
    ("role.processing_engineer", "加工担当", "Processing engineer"),
    ("role.committee_member", "審査委員会委員", "Committee member"),
    ("role.secretariat", "事務局", "Secretariat"),
    ("role.security_officer", "安全管理責任者", "Security officer"),
    ("role.auditor", "監査担当", "Auditor"),
    ("role.handler", "利用者（取扱者）", "User (handler)"),
    ("role.administrator", "システム管理者", "Administrator"),
    ("providers.title", "提供事業者・届出", "Providers and filings"),
    ("providers.id", "事業者ID", "Provider id"),
    ("providers.name", "名称", "Name"),
    ("providers.pref", "都道府県コード", "Prefecture code"),
    ("providers.registered", "登録日", "Registered"),
    ("providers.add", "提供事業者の届出を登録", "Record a provider's filing"),
    ("providers.filed_on", "届出日", "Filed on"),
    ("providers.planned_start", "提供開始予定日", "Planned start"),
    ("providers.update_method", "更新の方法", "Update method"),
    ("providers.transmission", "送付の方法", "Transmission method"),
    ("providers.filings", "届出", "Filings"),
    ("providers.seq", "届出番号", "No."),
    ("providers.kind", "種別", "Kind"),
    ("providers.may_submit", "提供の可否", "May submit"),
    ("providers.yes", "提供可", "May submit"),
    ("providers.no", "提供不可", "May not submit"),
    ("optouts.title", "通知・オプトアウト", "Notices and opt-outs"),
    ("optouts.lookup", "患者の記録を表示", "Show a patient's records"),
    ("optouts.provider", "提供事業者", "Provider"),
    ("optouts.patient", "患者ID（医療機関の番号）", "Patient id (the provider's)"),
    ("optouts.show", "表示", "Show"),
    ("optouts.add", "オプトアウト（提供停止の求め）を登録", "Record an opt-out"),
    ("optouts.requester_kind", "求めた人", "Requester"),
    ("optouts.requester_name", "氏名", "Name"),
    ("optouts.requester_detail", "住所・続柄・連絡先", "Address, relationship, contact"),
    ("optouts.channel", "受付方法", "Channel"),
    ("optouts.effective", "効力発生日", "Effective on"),
    ("optouts.confirmation", "確認書", "Confirmation"),
    ("optouts.event", "記録ID", "Record id"),
    ("optouts.notices", "通知", "Notices"),
    ("optouts.events", "オプトアウト", "Opt-outs"),
    ("optouts.notice_add", "通知を登録", "Record a notice"),
    ("optouts.notice_date", "通知日", "Notice date"),
    ("optouts.method", "通知の方法", "Method"),
    ("optouts.recipient", "通知先", "Recipient"),
    ("optouts.text_version", "通知文の版", "Notice text version"),
    ("req.patient", "本人", "The patient"),
    ("req.guardian", "法定代理人", "Legal guardian"),
    ("req.bereaved", "遺族", "Bereaved family"),
    ("ch.written", "書面", "Written"),
    ("ch.oral", "口頭", "Oral"),
    ("ch.other", "その他", "Other"),
    ("nm.written_at_visit", "来院時に書面で手交", "In writing at a visit"),
    ("nm.mail", "郵送", "Mail"),
    ("nm.electronic", "電子的方法", "Electronic"),
    ("nm.posted", "院内掲示", "Posted in the facility"),
    ("rc.patient", "本人", "The patient"),
    ("rc.guardian", "法定代理人", "Legal guardian"),
    ("rc.patient_and_guardian", "本人と法定代理人", "The patient and the guardian"),
    ("runs.title", "取込・処理の実行記録", "Intake and processing runs"),
    ("runs.id", "実行ID", "Run id"),
    ("runs.kind", "種類", "Kind"),
    ("runs.started", "開始", "Started"),
    ("runs.finished", "終了", "Finished"),
    ("runs.summary", "結果", "Result"),
    ("identity.title", "名寄せ確認待ち", "Identity review queue"),
    (
        "identity.closed",
        "識別情報庫が開かれていません（kiban serve で起動してください）。",
        "The identity store is not open (start with kiban serve).",
    ),
    ("identity.item", "確認項目", "Item"),
    ("identity.score", "一致スコア", "Score"),
    ("identity.records", "対象レコード", "Records"),
    ("deid.title", "自由記述の匿名化", "Free-text de-identification"),
    ("deid.text", "テキスト", "Text"),
    ("deid.run", "匿名化する", "De-identify"),
    ("deid.result", "結果", "Result"),
    ("deid.found", "検出した箇所", "Spans found"),
    ("apps.title", "利用申出・審査", "Applications and review"),
    ("apps.id", "申出ID", "Application id"),
    ("apps.phase", "段階", "Phase"),
    ("apps.open", "開く", "Open"),
    ("apps.find", "申出IDで表示", "Show by id"),
    ("apps.committee", "審査委員", "Committee"),
    ("apps.votes", "投票", "Votes"),
    ("apps.vote", "投票する", "Vote"),
    ("apps.member", "委員", "Member"),
    ("apps.vote_kind", "判断", "Vote"),
    ("apps.reason", "理由", "Reasons"),
    ("apps.open_review", "審査を開始する", "Open the review"),
    ("apps.review_on", "審査日", "Review date"),
    ("apps.purpose", "利用目的", "Purpose"),
    ("apps.applicant", "申出者", "Applicant"),
    ("apps.usage", "利用期間", "Usage period"),
    ("vote.approve", "承認", "Approve"),
    ("vote.approve_with_conditions", "条件付き承認", "Approve with conditions"),
    ("vote.revise", "修正のうえ再審査", "Revise and resubmit"),
    ("vote.refuse", "不承認", "Refuse"),
    ("phase.draft", "下書き", "Draft"),
    ("phase.precheck_failed", "事前確認で不備", "Pre-check failed"),
    ("phase.submitted", "受付済み", "Submitted"),
    ("phase.under_review", "審査中", "Under review"),
    ("phase.revision_requested", "修正依頼中", "Revision requested"),
    ("phase.approved", "承認", "Approved"),
    ("phase.refused", "不承認", "Refused"),
    ("phase.ended", "終了", "Ended"),
    ("ledger.title", "提供記録台帳", "Provision ledger"),
    ("ledger.entry", "記録ID", "Entry"),
    ("ledger.kind", "種別", "Kind"),
    ("ledger.date", "日付", "Date"),
    ("ledger.recipient", "提供先", "Recipient"),
    ("ledger.items", "提供した項目", "Items provided"),
    ("alerts.title", "監視アラート", "Monitoring alerts"),
    ("alerts.rule", "ルール", "Rule"),
    ("alerts.severity", "重大度", "Severity"),
    ("alerts.raised", "検知日時", "Raised"),
    ("alerts.by", "報告期限", "Escalate by"),
    ("alerts.message", "内容", "What was seen"),
    ("alerts.ack", "確認済みにする", "Acknowledge"),
    ("alerts.acked", "確認済み", "Acknowledged"),
    ("audit.title", "監査ログ検証", "Audit log verification"),
    (
        "audit.intro",
        "ハッシュ連鎖と署名付きチェックポイントを検証します。検証自体も記録されます。",
        "Verifies the hash chain and the signed checkpoints. The verification itself is recorded.",
    ),
    ("audit.verify", "検証する", "Verify"),
    ("audit.intact", "改ざんは検出されませんでした", "No tampering found"),
    ("audit.broken", "異常を検出しました", "Problems found"),
    ("audit.entries", "件数", "Entries"),
    ("incidents.title", "インシデント", "Incidents"),
    ("incidents.add", "インシデントを登録", "Record an incident"),
    ("incidents.risk", "リスク項目", "Risk item"),
    ("incidents.description", "内容", "Description"),
    ("incidents.severity", "重大度", "Severity"),
    ("incidents.detected", "検知日時", "Detected"),
    ("sev.low", "低", "Low"),
    ("sev.medium", "中", "Medium"),
    ("sev.high", "高", "High"),
    ("complaints.title", "苦情", "Complaints"),
    ("complaints.add", "苦情を登録", "Record a complaint"),
    ("complaints.received", "受付日", "Received on"),
    ("complaints.content", "内容", "Content"),
    ("complaints.cause", "原因", "Cause"),
    ("complaints.improvement", "改善策", "Improvement"),
    ("complaints.retention", "保存期限", "Kept until"),
    ("accounts.title", "アカウント", "Accounts"),
    ("accounts.login", "ログインID", "Login"),
    ("accounts.name", "氏名", "Name"),
    ("accounts.status", "状態", "Status"),
    ("accounts.totp", "二要素認証", "Two-factor"),
    ("accounts.last_login", "最終ログイン", "Last login"),
    ("accounts.add", "アカウントを作成", "Create an account"),
    (
        "accounts.setup_token",
        "設定用トークン（本人に一度だけ渡してください）",
        "Setup token (hand it to the person once)",
    ),
    (
        "accounts.not_cleared",
        "資格確認・研修の記録がないため、設定用トークンは発行されていません。",
        "No setup token yet: the person has no vetting and training record.",
    ),
    ("err.required", "入力してください。", "Required."),
    ("err.date", "日付は YYYY-MM-DD で入力してください。", "Enter the date as YYYY-MM-DD."),
    ("err.choice", "選択肢から選んでください。", "Choose one of the options."),
    (
        "err.csrf",
        "フォームの有効期限が切れました。もう一度送信してください。",
        "The form expired: please submit it again.",
    ),
    ("err.number", "数字で入力してください。", "Enter a number."),
    ("yes", "はい", "Yes"),
    ("no", "いいえ", "No"),
];

/// The words of one language.
#[derive(Debug, Clone, Copy)]
pub struct Tr(pub Lang);

impl Tr {
    /// The text of `key`; a missing key shows itself (and the completeness test fails).
    pub fn s<'a>(&self, key: &'a str) -> &'a str {
        match STRINGS.iter().find(|(k, _, _)| *k == key) {
            Some((_, ja, en)) => match self.0 {
                Lang::Ja => ja,
                Lang::En => en,
            },
            None => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_both_languages_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (k, ja, en) in STRINGS {
            assert!(seen.insert(*k), "duplicate key {k}");
            assert!(!ja.trim().is_empty(), "{k} lacks Japanese");
            assert!(!en.trim().is_empty(), "{k} lacks English");
        }
    }

    #[test]
    fn every_key_named_in_a_template_or_the_console_is_in_the_table() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut files = Vec::new();
        for dir in ["templates", "templates/console", "src/console"] {
            for e in std::fs::read_dir(format!("{root}{dir}")).unwrap() {
                let p = e.unwrap().path();
                if p.is_file() {
                    files.push(p);
                }
            }
        }
        let mut named = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for marker in ["s(\"", "key: \"", "tkey(\""] {
                for part in text.split(marker).skip(1) {
                    let key = part.split('"').next().unwrap();
                    if key.contains('.') || key == "yes" || key == "no" {
                        assert!(
                            STRINGS.iter().any(|(k, _, _)| *k == key),
                            "{}: key {key:?} not in STRINGS",
                            f.display()
                        );
                        named += 1;
                    }
                }
            }
        }
        assert!(named > 50, "the scan found the keys ({named})");
    }
}
