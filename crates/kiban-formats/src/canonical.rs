//! The canonical tables every reader produces and every writer consumes.
//!
//! Identity (the `patients` table: names, birth date, address, phone, insurer card) is kept apart
//! from clinical rows (encounters, diagnoses, prescriptions, labs, texts), which carry only the
//! provider's patient id: the caller routes the first to the identity vault and the rest to the
//! clinical store. Column names and Arrow types are those of [`kiban_model::synth::SynthTable`], so
//! synthetic data and read data are the same shape; a field a format does not carry is `""`.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Date32Array, Date32Builder, Float64Array, Float64Builder,
    Int64Array, Int64Builder, StringArray, StringBuilder, UInt64Array, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, NaiveDate};
use kiban_model::synth::SynthTable;
use serde::Serialize;

/// A canonical table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Identity: one row per provider patient (goes to the identity vault, never the clinical store).
    Patients,
    /// Encounters (外来・入院).
    Encounters,
    /// Diagnoses.
    Diagnoses,
    /// Prescriptions.
    Prescriptions,
    /// Numeric lab results.
    Labs,
    /// Free-text observations and reports (OBX-5 TX/FT, FHIR valueString, receipt comments).
    Texts,
    /// Procedures (UKE SI 診療行為, EF acts, 様式1 手術), one row per day done.
    Procedures,
    /// Materials (UKE TO 特定器材, EF materials), one row per day used.
    Materials,
    /// Public expense programmes of a receipt (UKE KO 公費): which programme paid and how much;
    /// the payer and recipient numbers are identifiers and live in [`Table::PublicExpenseIds`].
    PublicExpenses,
    /// Identity: a patient's public expense payer and recipient numbers (負担者番号, 受給者番号).
    PublicExpenseIds,
    /// Receipts (UKE RE with its HO and BU): type, month, days, points, copay, DPC code.
    Receipts,
}

impl Table {
    /// All tables.
    pub const ALL: [Table; 11] = [
        Table::Patients,
        Table::Encounters,
        Table::Diagnoses,
        Table::Prescriptions,
        Table::Labs,
        Table::Texts,
        Table::Procedures,
        Table::Materials,
        Table::PublicExpenses,
        Table::PublicExpenseIds,
        Table::Receipts,
    ];
    /// File-system name.
    pub fn name(self) -> &'static str {
        match self {
            Table::Patients => "patients",
            Table::Encounters => "encounters",
            Table::Diagnoses => "diagnoses",
            Table::Prescriptions => "prescriptions",
            Table::Labs => "labs",
            Table::Texts => "texts",
            Table::Procedures => "procedures",
            Table::Materials => "materials",
            Table::PublicExpenses => "public_expenses",
            Table::PublicExpenseIds => "public_expense_ids",
            Table::Receipts => "receipts",
        }
    }
    /// True for the identity tables (routed to the identity vault, never the clinical store).
    pub fn is_identity(self) -> bool {
        matches!(self, Table::Patients | Table::PublicExpenseIds)
    }
    /// Arrow schema (the synthetic population's for the tables it has).
    pub fn schema(self) -> SchemaRef {
        let s = |n: &str| Field::new(n, DataType::Utf8, false);
        let d = |n: &str| Field::new(n, DataType::Date32, false);
        let b = |n: &str| Field::new(n, DataType::Boolean, false);
        let u = |n: &str| Field::new(n, DataType::UInt64, false);
        let uo = |n: &str| Field::new(n, DataType::UInt64, true);
        let io = |n: &str| Field::new(n, DataType::Int64, true);
        let fo = |n: &str| Field::new(n, DataType::Float64, true);
        match self {
            Table::Patients => SynthTable::Patients.schema(),
            Table::Encounters => SynthTable::Encounters.schema(),
            Table::Diagnoses => SynthTable::Diagnoses.schema(),
            Table::Prescriptions => SynthTable::Prescriptions.schema(),
            Table::Labs => SynthTable::Labs.schema(),
            Table::Texts => Arc::new(Schema::new(vec![
                s("provider_id"),
                s("patient_id"),
                s("encounter_id"),
                d("observed_date"),
                s("code"),
                s("name"),
                s("text"),
            ])),
            Table::Procedures => Arc::new(Schema::new(vec![
                s("provider_id"),
                s("patient_id"),
                s("encounter_id"),
                d("procedure_date"),
                b("day_known"),
                s("source"),
                s("care_category"),
                s("burden_category"),
                s("procedure_code"),
                s("procedure_name"),
                fo("quantity"),
                io("points"),
                u("count"),
            ])),
            Table::Materials => Arc::new(Schema::new(vec![
                s("provider_id"),
                s("patient_id"),
                s("encounter_id"),
                d("used_date"),
                b("day_known"),
                s("source"),
                s("care_category"),
                s("burden_category"),
                s("material_code"),
                s("material_name"),
                s("product_name"),
                fo("quantity"),
                s("unit_code"),
                fo("unit_price"),
                io("points"),
                u("count"),
            ])),
            Table::PublicExpenses => Arc::new(Schema::new(vec![
                s("provider_id"),
                s("patient_id"),
                s("encounter_id"),
                d("service_month"),
                u("rank"),
                s("program_code"),
                s("prefecture_code"),
                s("benefit_class"),
                uo("days"),
                io("points"),
                io("public_burden"),
                io("outpatient_copay"),
                io("inpatient_copay"),
                uo("times"),
                io("amount"),
            ])),
            Table::PublicExpenseIds => {
                Arc::new(Schema::new(vec![s("provider_id"), s("patient_id"), s("payer_number"), s("recipient_number")]))
            }
            Table::Receipts => Arc::new(Schema::new(vec![
                s("provider_id"),
                s("patient_id"),
                s("encounter_id"),
                s("receipt_number"),
                s("receipt_type"),
                d("service_month"),
                s("benefit_ratio"),
                s("copay_class"),
                s("special_notes"),
                uo("insurance_days"),
                io("insurance_points"),
                uo("meal_times"),
                io("meal_amount"),
                io("patient_copay"),
                s("dpc_code"),
                s("dpc_outcome"),
            ])),
        }
    }
    /// The canonical table a synthetic table maps to (none for the ground truth).
    pub fn from_synth(t: SynthTable) -> Option<Table> {
        match t {
            SynthTable::Truth => None,
            SynthTable::Patients => Some(Table::Patients),
            SynthTable::Encounters => Some(Table::Encounters),
            SynthTable::Diagnoses => Some(Table::Diagnoses),
            SynthTable::Prescriptions => Some(Table::Prescriptions),
            SynthTable::Labs => Some(Table::Labs),
        }
    }
}

