//! D9 approvals of checked products on every backend: bound to the table version, append-only,
//! corrections and withdrawals as new rows pointing at the old one.

use chrono::{DateTime, Utc};
use kiban_registry::Registry;
use kiban_registry::outputs::{ApprovalDecision, NewOutputApproval, OutputApprovalError};

use crate::fresh_backends;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn approval(table: char, checker: &str) -> NewOutputApproval {
    NewOutputApproval {
        table_sha256: table.to_string().repeat(64),
        report_sha256: "f".repeat(64),
        checker: checker.into(),
        comment: "最小集計単位を確認".into(),
        kiban_version: "0.1.0".into(),
    }
}

#[tokio::test]
async fn d9_approvals_are_rows_bound_to_the_table_version_and_corrected_by_new_rows() {
    for f in fresh_backends().await {
        let reg = Registry::open(&f.url).await.unwrap();
        reg.migrate().await.unwrap();
        let a = reg.record_output_approval(&approval('a', "checker-1"), t("2026-11-21T10:00:00Z")).await.unwrap();
        assert_eq!(a.table_sha256, "a".repeat(64));
        // Another version of the table (another hash) is not approved by it.
        assert!(reg.output_approval_in_force(&"b".repeat(64)).await.unwrap().is_none());
        let inforce = reg.output_approval_in_force(&"A".repeat(64)).await.unwrap().expect("approved");
        assert_eq!((inforce.approval_id.as_str(), inforce.checker.as_str()), (a.approval_id.as_str(), "checker-1"));
        assert_eq!(inforce.recorded_at, t("2026-11-21T10:00:00Z"));

        // A withdrawal is a new row pointing at the approval; the old row stays as it was.
        let w = reg
            .correct_output_approval(
                &a.approval_id,
                ApprovalDecision::Withdrawn,
                "checker-2",
                "誤り",
                t("2026-11-22T09:00:00Z"),
            )
            .await
            .unwrap();
        assert_eq!(w.corrects.as_deref(), Some(a.approval_id.as_str()));
        assert!(reg.output_approval_in_force(&a.table_sha256).await.unwrap().is_none(), "withdrawn");
        let rows = reg.output_approvals(&a.table_sha256).await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], a, "the corrected row is unchanged");
        // Only the last row of a chain can be corrected.
        let again = reg
            .correct_output_approval(
                &a.approval_id,
                ApprovalDecision::Approved,
                "checker-2",
                "",
                t("2026-11-23T09:00:00Z"),
            )
            .await;
        assert!(matches!(again, Err(OutputApprovalError::NotLatest { .. })), "{again:?}");
        // Re-approving the withdrawal brings the table version back in force.
        let re = reg
            .correct_output_approval(
                &w.approval_id,
                ApprovalDecision::Approved,
                "checker-3",
                "再確認",
                t("2026-11-23T09:00:00Z"),
            )
            .await
            .unwrap();
        let now = reg.output_approval_in_force(&a.table_sha256).await.unwrap().expect("re-approved");
        assert_eq!(now.approval_id, re.approval_id);
        assert_eq!(reg.output_approvals(&a.table_sha256).await.unwrap().len(), 3);

        // Bad input is refused naming the field; unknown rows are named.
        let mut bad = approval('c', "checker-1");
        bad.table_sha256 = "not-a-hash".into();
        let e = reg.record_output_approval(&bad, t("2026-11-21T10:00:00Z")).await.unwrap_err();
        assert!(e.to_string().contains("table_sha256"), "{e}");
        let e = reg.record_output_approval(&approval('c', " "), t("2026-11-21T10:00:00Z")).await.unwrap_err();
        assert!(matches!(e, OutputApprovalError::NoChecker));
        let e = reg
            .correct_output_approval("approval-none", ApprovalDecision::Withdrawn, "x", "", t("2026-11-21T10:00:00Z"))
            .await
            .unwrap_err();
        assert!(matches!(e, OutputApprovalError::Unknown(_)), "{e}");
        reg.close().await;
    }
}
