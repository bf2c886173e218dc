use crate::InputError;

/// A static spatial relation of the animal relative to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    Left,
    Right,
    Top,
    /// Our extension; the official scorer has only left/right/top.
    Bottom,
}

impl Relation {
    /// Parses `left/right/top/bottom` (any case) or the letters `L/R/T/B`.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let t = s.trim();
        let is = |a: &str, b: &str| t.eq_ignore_ascii_case(a) || t.eq_ignore_ascii_case(b);
        if is("l", "left") {
            Ok(Relation::Left)
        } else if is("r", "right") {
            Ok(Relation::Right)
        } else if is("t", "top") {
            Ok(Relation::Top)
        } else if is("b", "bottom") {
            Ok(Relation::Bottom)
        } else {
            Err(InputError::BadRelation {
                video: None,
                value: s.to_string(),
            })
        }
    }

    /// The one-letter code used in files (`L R T B`).
    pub fn letter(self) -> char {
        match self {
            Relation::Left => 'L',
            Relation::Right => 'R',
            Relation::Top => 'T',
            Relation::Bottom => 'B',
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_words_and_letters() {
        assert_eq!(Relation::parse("left").unwrap(), Relation::Left);
        assert_eq!(Relation::parse("R").unwrap(), Relation::Right);
        assert_eq!(Relation::parse(" Top ").unwrap(), Relation::Top);
        assert_eq!(Relation::parse("b").unwrap(), Relation::Bottom);
        assert_eq!(Relation::Bottom.letter(), 'B');
    }

    #[test]
    fn rejects_unknown() {
        let e = Relation::parse("behind").unwrap_err();
        assert!(e.to_string().contains("behind"));
    }
}
