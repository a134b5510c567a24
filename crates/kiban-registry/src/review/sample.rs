//! The whole approval sequence in one call — application → committee votes → approval → agreement →
//! fee → payment → release — for the demo and for tests of what comes after a release (the Visiting
//! environment, packages). Each step goes through the same workflow as the CLI and the API.

use chrono::NaiveDate;

use crate::review::agreement::{Agreement, UserType, sample_agreement_for};
use crate::review::application::Application;
use crate::review::db::ReviewError;
use crate::review::workflow::{Command, Decision, ReleaseSpec, VoteKind};
use crate::store::Registry;

/// What the sample approval does besides the fixed steps.
#[derive(Debug, Clone)]
pub struct SampleApproval {
    /// Day the application is submitted.
    pub submitted_on: NaiveDate,
    /// Day the review opens and the committee decides.
    pub decided_on: NaiveDate,
    /// Day the fee is paid.
    pub paid_on: NaiveDate,
    /// Type I or Type II user.
    pub user_type: UserType,
    /// Conditions of the approval.
    pub conditions: Vec<String>,
    /// Members `m0`..`m{votes-1}` vote to approve (the committee must hold them).
    pub votes: usize,
    /// The release, if the data are to be released.
    pub release: Option<ReleaseSpec>,
}

impl SampleApproval {
    /// A Type II approval on the given days with six votes and no release.
    pub fn type2(submitted_on: NaiveDate, decided_on: NaiveDate, paid_on: NaiveDate) -> Self {
        SampleApproval {
            submitted_on,
            decided_on,
            paid_on,
            user_type: UserType::TypeII,
            conditions: Vec::new(),
            votes: 6,
            release: None,
        }
    }
}

/// Runs `app` through the whole sequence; `agreement` may adjust the sample agreement before it is
/// concluded. Returns the application id.
pub async fn approve_and_release(
    reg: &Registry,
    app: &Application,
    s: &SampleApproval,
    agreement: impl FnOnce(&mut Agreement),
) -> Result<String, ReviewError> {
    let (id, _) = reg.submit_application(app, s.submitted_on).await?;
    reg.open_review(&id, s.decided_on).await?;
    for i in 0..s.votes {
        let reason = "公益性があり、利用目的の範囲で認める".to_owned();
        reg.execute_review(&id, &Command::Vote { member_id: format!("m{i}"), vote: VoteKind::Approve, reason }).await?;
    }
    let decision = Decision::Approve {
        expected_provision: "-".into(),
        conditions: s.conditions.clone(),
        guidelines: vec![],
        remarks: String::new(),
        processing_policy_sha256: None,
    };
    reg.execute_review(&id, &Command::Decide { decision, on: s.decided_on }).await?;
    let mut a = sample_agreement_for(app);
    a.user_type = s.user_type;
    agreement(&mut a);
    reg.execute_review(&id, &Command::ConcludeAgreement { agreement: Box::new(a) }).await?;
    reg.execute_review(&id, &Command::FinalFee { hourly_rate_yen: 8_000, minutes: 60 }).await?;
    reg.execute_review(&id, &Command::RecordPayment { amount_yen: 8_000, on: s.paid_on }).await?;
    if let Some(spec) = &s.release {
        reg.execute_review(&id, &Command::Release { spec: spec.clone() }).await?;
    }
    Ok(id)
}