/// A provider's identity record of a patient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Patient<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// The provider's patient id.
    pub patient_id: S,
    /// Kanji name as written.
    pub name_kanji: S,
    /// Kana name as written.
    pub name_kana: S,
    /// Sex, ISO 5218 digit (`1`, `2`, `0`).
    pub sex: S,
    /// Birth date as written (ISO `YYYY-MM-DD` unless the source wrote 和暦).
    pub birth_date: S,
    /// Postal code.
    pub postal_code: S,
    /// Address line.
    pub address: S,
    /// Phone.
    pub phone: S,
    /// Insurer number (保険者番号).
    pub insurer_number: S,
    /// Card symbol (記号).
    pub card_symbol: S,
    /// Card number (番号).
    pub card_number: S,
    /// Branch (枝番).
    pub card_branch: S,
}

/// An encounter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Encounter<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// `外来` or `入院`.
    pub encounter_type: S,
    /// Department name.
    pub department: S,
    /// Admission (or visit) date.
    pub admission_date: NaiveDate,
    /// Discharge date.
    pub discharge_date: Option<NaiveDate>,
}

/// A diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnosis<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// Date of diagnosis.
    pub diagnosis_date: NaiveDate,
    /// ICD-10 code (`""` when the source has only a local code with no master to map it).
    pub icd10: S,
    /// Name.
    pub diagnosis_name: S,
    /// Main diagnosis (主病名).
    pub main: bool,
}

/// A prescription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prescription<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// Date prescribed.
    pub prescribed_date: NaiveDate,
    /// Drug code (YJ-shaped).
    pub drug_code: S,
    /// Drug name.
    pub drug_name: S,
    /// `oral`, `external`, `injection`.
    pub route: S,
    /// Days supplied.
    pub days: u64,
}

/// A numeric lab result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lab<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// Result date.
    pub result_date: NaiveDate,
    /// Test code (JLAC10-shaped).
    pub test_code: S,
    /// Test name.
    pub test_name: S,
    /// Value.
    pub value: f64,
    /// Unit.
    pub unit: S,
}

/// A free-text observation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// Date observed.
    pub observed_date: NaiveDate,
    /// Observation code.
    pub code: S,
    /// Observation name.
    pub name: S,
    /// The text.
    pub text: S,
}

/// A procedure done (診療行為), one row per day it was done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Procedure<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// The day done (the month's first day when the source marks no day: see `day_known`).
    pub procedure_date: NaiveDate,
    /// False when the source gives only the month.
    pub day_known: bool,
    /// Where the row comes from: `UKE SI`, `EF`, `様式1 A007010`.
    pub source: S,
    /// 診療識別 (UKE) or データ区分 (EF).
    pub care_category: S,
    /// 負担区分 (which payer of the receipt bears it), UKE only.
    pub burden_category: S,
    /// レセプト電算 診療行為コード (9 digits) or 点数表コード (様式1, `K…`).
    pub procedure_code: S,
    /// Name (from the file, else the procedure master, else `""`).
    pub procedure_name: S,
    /// 数量データ, when given.
    pub quantity: Option<f64>,
    /// Points (点数) of one unit, when given.
    pub points: Option<i64>,
    /// Times done that day (算定日 count; the 回数 when no day is marked).
    pub count: u64,
}

/// A material used (特定器材), one row per day used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Material<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// The day used (the month's first day when no day is marked: see `day_known`).
    pub used_date: NaiveDate,
    /// False when the source gives only the month.
    pub day_known: bool,
    /// `UKE TO` or `EF`.
    pub source: S,
    /// 診療識別 (UKE) or データ区分 (EF).
    pub care_category: S,
    /// 負担区分, UKE only.
    pub burden_category: S,
    /// 特定器材コード (9 digits).
    pub material_code: S,
    /// 特定器材名称 (from the file, else the master, else `""`).
    pub material_name: S,
    /// 商品名及び規格.
    pub product_name: S,
    /// 使用量.
    pub quantity: Option<f64>,
    /// 単位コード.
    pub unit_code: S,
    /// 単価 (yen).
    pub unit_price: Option<f64>,
    /// Points.
    pub points: Option<i64>,
    /// Times used that day.
    pub count: u64,
}

/// One public expense programme (公費) of a receipt: which programme and what it paid. The payer
/// and recipient numbers identify the person's local office and the person: they are in
/// [`PublicExpenseId`], for the identity vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicExpense<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// The receipt's month (first day).
    pub service_month: NaiveDate,
    /// 1 for 第一公費 … 4 for 第四公費 (order of the KO records in the receipt).
    pub rank: u64,
    /// 法別番号: the programme (first two digits of the 負担者番号; `12` 生活保護, `54` 難病 …).
    pub program_code: S,
    /// 都道府県番号 (digits 3–4 of the 負担者番号).
    pub prefecture_code: S,
    /// 任意給付区分.
    pub benefit_class: S,
    /// 診療実日数.
    pub days: Option<u64>,
    /// 合計点数.
    pub points: Option<i64>,
    /// 公費負担金額.
    pub public_burden: Option<i64>,
    /// 外来一部負担金.
    pub outpatient_copay: Option<i64>,
    /// 入院一部負担金.
    pub inpatient_copay: Option<i64>,
    /// 食事療養・生活療養 回数.
    pub times: Option<u64>,
    /// 食事療養・生活療養 合計金額.
    pub amount: Option<i64>,
}

