//! Step instance paths: how the run log names one run of a step.
//!
//! A step outside any `map` is named by its id (`review`). Inside a map body every run of the
//! step is its own instance, named by the id followed by the item index at each enclosing map,
//! outermost first: `lint[2]`, `check[2][0]`. Events, outputs and errors are keyed by these
//! strings (the run log's format); [`StepPath`] is the one place that builds and reads them.

use std::fmt::Write as _;

/// A step instance path, read: the step's id and its item indexes (`[2][0]`, empty outside
/// maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepPath<'a> {
    id: &'a str,
    items: &'a str,
}

impl<'a> StepPath<'a> {
    /// Reads a path as the run log writes it. Anything before the first `[` is the id.
    pub fn parse(path: &'a str) -> StepPath<'a> {
        match path.find('[') {
            Some(i) => StepPath {
                id: &path[..i],
                items: &path[i..],
            },
            None => StepPath {
                id: path,
                items: "",
            },
        }
    }

    /// The step's id, as the workflow names it.
    pub fn id(&self) -> &'a str {
        self.id
    }

    /// The item indexes as written (`[2][0]`); empty outside maps. A step instance sees the
    /// outputs of instances whose items are a prefix of its own (see [`StepPath::encloses`]).
    pub fn items(&self) -> &'a str {
        self.items
    }

    /// The item index at each enclosing map, outermost first (malformed parts are skipped).
    pub fn indexes(&self) -> impl Iterator<Item = usize> + 'a {
        self.items
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
    }

    /// Whether this instance runs inside the map items `items` (an empty `items`: the top
    /// level, which encloses everything).
    pub fn encloses(&self, items: &str) -> bool {
        items.starts_with(self.items)
    }

    /// The path of step `id` run inside the map items `items`.
    pub fn instance(id: &str, items: &str) -> String {
        let mut s = String::with_capacity(id.len() + items.len());
        s.push_str(id);
        s.push_str(items);
        s
    }

    /// The items of item `index` of a map run inside the items `outer`.
    pub fn item(outer: &str, index: usize) -> String {
        let mut s = String::with_capacity(outer.len() + 4);
        s.push_str(outer);
        let _ = write!(s, "[{index}]");
        s
    }
}

impl std::fmt::Display for StepPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.id, self.items)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::StepPath;

    #[test]
    fn paths_read_back_what_they_write() {
        let items = StepPath::item(&StepPath::item("", 2), 0);
        assert_eq!(items, "[2][0]");
        let path = StepPath::instance("check", &items);
        assert_eq!(path, "check[2][0]");
        let p = StepPath::parse(&path);
        assert_eq!(p.id(), "check");
        assert_eq!(p.items(), "[2][0]");
        assert_eq!(p.indexes().collect::<Vec<_>>(), vec![2, 0]);
        assert_eq!(p.to_string(), path);
    }

    #[test]
    fn top_level_steps_have_no_items() {
        let p = StepPath::parse("review");
        assert_eq!((p.id(), p.items()), ("review", ""));
        assert_eq!(p.indexes().count(), 0);
        assert!(p.encloses("[3]"), "the top level encloses every item");
    }

    #[test]
    fn an_instance_encloses_only_its_own_items() {
        let outer = StepPath::parse("lint[2]");
        assert!(outer.encloses("[2]"));
        assert!(outer.encloses("[2][1]"));
        assert!(!outer.encloses("[3]"));
        assert!(!outer.encloses(""));
    }
}
