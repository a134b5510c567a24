//! C3 property tests: for random registries and batches, no opted-out or un-notified person is ever
//! admitted, and every record is either admitted or quarantined.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{Duration, NaiveDate};
use kiban_registry::gate::{Facts, Gate, Verdict};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Person {
    notices: Vec<i64>,
    optouts: Vec<(i64, Option<i64>)>,
}

fn person() -> impl Strategy<Value = Person> {
    (prop::collection::vec(0i64..200, 0..3), prop::collection::vec((0i64..200, prop::option::of(0i64..100)), 0..3))
        .prop_map(|(notices, o)| Person {
            notices,
            optouts: o.into_iter().map(|(a, w)| (a, w.map(|w| a + w))).collect(),
        })
}

fn base() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn c3_no_opted_out_or_unnotified_person_is_admitted_and_nothing_is_lost(
        persons in prop::collection::vec(person(), 0..40),
        rows in prop::collection::vec((0usize..50, 0u8..10), 0..300),
        day in 0i64..260,
        waiting in 1u32..60,
    ) {
        let date = base() + Duration::days(day);
        let mut facts = Facts::default();
        for (i, p) in persons.iter().enumerate() {
            let id = format!("{i:08}");
            for n in &p.notices { facts.notice(id.clone(), base() + Duration::days(*n)); }
            for (k, (o, w)) in p.optouts.iter().enumerate() {
                let ev = format!("o{i}-{k}");
                facts.optout(id.clone(), ev.clone(), base() + Duration::days(*o));
                if let Some(w) = w { facts.withdrawal(id.clone(), &ev, base() + Duration::days(*w)); }
            }
        }
        let gate = Gate::compile("prov-a", &facts, date, waiting);
        // Rows: persons 0..50 (40+ unknown), some malformed ids, some another provider's.
        let mut prov = Vec::new();
        let mut pat: Vec<Option<String>> = Vec::new();
        for (p, kind) in &rows {
            prov.push(if *kind == 0 { "prov-b" } else { "prov-a" });
            pat.push(match kind { 1 => None, 2 => Some("bad id".into()), 3 => Some(String::new()), _ => Some(format!("{p:08}")) });
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("provider_id", DataType::Utf8, false),
            Field::new("patient_id", DataType::Utf8, true),
            Field::new("row", DataType::Int64, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(prov.clone())),
            Arc::new(StringArray::from(pat.clone())),
            Arc::new(Int64Array::from((0..rows.len() as i64).collect::<Vec<_>>())),
        ];
        let batch = RecordBatch::try_new(schema, cols).unwrap();
        let split = gate.split(&batch).unwrap();
        prop_assert_eq!(split.admitted.num_rows() + split.excluded.num_rows(), rows.len(), "nothing lost");
        let q = split.quarantine().unwrap();
        prop_assert_eq!(q.num_rows(), split.excluded.num_rows());
        // Every row index appears exactly once across admitted and quarantined.
        let idx = |b: &RecordBatch| b.column_by_name("row").unwrap().as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec();
        let mut all = idx(&split.admitted);
        all.extend(idx(&split.excluded));
        all.sort();
        prop_assert_eq!(all, (0..rows.len() as i64).collect::<Vec<_>>());
        // Each admitted row: independent check against the raw events.
        let adm_ids = split.admitted.column_by_name("patient_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let adm_prov = split.admitted.column_by_name("provider_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        for i in 0..adm_ids.len() {
            prop_assert_eq!(adm_prov.value(i), "prov-a");
            let k: usize = adm_ids.value(i).parse().unwrap();
            prop_assert!(k < persons.len(), "unknown person admitted");
            let p = &persons[k];
            let in_force = p.optouts.iter().any(|(o, w)| *o <= day && w.is_none_or(|w| w > day));
            prop_assert!(!in_force, "opted-out person admitted");
            prop_assert!(p.notices.iter().any(|n| n + waiting as i64 <= day), "un-notified person admitted");
        }
        // And conversely: a person meeting the rule is admitted (the gate is not simply closed).
        for (r, (p, kind)) in rows.iter().enumerate() {
            if *kind < 4 || *p >= persons.len() { continue; }
            let per = &persons[*p];
            let in_force = per.optouts.iter().any(|(o, w)| *o <= day && w.is_none_or(|w| w > day));
            let ok = !in_force && per.notices.iter().any(|n| n + waiting as i64 <= day);
            let v = gate.decide(Some(prov[r]), pat[r].as_deref());
            prop_assert_eq!(v == Verdict::Admitted, ok);
        }
    }
}