/// A patient's public expense numbers (identity: for the vault, never the clinical store).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PublicExpenseId<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// 負担者番号 (8 digits).
    pub payer_number: S,
    /// 受給者番号 (7 digits).
    pub recipient_number: S,
}

/// An owned copy of a field: text borrowed from a reader's buffer becomes a `String`; other
/// values are copied.
pub trait Own {
    /// The owned type.
    type O;
    /// The owned copy.
    fn own(&self) -> Self::O;
}

impl Own for &str {
    type O = String;
    fn own(&self) -> String {
        (*self).to_owned()
    }
}

impl Own for String {
    type O = String;
    fn own(&self) -> String {
        self.clone()
    }
}

macro_rules! own_copy {
    ($($t:ty),*) => {$(
        impl Own for $t {
            type O = $t;
            fn own(&self) -> $t {
                *self
            }
        }
    )*};
}
own_copy!(NaiveDate, bool, u64, i64, f64);

impl<T: Own> Own for Option<T> {
    type O = Option<T::O>;
    fn own(&self) -> Self::O {
        self.as_ref().map(Own::own)
    }
}

impl<S: Own<O = String>> Patient<S> {
    /// An owned copy.
    pub fn owned(&self) -> Patient {
        Patient {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            name_kanji: self.name_kanji.own(),
            name_kana: self.name_kana.own(),
            sex: self.sex.own(),
            birth_date: self.birth_date.own(),
            postal_code: self.postal_code.own(),
            address: self.address.own(),
            phone: self.phone.own(),
            insurer_number: self.insurer_number.own(),
            card_symbol: self.card_symbol.own(),
            card_number: self.card_number.own(),
            card_branch: self.card_branch.own(),
        }
    }
}

impl<S: Own<O = String>> Encounter<S> {
    /// An owned copy.
    pub fn owned(&self) -> Encounter {
        Encounter {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            encounter_type: self.encounter_type.own(),
            department: self.department.own(),
            admission_date: self.admission_date.own(),
            discharge_date: self.discharge_date.own(),
        }
    }
}

impl<S: Own<O = String>> Diagnosis<S> {
    /// An owned copy.
    pub fn owned(&self) -> Diagnosis {
        Diagnosis {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            diagnosis_date: self.diagnosis_date.own(),
            icd10: self.icd10.own(),
            diagnosis_name: self.diagnosis_name.own(),
            main: self.main.own(),
        }
    }
}

impl<S: Own<O = String>> Prescription<S> {
    /// An owned copy.
    pub fn owned(&self) -> Prescription {
        Prescription {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            prescribed_date: self.prescribed_date.own(),
            drug_code: self.drug_code.own(),
            drug_name: self.drug_name.own(),
            route: self.route.own(),
            days: self.days.own(),
        }
    }
}

impl<S: Own<O = String>> Lab<S> {
    /// An owned copy.
    pub fn owned(&self) -> Lab {
        Lab {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            result_date: self.result_date.own(),
            test_code: self.test_code.own(),
            test_name: self.test_name.own(),
            value: self.value.own(),
            unit: self.unit.own(),
        }
    }
}

impl<S: Own<O = String>> Text<S> {
    /// An owned copy.
    pub fn owned(&self) -> Text {
        Text {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            observed_date: self.observed_date.own(),
            code: self.code.own(),
            name: self.name.own(),
            text: self.text.own(),
        }
    }
}

impl<S: Own<O = String>> Procedure<S> {
    /// An owned copy.
    pub fn owned(&self) -> Procedure {
        Procedure {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            procedure_date: self.procedure_date.own(),
            day_known: self.day_known.own(),
            source: self.source.own(),
            care_category: self.care_category.own(),
            burden_category: self.burden_category.own(),
            procedure_code: self.procedure_code.own(),
            procedure_name: self.procedure_name.own(),
            quantity: self.quantity.own(),
            points: self.points.own(),
            count: self.count.own(),
        }
    }
}

impl<S: Own<O = String>> Material<S> {
    /// An owned copy.
    pub fn owned(&self) -> Material {
        Material {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            used_date: self.used_date.own(),
            day_known: self.day_known.own(),
            source: self.source.own(),
            care_category: self.care_category.own(),
            burden_category: self.burden_category.own(),
            material_code: self.material_code.own(),
            material_name: self.material_name.own(),
            product_name: self.product_name.own(),
            quantity: self.quantity.own(),
            unit_code: self.unit_code.own(),
            unit_price: self.unit_price.own(),
            points: self.points.own(),
            count: self.count.own(),
        }
    }
}

impl<S: Own<O = String>> PublicExpense<S> {
    /// An owned copy.
    pub fn owned(&self) -> PublicExpense {
        PublicExpense {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            service_month: self.service_month.own(),
            rank: self.rank.own(),
            program_code: self.program_code.own(),
            prefecture_code: self.prefecture_code.own(),
            benefit_class: self.benefit_class.own(),
            days: self.days.own(),
            points: self.points.own(),
            public_burden: self.public_burden.own(),
            outpatient_copay: self.outpatient_copay.own(),
            inpatient_copay: self.inpatient_copay.own(),
            times: self.times.own(),
            amount: self.amount.own(),
        }
    }
}

impl<S: Own<O = String>> PublicExpenseId<S> {
    /// An owned copy.
    pub fn owned(&self) -> PublicExpenseId {
        PublicExpenseId {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            payer_number: self.payer_number.own(),
            recipient_number: self.recipient_number.own(),
        }
    }
}

