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
    ("public.title", "kiban 公開情報", "kiban public site"),
    ("public.nav", "公開ページ", "Public pages"),
    ("public.catalogue", "データカタログ", "Data catalogue"),
    ("public.stats", "統計検索", "Statistics search"),
    ("public.business", "事業計画・報告等", "Business documents"),
    (
        "public.footer",
        "次世代医療基盤法に基づく認定作成事業者による公表です。このページの閲覧にログインは不要です。",
        "Published by the certified creator under the Next Generation Medical Infrastructure Act. No login is needed for these pages.",
    ),
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
    ("nav.checker", "公表物の確認", "Publication check"),
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
    ("nav.batches", "取込バッチ・隔離", "Intake batches and quarantine"),
    ("nav.supervision", "監督予定表", "Supervision calendar"),
    ("nav.leaks", "漏えい等報告", "Leak reports"),
    ("nav.contractors", "委託先", "Contractors"),
    ("batches.title", "取込バッチ", "Intake batches"),
    (
        "batches.intro",
        "受領した各バッチの受領記録と、オプトアウト照合（提供停止・未通知・待機期間）の結果です。除外されたレコードは隔離され、原因を直した後に再投入できます。",
        "Each batch received, with its receipt record and the result of the opt-out gate (opt-outs, missing notices, waiting period). Excluded records are quarantined and can be replayed once the cause is fixed.",
    ),
    ("batch.title", "取込バッチ", "Intake batch"),
    ("batch.id", "バッチ", "Batch"),
    ("batch.provider", "提供事業者", "Provider"),
    ("batch.provision", "提供日", "Provision date"),
    ("batch.received", "受領日", "Received on"),
    ("batch.rows_in", "受領レコード数", "Records in"),
    ("batch.admitted", "取込", "Admitted"),
    ("batch.excluded", "除外（隔離）", "Excluded (quarantined)"),
    ("batch.receipt", "受領記録", "Receipt record"),
    ("batch.receipt_id", "受領記録番号", "Receipt record id"),
    ("batch.filing", "確認した届出・公表", "Filing and publication confirmed"),
    ("batch.published", "公表の確認", "Publication statement"),
    ("batch.persons", "取込対象の本人数", "Persons admitted"),
    ("batch.registry_version", "照合に用いた台帳の版", "Registry version used"),
    ("batch.retention", "保存期限", "Kept until"),
    ("batch.gate", "オプトアウト照合の結果（C3）", "Opt-out gate report (C3)"),
    ("batch.waiting", "待機期間（日）", "Waiting period (days)"),
    ("batch.registry_persons", "台帳に記録のある本人数", "Persons known to the registry"),
    ("batch.admitted_persons", "取込の本人数", "Persons admitted"),
    ("batch.excluded_persons", "除外の本人数", "Persons excluded"),
    ("batch.by_reason", "除外理由別", "By reason"),
    ("batch.reason", "理由", "Reason"),
    ("batch.count", "件数", "Count"),
    ("batch.tables", "テーブル別", "By table"),
    ("batch.table", "テーブル", "Table"),
    ("batch.no_report", "照合結果が読めません。", "The gate report cannot be read."),
    ("batch.quarantine", "隔離", "Quarantine"),
    ("batch.quarantine_empty", "このバッチに隔離されたレコードはありません。", "Nothing of this batch is quarantined."),
    ("batch.replays", "再投入の記録", "Replays"),
    ("batch.replayed_at", "再投入日時", "Replayed at"),
    ("batch.replay", "隔離レコードを再投入する", "Replay the quarantined records"),
    (
        "batch.replay_help",
        "隔離されたレコードを、このバッチの提供日時点で再度照合し、新しいバッチとして取り込みます。なお除外されるものは新しいバッチで隔離されます。同じレコードの再投入は一度だけです。",
        "The quarantined records go through the gate again as of this batch's provision date, as a new batch; what still fails is quarantined in the new batch. The same records are replayed once only.",
    ),
    ("batch.replayed", "再投入しました。新しいバッチの結果です。", "Replayed: this is the new batch."),
    ("batch.replay_of", "再投入元のバッチ", "Replay of batch"),
    (
        "batch.no_vault",
        "本人情報保管庫が開かれていないため、再投入できません。",
        "The identity vault is not open: nothing can be replayed.",
    ),
    ("batch.nothing", "再投入するレコードがありません。", "There is nothing to replay."),
    ("reason.opted_out", "提供停止の求めあり", "Opted out"),
    ("reason.unknown_person", "通知の記録なし", "No notice on record"),
    ("reason.not_notified", "未通知", "Not notified"),
    ("reason.notice_too_recent", "待機期間中", "Within the waiting period"),
    ("reason.provider_mismatch", "提供事業者の不一致", "Provider mismatch"),
    ("reason.malformed_identity", "患者IDの形式誤り", "Malformed patient id"),
    ("reason.identity_rejected", "本人情報の不備", "Identity rejected"),
    ("reason.no_identity", "本人情報の未登録", "No identity registered"),
    ("run.title", "処理報告", "Processing report"),
    ("run.report", "記録された結果", "Recorded results"),
    ("run.item", "項目", "Item"),
    ("run.value", "値", "Value"),
    ("runs.open", "報告を開く", "Open the report"),
    ("supervision.title", "監督予定表", "Supervision calendar"),
    (
        "supervision.intro",
        "利用者ごとの利用報告・管理状況報告・監査・利用終了時の削除証明の期限です（期限切れを先頭に表示）。",
        "Usage and management reports, audits of users and deletion certificates due, per application (overdue first).",
    ),
    ("supervision.none", "期限の到来している事項はありません。", "Nothing is due."),
    ("supervision.due", "期限", "Due"),
    ("supervision.application", "利用申出", "Application"),
    ("supervision.what", "事項", "What"),
    ("supervision.state", "状況", "State"),
    ("supervision.overdue", "期限超過", "Overdue"),
    ("supervision.upcoming", "予定", "Upcoming"),
    ("due.usage_report", "利用実績報告", "Usage report"),
    ("due.published", "公表日", "published"),
    ("due.management_report", "管理状況報告", "Management report"),
    ("due.expired", "利用期間の終了", "Usage period ended"),
    ("due.usage_to", "利用期間末日", "last day"),
    ("due.deletion_certificate", "削除証明書（利用場所）", "Deletion certificate (place)"),
    ("due.audit", "利用者の定期監査", "Periodic audit of the user"),
    ("leaks.title", "漏えい等報告", "Leak reports"),
    (
        "leaks.intro",
        "漏えい等が発生し、又はそのおそれがあるときは速やかに速報し、30日以内（不正の目的によるおそれがあるときは60日以内）に確報します（施行規則第22条）。",
        "A leak, loss or damage (or the risk of one) is reported promptly, and confirmed within 30 days (60 when it may be malicious).",
    ),
    ("leaks.detected", "発覚日", "Detected on"),
    ("leaks.summary", "概要", "Summary"),
    ("leaks.items", "漏えい等した情報の項目", "Items affected"),
    ("leaks.persons", "本人の数", "Number of persons"),
    ("leaks.cause", "原因", "Cause"),
    ("leaks.deadline", "確報の期限", "Confirmed report due"),
    ("leaks.state", "状況", "State"),
    ("leaks.malicious", "不正の目的によるおそれ", "Possibly malicious"),
    ("leaks.final", "確報済み", "Confirmed report filed"),
    ("leaks.first", "速報済み", "First report filed"),
    ("leaks.overdue", "確報の期限超過", "Confirmed report overdue"),
    ("leaks.add", "速報を登録", "Record a first report"),
    ("contractors.title", "委託先", "Contractors"),
    (
        "contractors.intro",
        "業務の委託は認定を受けた者に限り、書面の契約で次の事項を定めます（施行規則第21条）。",
        "Work is outsourced only to certified contractors, by a written contract naming these items.",
    ),
    ("contractors.audits", "監査", "Audits"),
    ("contractors.no_audit", "監査記録なし", "Not audited yet"),
    ("contractors.passed", "適合", "Passed"),
    ("contractors.failed", "不適合", "Failed"),
    ("contractors.add", "委託契約を登録", "Record a contract"),
    ("ctr.name", "委託先の名称", "Contractor"),
    ("ctr.certification", "認定番号", "Certification reference"),
    ("ctr.scope", "委託の範囲", "Scope"),
    ("ctr.procedures", "取扱いの手順", "Procedures"),
    ("ctr.right_to_verify", "確認する権限", "The creator's right to verify"),
    ("ctr.instructions", "指示", "Instructions"),
    ("ctr.instruction_checks", "指示の遵守の確認", "How compliance is verified"),
    ("ctr.reporting", "報告（漏えい等の通知を含む）", "Reporting (incl. leak notification)"),
    ("ctr.other_terms", "その他（任意）", "Other terms (optional)"),
    ("ctr.contracted_on", "契約日", "Contract date"),
    ("account.title", "アカウント", "Account"),
    ("account.clearance", "取扱いの可否", "Clearance"),
    ("account.cleared", "可（資格確認・研修とも有効）", "Cleared (vetting and training current)"),
    ("account.not_cleared", "不可", "Not cleared"),
    ("account.vetting", "欠格事由の確認", "Disqualification check"),
    ("account.disqualifications", "該当する欠格事由", "Disqualifications found"),
    ("account.none_found", "なし", "None"),
    ("account.trainings", "研修の記録", "Training records"),
    ("account.course", "研修", "Course"),
    ("account.completed", "受講日", "Completed"),
    ("account.expires", "有効期限", "Valid until"),
    ("account.add_vetting", "欠格事由の確認を記録", "Record a disqualification check"),
    ("accounts.detail", "資格確認", "Vetting"),
    ("vet.checked_on", "確認日", "Checked on"),
    ("vet.adult_guardianship", "成年被後見人又は被保佐人", "Under adult guardianship or curatorship"),
    ("vet.bankruptcy", "破産者で復権を得ない者", "Bankrupt and not restored"),
    (
        "vet.revoked_officer",
        "認定を取り消された法人の役員であった者",
        "Officer of a business whose certification was revoked",
    ),
    ("vet.organized_crime", "暴力団員等", "Member of an organized crime group"),
    ("vet.conviction_on", "刑の執行を終えた日（該当する場合）", "Day a sentence ended (if any)"),
    ("vet.pledge_signed", "誓約書の提出", "Confidentiality pledge signed"),
    ("vet.note", "確認の方法（確認した書類）", "How it was checked (documents seen)"),
    ("identity.open", "確認待ちの候補", "Open candidates"),
    ("identity.decide", "決定", "Decide"),
    ("identity.decision", "判断", "Decision"),
    ("identity.merge", "同一人物として統合", "Merge (same person)"),
    ("identity.keep_apart", "別人として区別", "Keep apart (different persons)"),
    ("identity.split", "統合を分離", "Split (undo a merge of this record)"),
    ("identity.decisions", "判断の記録", "Decisions"),
    ("identity.by", "判断者", "Decided by"),
    ("identity.state", "状態", "State"),
    ("identity.undone", "取消済み", "Undone"),
    ("identity.undo", "取り消す", "Undo"),
    ("identity.standing", "有効", "Standing"),
    ("identity.new_record", "新しいレコード", "New record"),
    ("identity.candidate", "候補の人物", "Candidate person"),
    ("err.future", "未来の日付は指定できません。", "The date cannot be in the future."),
    ("apps.agreement", "利用契約", "Agreement"),
    ("apps.fees", "手数料", "Fees"),
    ("apps.releases", "提供", "Releases"),
    ("apps.fee_estimate", "見積額", "Estimate"),
    ("apps.fee_final", "確定額", "Amount due"),
    ("apps.fee_exempt", "免除", "Exempt"),
    ("apps.paid", "納付済み額", "Paid"),
    ("apps.settled", "精算", "Settled"),
    ("apps.user", "利用者", "User"),
    ("apps.user_type", "利用者の区分", "User type"),
    ("apps.method", "提供方法", "Method"),
    ("apps.period_end", "利用期間の末日", "Last day of use"),
    ("apps.items", "項目", "Items"),
    ("apps.handlers", "取扱者", "Handlers"),
    ("apps.places", "利用場所", "Places"),
    ("apps.release_id", "提供番号", "Release"),
    ("apps.release_on", "提供日", "Provided on"),
    ("apps.acknowledged", "受領確認", "Receipt acknowledged"),
    ("apps.policy", "加工方針のハッシュ", "Policy hash"),
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
        // Indexed once: a page looks up dozens of keys, each a scan of hundreds of entries otherwise.
        static INDEX: std::sync::LazyLock<std::collections::HashMap<&'static str, (&'static str, &'static str)>> =
            std::sync::LazyLock::new(|| STRINGS.iter().map(|(k, ja, en)| (*k, (*ja, *en))).collect());
        match INDEX.get(key) {
            Some((ja, en)) => match self.0 {
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
