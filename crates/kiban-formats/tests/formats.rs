//! Integration tests of the format readers and writers (one binary; one module per format).

#[path = "formats/bad_input.rs"]
mod bad_input;
#[path = "formats/cda.rs"]
mod cda;
#[path = "formats/common.rs"]
mod common;
#[path = "formats/convert.rs"]
mod convert;
#[path = "formats/dpc.rs"]
mod dpc;
#[path = "formats/fhir.rs"]
mod fhir;
#[path = "formats/robust.rs"]
mod robust;
#[path = "formats/ssmix2.rs"]
mod ssmix2;
#[path = "formats/stream.rs"]
mod stream;
#[path = "formats/tabular.rs"]
mod tabular;
#[path = "formats/uke.rs"]
mod uke;