/// One receipt (レセプト): its kind, month and the insurance totals (RE, HO, and BU of DPC receipts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Receipt<S = String> {
    /// Provider id.
    pub provider_id: S,
    /// Patient id.
    pub patient_id: S,
    /// Encounter id.
    pub encounter_id: S,
    /// RE.1 レセプト番号 (sequence in the file).
    pub receipt_number: S,
    /// RE.2 レセプト種別 (4 digits: 医科/DPC, 本人/家族, 入院/外来 …).
    pub receipt_type: S,
    /// RE.3 診療年月 (first day).
    pub service_month: NaiveDate,
    /// RE.7 給付割合.
    pub benefit_ratio: S,
    /// RE.10 一部負担金・食事療養費・生活療養費標準負担額区分.
    pub copay_class: S,
    /// RE.11 特記事項.
    pub special_notes: S,
    /// HO.4 診療実日数.
    pub insurance_days: Option<u64>,
    /// HO.5 合計点数.
    pub insurance_points: Option<i64>,
    /// HO.7 食事療養・生活療養 回数.
    pub meal_times: Option<u64>,
    /// HO.8 食事療養・生活療養 合計金額.
    pub meal_amount: Option<i64>,
    /// HO.11 負担金額 (医療保険).
    pub patient_copay: Option<i64>,
    /// BU.1 診断群分類番号 (DPC receipts).
    pub dpc_code: S,
    /// BU.4 DPC転帰区分.
    pub dpc_outcome: S,
}

impl<S: Own<O = String>> Receipt<S> {
    /// An owned copy.
    pub fn owned(&self) -> Receipt {
        Receipt {
            provider_id: self.provider_id.own(),
            patient_id: self.patient_id.own(),
            encounter_id: self.encounter_id.own(),
            receipt_number: self.receipt_number.own(),
            receipt_type: self.receipt_type.own(),
            service_month: self.service_month,
            benefit_ratio: self.benefit_ratio.own(),
            copay_class: self.copay_class.own(),
            special_notes: self.special_notes.own(),
            insurance_days: self.insurance_days,
            insurance_points: self.insurance_points,
            meal_times: self.meal_times,
            meal_amount: self.meal_amount,
            patient_copay: self.patient_copay,
            dpc_code: self.dpc_code.own(),
            dpc_outcome: self.dpc_outcome.own(),
        }
    }
}

/// One canonical record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "table", rename_all = "snake_case")]
pub enum Record<S = String> {
    /// Identity.
    Patient(Patient<S>),
    /// Encounter.
    Encounter(Encounter<S>),
    /// Diagnosis.
    Diagnosis(Diagnosis<S>),
    /// Prescription.
    Prescription(Prescription<S>),
    /// Lab result.
    Lab(Lab<S>),
    /// Free text.
    Text(Text<S>),
    /// Procedure.
    Procedure(Procedure<S>),
    /// Material.
    Material(Material<S>),
    /// Public expense programme of a receipt.
    PublicExpense(PublicExpense<S>),
    /// Public expense numbers (identity).
    PublicExpenseId(PublicExpenseId<S>),
    /// Receipt.
    Receipt(Receipt<S>),
}

impl<S: AsRef<str>> Record<S> {
    /// The table it belongs to.
    pub fn table(&self) -> Table {
        match self {
            Record::Patient(_) => Table::Patients,
            Record::Encounter(_) => Table::Encounters,
            Record::Diagnosis(_) => Table::Diagnoses,
            Record::Prescription(_) => Table::Prescriptions,
            Record::Lab(_) => Table::Labs,
            Record::Text(_) => Table::Texts,
            Record::Procedure(_) => Table::Procedures,
            Record::Material(_) => Table::Materials,
            Record::PublicExpense(_) => Table::PublicExpenses,
            Record::PublicExpenseId(_) => Table::PublicExpenseIds,
            Record::Receipt(_) => Table::Receipts,
        }
    }
    /// The provider id.
    pub fn provider_id(&self) -> &str {
        match self {
            Record::Patient(r) => r.provider_id.as_ref(),
            Record::Encounter(r) => r.provider_id.as_ref(),
            Record::Diagnosis(r) => r.provider_id.as_ref(),
            Record::Prescription(r) => r.provider_id.as_ref(),
            Record::Lab(r) => r.provider_id.as_ref(),
            Record::Text(r) => r.provider_id.as_ref(),
            Record::Procedure(r) => r.provider_id.as_ref(),
            Record::Material(r) => r.provider_id.as_ref(),
            Record::PublicExpense(r) => r.provider_id.as_ref(),
            Record::PublicExpenseId(r) => r.provider_id.as_ref(),
            Record::Receipt(r) => r.provider_id.as_ref(),
        }
    }
    /// The provider's patient id.
    pub fn patient_id(&self) -> &str {
        match self {
            Record::Patient(r) => r.patient_id.as_ref(),
            Record::Encounter(r) => r.patient_id.as_ref(),
            Record::Diagnosis(r) => r.patient_id.as_ref(),
            Record::Prescription(r) => r.patient_id.as_ref(),
            Record::Lab(r) => r.patient_id.as_ref(),
            Record::Text(r) => r.patient_id.as_ref(),
            Record::Procedure(r) => r.patient_id.as_ref(),
            Record::Material(r) => r.patient_id.as_ref(),
            Record::PublicExpense(r) => r.patient_id.as_ref(),
            Record::PublicExpenseId(r) => r.patient_id.as_ref(),
            Record::Receipt(r) => r.patient_id.as_ref(),
        }
    }
    /// An owned copy (a record borrowed from a reader's buffer, for a sink that keeps it).
    pub fn owned(&self) -> Record
    where
        S: Own<O = String>,
    {
        match self {
            Record::Patient(x) => Record::Patient(x.owned()),
            Record::Encounter(x) => Record::Encounter(x.owned()),
            Record::Diagnosis(x) => Record::Diagnosis(x.owned()),
            Record::Prescription(x) => Record::Prescription(x.owned()),
            Record::Lab(x) => Record::Lab(x.owned()),
            Record::Text(x) => Record::Text(x.owned()),
            Record::Procedure(x) => Record::Procedure(x.owned()),
            Record::Material(x) => Record::Material(x.owned()),
            Record::PublicExpense(x) => Record::PublicExpense(x.owned()),
            Record::PublicExpenseId(x) => Record::PublicExpenseId(x.owned()),
            Record::Receipt(x) => Record::Receipt(x.owned()),
        }
    }
}

