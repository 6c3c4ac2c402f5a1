//! Bounds on what namespaces share (pure): the conflict watches, the Event queue and the
//! bindings waiting for a ServiceAccount. Tenants decide how much of each they ask for; each
//! structure has a bound on the whole and a smaller one per namespace, so that one namespace
//! (or a few) cannot take all of it and leave the others without.

/// A bound on something shared between namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Most held by all namespaces together.
    pub total: usize,
    /// Most held by one namespace.
    pub per_namespace: usize,
}

impl Bound {
    /// A bound of `total`, of which one namespace may hold a `1/share`th (at least one).
    pub const fn shared(total: usize, share: usize) -> Self {
        let per_namespace = match total.checked_div(share) {
            Some(n) => n,
            None => total,
        };
        Self {
            total,
            per_namespace: if per_namespace == 0 { 1 } else { per_namespace },
        }
    }

    /// Whether one more may be taken, when `held` are held in all and `held_by_namespace` by the
    /// namespace asking.
    pub fn admits(&self, held: usize, held_by_namespace: usize) -> bool {
        held < self.total && held_by_namespace < self.per_namespace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_namespace_gets_its_share_and_no_more() {
        let bound = Bound::shared(64, 8);
        assert_eq!(bound.per_namespace, 8);
        assert!(bound.admits(0, 0));
        assert!(bound.admits(7, 7));
        assert!(!bound.admits(8, 8));
        // Another namespace still gets in while the whole has room.
        assert!(bound.admits(8, 0));
        assert!(!bound.admits(64, 0));
        // Tiny bounds still admit one per namespace.
        assert_eq!(Bound::shared(4, 8).per_namespace, 1);
        assert_eq!(Bound::shared(4, 0).per_namespace, 4);
    }

    #[test]
    fn filling_the_whole_takes_as_many_namespaces_as_the_share() {
        let bound = Bound::shared(1024, 8);
        let mut held = 0;
        let mut namespaces = 0;
        while bound.admits(held, 0) {
            let mut mine = 0;
            while bound.admits(held, mine) {
                held += 1;
                mine += 1;
            }
            namespaces += 1;
        }
        assert_eq!(namespaces, 8);
    }
}
