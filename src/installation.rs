//! Which installation of podcreds a binding belongs to (pure).
//!
//! Several podcreds installations may run in one cluster (another team's release, a canary). Each
//! must own a disjoint set of bindings, or both reconcile the same ones: their statuses flap, they
//! refresh in a loop when their defaults differ, and the laxer operator-side policy wins. A
//! binding names its installation with the label [`LABEL`]; a binding without it belongs to the
//! installation named [`DEFAULT`]. Each operator watches only its own bindings.

/// The label on an `AWSRoleBinding` naming the installation that serves it.
pub const LABEL: &str = "podcreds.dev/installation";
/// The installation of bindings without [`LABEL`].
pub const DEFAULT: &str = "default";

/// Whether `name` can be an installation name: a label value (1 to 63 characters of
/// `A-Z a-z 0-9 - _ .`, beginning and ending with a letter or digit).
pub fn valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The installation a binding with label value `label` (`None`: no label) belongs to.
pub fn of(label: Option<&str>) -> &str {
    label.unwrap_or(DEFAULT)
}

/// Whether installation `installation` serves a binding whose label is `label`.
pub fn owns(installation: &str, label: Option<&str>) -> bool {
    of(label) == installation
}

/// The label selector the installation's binding watch uses on the apiserver, when one can say
/// it: a label selector cannot say "no label, or `default`", so the default installation watches
/// every binding and drops those of other installations itself (see [`owns`]).
pub fn selector(installation: &str) -> Option<String> {
    (installation != DEFAULT).then(|| format!("{LABEL}={installation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_binding_belongs_to_exactly_one_installation() {
        assert!(owns(DEFAULT, None));
        assert!(owns(DEFAULT, Some("default")));
        assert!(!owns(DEFAULT, Some("blue")));
        assert!(owns("blue", Some("blue")));
        assert!(!owns("blue", None));
        assert!(!owns("blue", Some("green")));
        for label in [None, Some("default"), Some("blue"), Some("green")] {
            let owners = [DEFAULT, "blue", "green"]
                .iter()
                .filter(|i| owns(i, label))
                .count();
            assert_eq!(owners, 1, "{label:?}");
        }
    }

    #[test]
    fn named_installations_select_on_the_apiserver() {
        assert_eq!(selector(DEFAULT), None);
        assert_eq!(
            selector("blue").as_deref(),
            Some("podcreds.dev/installation=blue")
        );
    }

    #[test]
    fn installation_names_are_label_values() {
        for ok in ["default", "blue", "team-a.prod", "a", &"x".repeat(63)] {
            assert!(valid(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a b", "a/b", "a,b", "ä", &"x".repeat(64)] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