/// Raw text kept in a quarantine entry is cut at this many bytes, so one huge bad record cannot
/// blow up the quarantine (its location still finds it in the file).
pub const RAW_LIMIT: usize = 4096;

/// A record a reader could not parse: where it is, which field, and why. Never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// The file.
    pub file: String,
    /// Where in the file: `line 12`, `message 3 segment PID`, `entry 4 (Patient)` …
    pub location: String,
    /// The field (`PID-7`, `RE.7 生年月日`, `Patient.birthDate`, or `record` for the whole record).
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// The raw record (cut at [`RAW_LIMIT`] bytes).
    pub raw: String,
}

impl Quarantined {
    /// Builds an entry, cutting the raw text at a character boundary.
    pub fn new(
        file: impl Into<String>,
        location: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
        raw: &str,
    ) -> Self {
        let mut end = raw.len().min(RAW_LIMIT);
        while !raw.is_char_boundary(end) {
            end -= 1;
        }
        Quarantined {
            file: file.into(),
            location: location.into(),
            field: field.into(),
            problem: problem.into(),
            raw: raw[..end].to_owned(),
        }
    }
}

impl std::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}: {}", self.file, self.location, self.field, self.problem)
    }
}

/// Where a reader puts what it reads: good records and quarantined ones, as they come (streaming).
pub trait Sink {
    /// A parsed record.
    fn record(&mut self, r: Record);
    /// A parsed record borrowing the reader's buffer (the hot path of the big formats: a sink that
    /// copies the text into Arrow builders needs no `String` per field).
    fn record_ref(&mut self, r: Record<&str>) {
        self.record(r.owned())
    }
    /// A record that could not be parsed.
    fn quarantine(&mut self, q: Quarantined);
}

/// A sink that keeps everything in memory (tests, small files).
#[derive(Debug, Default)]
pub struct Collected {
    /// Records in reading order.
    pub records: Vec<Record>,
    /// Quarantined records in reading order.
    pub quarantined: Vec<Quarantined>,
}

impl Sink for Collected {
    fn record(&mut self, r: Record) {
        self.records.push(r);
    }
    fn quarantine(&mut self, q: Quarantined) {
        self.quarantined.push(q);
    }
}

impl Collected {
    /// Records of one table.
    pub fn of(&self, t: Table) -> impl Iterator<Item = &Record> {
        self.records.iter().filter(move |r| r.table() == t)
    }
}

/// A sink that counts only (benchmarks, fuzzing).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counted {
    /// Records.
    pub records: u64,
    /// Quarantined.
    pub quarantined: u64,
}

impl Sink for Counted {
    fn record(&mut self, _: Record) {
        self.records += 1;
    }
    fn record_ref(&mut self, _: Record<&str>) {
        self.records += 1;
    }
    fn quarantine(&mut self, _: Quarantined) {
        self.quarantined += 1;
    }
}

fn days(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - 719_163
}

fn date(v: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(v + 719_163).unwrap_or_default()
}

/// One column's builder, by Arrow type.
enum Col {
    S(StringBuilder),
    D(Date32Builder),
    U(UInt64Builder),
    I(Int64Builder),
    F(Float64Builder),
    B(BooleanBuilder),
}

/// One cell of a row, in schema order.
enum V<'a> {
    S(&'a str),
    D(Option<NaiveDate>),
    U(Option<u64>),
    I(Option<i64>),
    F(Option<f64>),
    B(bool),
}

/// `finish` into an [`ArrayRef`] (one spelling for every builder type).
trait FinishArc {
    fn finish_arc(self) -> ArrayRef;
}

impl<B: arrow::array::ArrayBuilder> FinishArc for B {
    fn finish_arc(mut self) -> ArrayRef {
        arrow::array::ArrayBuilder::finish(&mut self)
    }
}

/// Builds Arrow batches of one table from records.
pub struct TableBuilder {
    table: Table,
    cols: Vec<Col>,
    rows: usize,
}

