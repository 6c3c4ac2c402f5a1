//! The shared table of invalid specs (`tests/data/invalid_specs.rs`), judged by the operator: each
//! is refused, naming the field. The end-to-end suite sends the same table to the apiserver.

use super::*;

include!("../../../tests/data/invalid_specs.rs");

#[test]
fn every_invalid_spec_of_the_shared_table_is_refused_naming_its_field() {
    // An admin policy that allows the endpoints and audiences the table names: only the field
    // under test is wrong.
    let policy = StsPolicy {
        allowed_endpoints: vec!["https://sts.us-east-1.amazonaws.com".into()],
        ..StsPolicy::default()
    };
    let mut wrong = Vec::new();
    for case in invalid_specs() {
        let refusal = match serde_json::from_value::<AWSRoleBindingSpec>(case.spec.clone()) {
            Err(e) => e.to_string(),
            Ok(spec) => match resolve(&spec, "ns", "b", &policy) {
                Err(e) => e.to_string(),
                Ok(_) => {
                    wrong.push(format!("{}: accepted", case.name));
                    continue;
                }
            },
        };
        if !refusal.contains(case.operator) {
            wrong.push(format!(
                "{}: {refusal:?} does not name {:?}",
                case.name, case.operator
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
