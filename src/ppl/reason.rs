//! Reasons: why a criterion, an operator or an action came out the way it did.
//!
//! A [`Reasons`] value is a set of [`Reason`]s stored as a bitset, so merging sub-results is a
//! bitwise OR and evaluating a policy never allocates.

use std::fmt;

use serde::ser::SerializeSeq;

macro_rules! reasons {
    ($($variant:ident => $code:literal,)*) => {
        /// One reason code. The variants are in the alphabetical order of their codes, so a set
        /// iterates (and serialises) sorted.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Reason {
            $($variant,)*
        }

        impl Reason {
            /// Every reason, in code order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The code as Pomerium spells it, e.g. `claim-ok`.
            pub const fn code(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            /// The reason with this code, if there is one.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code {
                    $($code => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    Accept => "accept",
    ClaimOk => "claim-ok",
    ClaimUnauthorized => "claim-unauthorized",
    ClientCertificateOk => "client-certificate-ok",
    ClientCertificateRequired => "client-certificate-required",
    ClientCertificateUnauthorized => "client-certificate-unauthorized",
    CorsRequest => "cors-request",
    DateOk => "date-ok",
    DateUnauthorized => "date-unauthorized",
    DayOfWeekOk => "day-of-week-ok",
    DayOfWeekUnauthorized => "day-of-week-unauthorized",
    DomainOk => "domain-ok",
    DomainUnauthorized => "domain-unauthorized",
    EmailOk => "email-ok",
    EmailUnauthorized => "email-unauthorized",
    GroupsOk => "groups-ok",
    GroupsUnauthorized => "groups-unauthorized",
    HttpMethodOk => "http-method-ok",
    HttpMethodUnauthorized => "http-method-unauthorized",
    HttpPathOk => "http-path-ok",
    HttpPathUnauthorized => "http-path-unauthorized",
    InvalidClientCertificate => "invalid-client-certificate",
    NonCorsRequest => "non-cors-request",
    Reject => "reject",
    SourceIpOk => "source-ip-ok",
    SourceIpUnauthorized => "source-ip-unauthorized",
    TimeOfDayOk => "time-of-day-ok",
    TimeOfDayUnauthorized => "time-of-day-unauthorized",
    UserOk => "user-ok",
    UserUnauthenticated => "user-unauthenticated",
    UserUnauthorized => "user-unauthorized",
    ValidClientCertificate => "valid-client-certificate",
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A set of reasons (a bitset over [`Reason`]). `Copy`, and union is a single OR.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Reasons(u64);

impl Reasons {
    pub const EMPTY: Reasons = Reasons(0);

    pub const fn one(reason: Reason) -> Reasons {
        Reasons(1 << reason as u8)
    }

    pub const fn union(self, other: Reasons) -> Reasons {
        Reasons(self.0 | other.0)
    }

    pub fn insert(&mut self, reason: Reason) {
        self.0 |= 1 << reason as u8;
    }

    pub const fn contains(self, reason: Reason) -> bool {
        self.0 & (1 << reason as u8) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The reasons, in code order.
    pub fn iter(self) -> impl Iterator<Item = Reason> {
        // Reason `i` of `ALL` is bit `i` (the variants are declared in that order), so the set
        // bits, lowest first, are the reasons in code order: a step per reason in the set
        // rather than a test of each of them.
        let mut bits = self.0;
        std::iter::from_fn(move || {
            let i = bits.trailing_zeros() as usize;
            bits &= bits.wrapping_sub(1);
            Reason::ALL.get(i).copied()
        })
    }

    /// The codes, in order (`"claim-ok"`, …).
    pub fn codes(self) -> impl Iterator<Item = &'static str> {
        self.iter().map(Reason::code)
    }
}

impl From<Reason> for Reasons {
    fn from(reason: Reason) -> Reasons {
        Reasons::one(reason)
    }
}

impl FromIterator<Reason> for Reasons {
    fn from_iter<I: IntoIterator<Item = Reason>>(iter: I) -> Reasons {
        let mut set = Reasons::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl std::ops::BitOr for Reasons {
    type Output = Reasons;
    fn bitor(self, rhs: Reasons) -> Reasons {
        self.union(rhs)
    }
}

impl std::ops::BitOrAssign for Reasons {
    fn bitor_assign(&mut self, rhs: Reasons) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Reasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.codes()).finish()
    }
}

impl serde::Serialize for Reasons {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for code in self.codes() {
            seq.serialize_element(code)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_sorted_and_unique() {
        let codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
        assert!(Reason::ALL.len() <= 64);
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} is not bit {i}");
        }
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r.code()), Some(*r));
        }
    }

    #[test]
    fn a_set_lists_exactly_its_reasons_in_code_order() {
        // Sets from a fixed pseudo-random sequence, the empty and the full set among them.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut sets = vec![Reasons::EMPTY, Reason::ALL.iter().copied().collect()];
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sets.push(
                Reason::ALL
                    .iter()
                    .copied()
                    .filter(|r| x >> (*r as u8) & 1 == 1)
                    .collect(),
            );
        }
        for set in sets {
            let listed: Vec<Reason> = set.iter().collect();
            let expected: Vec<Reason> = Reason::ALL
                .iter()
                .copied()
                .filter(|r| set.contains(*r))
                .collect();
            assert_eq!(listed, expected);
            assert_eq!(listed.len(), set.len());
        }
    }

    #[test]
    fn set_operations() {
        let a = Reasons::one(Reason::UserOk) | Reason::ClaimOk.into();
        assert!(a.contains(Reason::UserOk) && a.contains(Reason::ClaimOk));
        assert!(!a.contains(Reason::Accept));
        assert_eq!(a.codes().collect::<Vec<_>>(), ["claim-ok", "user-ok"]);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"["claim-ok","user-ok"]"#
        );
    }
}