impl TableBuilder {
    /// An empty builder for `table`.
    pub fn new(table: Table) -> Self {
        let cols = table
            .schema()
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Col::S(StringBuilder::new()),
                DataType::Date32 => Col::D(Date32Builder::new()),
                DataType::UInt64 => Col::U(UInt64Builder::new()),
                DataType::Int64 => Col::I(Int64Builder::new()),
                DataType::Float64 => Col::F(Float64Builder::new()),
                _ => Col::B(BooleanBuilder::new()),
            })
            .collect();
        TableBuilder { table, cols, rows: 0 }
    }
    /// Rows buffered.
    pub fn len(&self) -> usize {
        self.rows
    }
    /// No rows buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }
    fn row(&mut self, v: &[V<'_>]) {
        debug_assert_eq!(v.len(), self.cols.len(), "{:?}", self.table);
        for (c, v) in self.cols.iter_mut().zip(v) {
            match (c, v) {
                (Col::S(b), V::S(x)) => b.append_value(x),
                (Col::D(b), V::D(x)) => b.append_option(x.map(days)),
                (Col::U(b), V::U(x)) => b.append_option(*x),
                (Col::I(b), V::I(x)) => b.append_option(*x),
                (Col::F(b), V::F(x)) => b.append_option(*x),
                (Col::B(b), V::B(x)) => b.append_value(*x),
                _ => unreachable!("cells follow the schema of {:?}", self.table),
            }
        }
    }
    /// Appends a record (it must belong to this table).
    pub fn push<T: AsRef<str>>(&mut self, r: &Record<T>) {
        debug_assert_eq!(r.table(), self.table);
        self.rows += 1;
        use V::{B, D, F, I, S, U};
        match r {
            Record::Patient(p) => self.row(&[
                S(p.provider_id.as_ref()),
                S(p.patient_id.as_ref()),
                S(p.name_kanji.as_ref()),
                S(p.name_kana.as_ref()),
                S(p.sex.as_ref()),
                S(p.birth_date.as_ref()),
                S(p.postal_code.as_ref()),
                S(p.address.as_ref()),
                S(p.phone.as_ref()),
                S(p.insurer_number.as_ref()),
                S(p.card_symbol.as_ref()),
                S(p.card_number.as_ref()),
                S(p.card_branch.as_ref()),
            ]),
            Record::Encounter(e) => self.row(&[
                S(e.provider_id.as_ref()),
                S(e.patient_id.as_ref()),
                S(e.encounter_id.as_ref()),
                S(e.encounter_type.as_ref()),
                S(e.department.as_ref()),
                D(Some(e.admission_date)),
                D(e.discharge_date),
            ]),
            Record::Diagnosis(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.diagnosis_date)),
                S(x.icd10.as_ref()),
                S(x.diagnosis_name.as_ref()),
                B(x.main),
            ]),
            Record::Prescription(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.prescribed_date)),
                S(x.drug_code.as_ref()),
                S(x.drug_name.as_ref()),
                S(x.route.as_ref()),
                U(Some(x.days)),
            ]),
            Record::Lab(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.result_date)),
                S(x.test_code.as_ref()),
                S(x.test_name.as_ref()),
                F(Some(x.value)),
                S(x.unit.as_ref()),
            ]),
            Record::Text(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.observed_date)),
                S(x.code.as_ref()),
                S(x.name.as_ref()),
                S(x.text.as_ref()),
            ]),
            Record::Procedure(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.procedure_date)),
                B(x.day_known),
                S(x.source.as_ref()),
                S(x.care_category.as_ref()),
                S(x.burden_category.as_ref()),
                S(x.procedure_code.as_ref()),
                S(x.procedure_name.as_ref()),
                F(x.quantity),
                I(x.points),
                U(Some(x.count)),
            ]),
            Record::Material(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.used_date)),
                B(x.day_known),
                S(x.source.as_ref()),
                S(x.care_category.as_ref()),
                S(x.burden_category.as_ref()),
                S(x.material_code.as_ref()),
                S(x.material_name.as_ref()),
                S(x.product_name.as_ref()),
                F(x.quantity),
                S(x.unit_code.as_ref()),
                F(x.unit_price),
                I(x.points),
                U(Some(x.count)),
            ]),
            Record::PublicExpense(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                D(Some(x.service_month)),
                U(Some(x.rank)),
                S(x.program_code.as_ref()),
                S(x.prefecture_code.as_ref()),
                S(x.benefit_class.as_ref()),
                U(x.days),
                I(x.points),
                I(x.public_burden),
                I(x.outpatient_copay),
                I(x.inpatient_copay),
                U(x.times),
                I(x.amount),
            ]),
            Record::PublicExpenseId(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.payer_number.as_ref()),
                S(x.recipient_number.as_ref()),
            ]),
            Record::Receipt(x) => self.row(&[
                S(x.provider_id.as_ref()),
                S(x.patient_id.as_ref()),
                S(x.encounter_id.as_ref()),
                S(x.receipt_number.as_ref()),
                S(x.receipt_type.as_ref()),
                D(Some(x.service_month)),
                S(x.benefit_ratio.as_ref()),
                S(x.copay_class.as_ref()),
                S(x.special_notes.as_ref()),
                U(x.insurance_days),
                I(x.insurance_points),
                U(x.meal_times),
                I(x.meal_amount),
                I(x.patient_copay),
                S(x.dpc_code.as_ref()),
                S(x.dpc_outcome.as_ref()),
            ]),
        }
    }
    /// Takes the buffered rows as one batch. The builders start the next batch with the capacity
    /// this one needed (Arrow's `finish` leaves them empty, so each batch would regrow from nothing).
    pub fn finish(&mut self) -> RecordBatch {
        let n = self.rows;
        let cols: Vec<ArrayRef> = self
            .cols
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Col::S(b) => {
                        let a = b.finish();
                        *b = StringBuilder::with_capacity(n, a.values().len());
                        Arc::new(a)
                    }
                    Col::D(b) => std::mem::replace(b, Date32Builder::with_capacity(n)).finish_arc(),
                    Col::U(b) => std::mem::replace(b, UInt64Builder::with_capacity(n)).finish_arc(),
                    Col::I(b) => std::mem::replace(b, Int64Builder::with_capacity(n)).finish_arc(),
                    Col::F(b) => std::mem::replace(b, Float64Builder::with_capacity(n)).finish_arc(),
                    Col::B(b) => std::mem::replace(b, BooleanBuilder::with_capacity(n)).finish_arc(),
                }
            })
            .collect();
        self.rows = 0;
        RecordBatch::try_new(self.table.schema(), cols).expect("builders follow the schema")
    }
}

/// Reads canonical records back out of a batch of `table` (written by [`TableBuilder`] or by
/// `kiban synth`). Columns are found by name, so extra columns are ignored.
pub fn records_from_batch(table: Table, batch: &RecordBatch) -> Vec<Record> {
    let s = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
    let sv = |a: &Option<StringArray>, i: usize| {
        a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i).to_owned()).unwrap_or_default()
    };
    let d = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Date32Array>().cloned());
    let dv = |a: &Option<Date32Array>, i: usize| a.as_ref().filter(|a| !a.is_null(i)).map(|a| date(a.value(i)));
    let (pv, pa) = (s("provider_id"), s("patient_id"));
    let mut out = Vec::with_capacity(batch.num_rows());
    match table {
        Table::Patients => {
            let names = [
                "name_kanji",
                "name_kana",
                "sex",
                "birth_date",
                "postal_code",
                "address",
                "phone",
                "insurer_number",
                "card_symbol",
                "card_number",
                "card_branch",
            ];
            let c: Vec<Option<StringArray>> = names.iter().map(|n| s(n)).collect();
            for i in 0..batch.num_rows() {
                let v = |k: usize| sv(&c[k], i);
                out.push(Record::Patient(Patient {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    name_kanji: v(0),
                    name_kana: v(1),
                    sex: v(2),
                    birth_date: v(3),
                    postal_code: v(4),
                    address: v(5),
                    phone: v(6),
                    insurer_number: v(7),
                    card_symbol: v(8),
                    card_number: v(9),
                    card_branch: v(10),
                }));
            }
        }
        Table::Encounters => {
            let (e, t, dep, a, dis) =
                (s("encounter_id"), s("encounter_type"), s("department"), d("admission_date"), d("discharge_date"));
            for i in 0..batch.num_rows() {
                out.push(Record::Encounter(Encounter {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    encounter_type: sv(&t, i),
                    department: sv(&dep, i),
                    admission_date: dv(&a, i).unwrap_or_default(),
                    discharge_date: dv(&dis, i),
                }));
            }
        }
        Table::Diagnoses => {
            let (e, dt, code, name) = (s("encounter_id"), d("diagnosis_date"), s("icd10"), s("diagnosis_name"));
            let main = batch.column_by_name("main").and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Diagnosis(Diagnosis {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    diagnosis_date: dv(&dt, i).unwrap_or_default(),
                    icd10: sv(&code, i),
                    diagnosis_name: sv(&name, i),
                    main: main.as_ref().is_some_and(|m| !m.is_null(i) && m.value(i)),
                }));
            }
        }
        Table::Prescriptions => {
            let (e, dt, code, name, route) =
                (s("encounter_id"), d("prescribed_date"), s("drug_code"), s("drug_name"), s("route"));
            let n = batch.column_by_name("days").and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Prescription(Prescription {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    prescribed_date: dv(&dt, i).unwrap_or_default(),
                    drug_code: sv(&code, i),
                    drug_name: sv(&name, i),
                    route: sv(&route, i),
                    days: n.as_ref().map_or(0, |n| n.value(i)),
                }));
            }
        }
        Table::Labs => {
            let (e, dt, code, name, unit) =
                (s("encounter_id"), d("result_date"), s("test_code"), s("test_name"), s("unit"));
            let v = batch.column_by_name("value").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            for i in 0..batch.num_rows() {
                out.push(Record::Lab(Lab {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    result_date: dv(&dt, i).unwrap_or_default(),
                    test_code: sv(&code, i),
                    test_name: sv(&name, i),
                    value: v.as_ref().map_or(f64::NAN, |v| v.value(i)),
                    unit: sv(&unit, i),
                }));
            }
        }
        Table::Texts => {
            let (e, dt, code, name, text) = (s("encounter_id"), d("observed_date"), s("code"), s("name"), s("text"));
            for i in 0..batch.num_rows() {
                out.push(Record::Text(Text {
                    provider_id: sv(&pv, i),
                    patient_id: sv(&pa, i),
                    encounter_id: sv(&e, i),
                    observed_date: dv(&dt, i).unwrap_or_default(),
                    code: sv(&code, i),
                    name: sv(&name, i),
                    text: sv(&text, i),
                }));
            }
        }
        Table::Procedures | Table::Materials | Table::PublicExpenses | Table::PublicExpenseIds | Table::Receipts => {
            let u = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned());
            let uv = |a: &Option<UInt64Array>, i: usize| a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i));
            let n = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
            let nv = |a: &Option<Int64Array>, i: usize| a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i));
            let f = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            let fv = |a: &Option<Float64Array>, i: usize| a.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i));
            let b = |n: &str| batch.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned());
            let bv = |a: &Option<BooleanArray>, i: usize| a.as_ref().is_some_and(|a| !a.is_null(i) && a.value(i));
            let e = s("encounter_id");
            for i in 0..batch.num_rows() {
                out.push(match table {
                    Table::Procedures => Record::Procedure(Procedure {
                        provider_id: sv(&pv, i),
                        patient_id: sv(&pa, i),
                        encounter_id: sv(&e, i),
                        procedure_date: dv(&d("procedure_date"), i).unwrap_or_default(),
                        day_known: bv(&b("day_known"), i),
                        source: sv(&s("source"), i),
                        care_category: sv(&s("care_category"), i),
                        burden_category: sv(&s("burden_category"), i),
                        procedure_code: sv(&s("procedure_code"), i),
                        procedure_name: sv(&s("procedure_name"), i),
                        quantity: fv(&f("quantity"), i),
                        points: nv(&n("points"), i),
                        count: uv(&u("count"), i).unwrap_or(0),
                    }),
                    Table::Materials => Record::Material(Material {
                        provider_id: sv(&pv, i),
                        patient_id: sv(&pa, i),
                        encounter_id: sv(&e, i),
                        used_date: dv(&d("used_date"), i).unwrap_or_default(),
                        day_known: bv(&b("day_known"), i),
                        source: sv(&s("source"), i),
                        care_category: sv(&s("care_category"), i),
                        burden_category: sv(&s("burden_category"), i),
                        material_code: sv(&s("material_code"), i),
                        material_name: sv(&s("material_name"), i),
                        product_name: sv(&s("product_name"), i),
                        quantity: fv(&f("quantity"), i),
                        unit_code: sv(&s("unit_code"), i),
                        unit_price: fv(&f("unit_price"), i),
                        points: nv(&n("points"), i),
                        count: uv(&u("count"), i).unwrap_or(0),
                    }),
                    Table::PublicExpenses => Record::PublicExpense(PublicExpense {
                        provider_id: sv(&pv, i),
                        patient_id: sv(&pa, i),
                        encounter_id: sv(&e, i),
                        service_month: dv(&d("service_month"), i).unwrap_or_default(),
                        rank: uv(&u("rank"), i).unwrap_or(0),
                        program_code: sv(&s("program_code"), i),
                        prefecture_code: sv(&s("prefecture_code"), i),
                        benefit_class: sv(&s("benefit_class"), i),
                        days: uv(&u("days"), i),
                        points: nv(&n("points"), i),
                        public_burden: nv(&n("public_burden"), i),
                        outpatient_copay: nv(&n("outpatient_copay"), i),
                        inpatient_copay: nv(&n("inpatient_copay"), i),
                        times: uv(&u("times"), i),
                        amount: nv(&n("amount"), i),
                    }),
                    Table::Receipts => Record::Receipt(Receipt {
                        provider_id: sv(&pv, i),
                        patient_id: sv(&pa, i),
                        encounter_id: sv(&e, i),
                        receipt_number: sv(&s("receipt_number"), i),
                        receipt_type: sv(&s("receipt_type"), i),
                        service_month: dv(&d("service_month"), i).unwrap_or_default(),
                        benefit_ratio: sv(&s("benefit_ratio"), i),
                        copay_class: sv(&s("copay_class"), i),
                        special_notes: sv(&s("special_notes"), i),
                        insurance_days: uv(&u("insurance_days"), i),
                        insurance_points: nv(&n("insurance_points"), i),
                        meal_times: uv(&u("meal_times"), i),
                        meal_amount: nv(&n("meal_amount"), i),
                        patient_copay: nv(&n("patient_copay"), i),
                        dpc_code: sv(&s("dpc_code"), i),
                        dpc_outcome: sv(&s("dpc_outcome"), i),
                    }),
                    _ => Record::PublicExpenseId(PublicExpenseId {
                        provider_id: sv(&pv, i),
                        patient_id: sv(&pa, i),
                        payer_number: sv(&s("payer_number"), i),
                        recipient_number: sv(&s("recipient_number"), i),
                    }),
                });
            }
        }
    }
    out
}

/// All canonical records of a synthetic chunk (ground truth left out), in table order.
pub fn records_from_synth(chunk: &kiban_model::synth::SynthChunk) -> Vec<Record> {
    chunk
        .batches
        .iter()
        .filter_map(|(t, b)| Table::from_synth(*t).map(|t| records_from_batch(t, b)))
        .flatten()
        .collect()
}

/// Records grouped by patient, in first-seen order: what the per-patient writers (SS-MIX2, FHIR,
/// UKE) consume.
pub fn by_patient(records: &[Record]) -> Vec<(String, String, Vec<&Record>)> {
    let mut index: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut out: Vec<(String, String, Vec<&Record>)> = Vec::new();
    for r in records {
        let prov = r.provider_id();
        let k = *index.entry((prov, r.patient_id())).or_insert_with(|| {
            out.push((prov.to_owned(), r.patient_id().to_owned(), Vec::new()));
            out.len() - 1
        });
        out[k].2.push(r);
    }
    out
}

/// A sink that turns records into Arrow batches of at most `batch_rows` rows per table and hands
/// each full batch to `flush` (bounded memory whatever the input size), quarantined entries to `q`.
pub struct BatchSink<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> {
    builders: Vec<TableBuilder>,
    batch_rows: usize,
    flush: F,
    q: Q,
}

impl<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> BatchSink<F, Q> {
    /// A sink flushing every `batch_rows` rows.
    pub fn new(batch_rows: usize, flush: F, q: Q) -> Self {
        BatchSink { builders: Table::ALL.iter().map(|&t| TableBuilder::new(t)).collect(), batch_rows, flush, q }
    }
    /// Flushes what is left.
    pub fn finish(mut self) {
        for (i, b) in self.builders.iter_mut().enumerate() {
            if !b.is_empty() {
                (self.flush)(Table::ALL[i], b.finish());
            }
        }
    }
}

impl<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> BatchSink<F, Q> {
    fn add<T: AsRef<str>>(&mut self, r: &Record<T>) {
        // `Table::ALL` lists the tables in declaration order (see `table_index_is_declaration_order`).
        let i = r.table() as usize;
        debug_assert_eq!(Table::ALL[i], r.table());
        let b = &mut self.builders[i];
        b.push(r);
        if b.len() >= self.batch_rows {
            (self.flush)(Table::ALL[i], b.finish());
        }
    }
}

impl<F: FnMut(Table, RecordBatch), Q: FnMut(Quarantined)> Sink for BatchSink<F, Q> {
    fn record(&mut self, r: Record) {
        self.add(&r)
    }
    fn record_ref(&mut self, r: Record<&str>) {
        self.add(&r)
    }
    fn quarantine(&mut self, q: Quarantined) {
        (self.q)(q)
    }
}

/// Parses exactly eight digits `YYYYMMDD` (chrono alone would take `2024011` as a date).
pub fn yyyymmdd(s: &str) -> Option<NaiveDate> {
    let d = s.get(..8)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(d, "%Y%m%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_index_is_declaration_order() {
        // BatchSink finds a table's builder by `table as usize`.
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
    }
}
